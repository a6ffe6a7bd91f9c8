import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from backbone.errors import UserError
from detector.cli.eval_proposals import main as eval_main
from detector.cli.propose import main as propose_main
from detector.datasets import load_dataset
from detector.schema import load_detector_config

runner = importlib.import_module("detector.proposal_runner")
MINI = Path(__file__).resolve().parent.parent / "data" / "voc-mini"
IMAGE = Path(__file__).resolve().parent.parent / "data" / "proposals" / "BloodImage_00000.jpg"
FAST = ["--set", "proposals.working_width=160"]


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(f"data:\n  format: voc\n  root: {MINI}\n  classes: [Platelets, RBC, WBC]\n"
                 "proposals:\n  method: ss\n  superpixel_scale: 1.0\n")
    return str(p)


def test_propose_images_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert propose_main([str(IMAGE), "--working-width", "200", "--superpixel-scale", "2", "--json", str(out)]) == 0
    assert "BloodImage_00000.jpg:" in capsys.readouterr().out
    items = json.loads(out.read_text())
    assert len(items) == 1 and items[0]["image"] == str(IMAGE) and items[0]["seconds"] > 0
    b = np.array(items[0]["boxes"])
    assert b.shape[1] == 4 and len(b) > 10
    assert b[:, 2].max() <= 640 and b[:, 3].max() <= 480 and b[:, 2].max() > 600  # original pixels


@pytest.mark.parametrize("argv, msg", [
    (["missing.jpg"], "missing.jpg"),
    (["--split", "test"], "--split needs --config"),
    ([], "give image files"),
    ([str(IMAGE), "--method", "multibox"], "multibox_checkpoint"),
    ([str(IMAGE), "--multibox", "nothere.pt", "--method", "multibox"], "nothere.pt"),
])
def test_propose_errors(argv, msg, capsys):
    assert propose_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("propose: error:") and msg in err and err.count("\n") == 1


def test_eval_proposals_and_cache(config, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["--config", config, "--split", "train", "--cache-dir", str(cache), "--workers", "1",
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


def test_cache_keys_resume_and_workers(config, tmp_path, monkeypatch):
    cfg = load_detector_config(config, ["proposals.working_width=160"])
    ds = load_dataset(cfg.data, "train")
    cache = str(tmp_path / "c")
    first = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=2)
    assert len(first) == len(ds.records) == 2
    # a killed run: one file missing -> only that one is computed again
    files = sorted((tmp_path / "c" / "proposals").glob("*/*.npz"))
    files[0].unlink()
    calls = []
    real = runner.selective_search
    monkeypatch.setattr(runner, "selective_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)
    assert len(calls) == 1 and all(np.array_equal(a, b) for a, b in zip(first, again))
    # another setting -> another folder, never stale boxes
    cfg.proposals.superpixel_scale = 2.0
    two = runner.ensure_proposals(ds, cfg.proposals, cache_dir=cache, workers=1)
    assert len(list((tmp_path / "c" / "proposals").iterdir())) == 2
    assert sum(map(len, two)) < sum(map(len, first))
    assert runner.cache_key(cfg.proposals) != runner.cache_key(load_detector_config(config).proposals)


def test_cache_dir_defaults_and_refuses_the_dataset_folder(config, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner.default_cache_dir() == str(tmp_path / "xdg" / "googlenet-det")
    cfg = load_detector_config(config)
    ds = load_dataset(cfg.data, "train")
    with pytest.raises(UserError, match="inside the dataset folder"):
        runner.ensure_proposals(ds, cfg.proposals, cache_dir=str(MINI / "cache"))
    assert not (MINI / "cache").exists()


def test_multibox_cache_key_uses_the_weights(tmp_path):
    from proposals.config import ProposalConfig

    cfg = ProposalConfig(method="ss+multibox")
    assert runner.cache_key(cfg, "aaaa") != runner.cache_key(cfg, "bbbb")
    cfg2 = ProposalConfig(method="ss+multibox", multibox_top_k=100)
    assert runner.cache_key(cfg, "aaaa") != runner.cache_key(cfg2, "aaaa")


def test_propose_split_fills_the_cache(config, tmp_path, capsys):
    cache = tmp_path / "cache"
    out = tmp_path / "split.json"
    assert propose_main(["--config", config, "--split", "train", "--cache-dir", str(cache), "--workers", "2",
                         "--json", str(out)] + FAST) == 0
    assert "train: 2 images" in capsys.readouterr().out
    items = json.loads(out.read_text())
    assert [Path(i["image"]).name for i in items] == ["BloodImage_00000.jpg", "BloodImage_00338.jpg"]
    assert len(list((cache / "proposals").glob("*/*.npz"))) == 2
