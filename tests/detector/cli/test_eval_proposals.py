"""eval-proposals: recall and MABO of a split's proposals, the table, JSON and plot, the cache reused."""

import importlib
import json

from detector.cli.eval_proposals import main as eval_main

runner = importlib.import_module("detector.proposal_cache")
FAST = ["--set", "proposals.working_width=160"]


def test_eval_proposals_and_cache(mini_config, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--config", mini_config, "--split", "train", "--cache-dir", str(cache), "--workers", "1",
            "--json", str(js), "--plot", str(png)] + FAST
    assert eval_main(argv) == 0
    out = capsys.readouterr().out
    assert "recall@0.5" in out and "MABO" in out and png.stat().st_size > 1000
    res = json.loads(js.read_text())
    assert res["num_images"] == 2 and res["recall"]["0.5"] > 0.7 and res["boxes_per_image"] > 50
    assert res["curve"]["recall@0.5"] == sorted(res["curve"]["recall@0.5"])
    files = sorted((cache / "proposals").glob("*/*.npz"))
    assert len(files) == 2
    # the second run reads the cache: no selective search at all
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert eval_main(argv) == 0
    assert json.loads(js.read_text())["recall"] == res["recall"]


def test_an_auto_layout_is_named_in_one_line_first(tmp_path, capsys):
    """data.format auto: the layout found is named before the work (here a YOLO data.yaml)."""
    from tests.conftest import ROOT

    cfg = tmp_path / "c.yaml"
    cfg.write_text("proposals:\n  method: ss\n")
    argv = ["--config", str(cfg), "--data-root", str(ROOT / "tests" / "data" / "layouts" / "yolo"), "--split", "test",
            "--cache-dir", str(tmp_path / "cache"), "--workers", "1"] + FAST
    assert eval_main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("eval-proposals: data: yolo layout at ") and "data.yaml" in err[0]
