"""propose / eval-proposals --model CKPT: the boxes a detector scores (its own when its model
proposes, else its configured proposals), measured by the same tool as selective search; the
flags that would change them refused; a missing or garbage checkpoint one line."""

import json

import numpy as np
import pytest
import torch

import detector.fast as fast_kind
import detector.model as model_module
import detector.proposal_cache as proposal_cache
from backbone.config import apply_overrides, to_dict
from detector.assets import FAST_MODEL
from detector.cli.eval_proposals import main as eval_main
from detector.cli.propose import main as propose_main
from detector.io.checkpoints import save_detector
from detector.io.images import load_image
from detector.kinds import kind_of
from detector.model import Detector
from proposals import propose
from tests.conftest import BCCD, TEST_DATA
from tests.detector.helpers import CLASSES, one_error, tiny_config

IMAGE = TEST_DATA / "voc-mini" / "JPEGImages" / "BloodImage_00000.jpg"
FAST = ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn", "model.aux_logits=false",
        "model.fast.tap=[inception3b]", "model.fast.min_side=96", "model.fast.max_side=160",
        "model.fast.reduce_channels=16", "model.fast.fc_dim=32", "model.fast.fc_rank=8",
        "proposals.working_width=120", "proposals.superpixel_scale=1.0"]
OWN = np.array([[10, 10, 200, 150], [300, 200, 420, 330], [0, 0, 640, 480]], np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = apply_overrides(tiny_config(TEST_DATA / "voc-mini"), FAST)
    torch.manual_seed(0)
    member = kind_of(cfg).build_member(cfg, len(CLASSES), 0, inference=True)
    path = tmp_path_factory.mktemp("m") / "fast.pt"
    save_detector(str(path), to_dict(cfg), CLASSES, [member.state_dict()])
    return str(path)


@pytest.fixture
def own_proposals(monkeypatch):
    """The fast kind's model proposes (as a proposals.method trunk model will): no selective search."""
    monkeypatch.setattr(fast_kind, "propose", lambda ensemble, cfg, image, device, times=None: OWN.copy())
    boom = lambda *a, **k: (_ for _ in ()).throw(AssertionError("selective search ran"))  # noqa: E731
    monkeypatch.setattr(model_module, "propose", boom)
    monkeypatch.setattr(proposal_cache, "selective_search", boom)


def test_propose_model_gives_the_boxes_detect_scores(ckpt, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert propose_main([str(IMAGE), "--model", ckpt, "--json", str(out)]) == 0
    (item,) = json.loads(out.read_text())
    det = Detector.from_checkpoint(ckpt)
    want = det.propose(load_image(str(IMAGE)))
    assert np.allclose(item["boxes"], want, atol=0.01) and len(want) > 10
    assert np.allclose(want, propose(load_image(str(IMAGE)), det.cfg.proposals))  # its configured selective search


def test_propose_and_eval_proposals_use_the_models_own_boxes(ckpt, own_proposals, mini_config, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert propose_main([str(IMAGE), "--model", ckpt, "--json", str(out)]) == 0
    assert np.allclose(json.loads(out.read_text())[0]["boxes"], OWN)
    js = tmp_path / "r.json"
    assert eval_main(["--config", mini_config, "--split", "train", "--model", ckpt, "--cache-dir",
                      str(tmp_path / "cache"), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert f"proposals of model {ckpt}: its own" in text and "recall@0.5" in text and "RBC" in text
    res = json.loads(js.read_text())
    assert res["boxes_per_image"] == 3 and res["proposals"]["own"] is True and res["proposals"]["model"] == ckpt
    assert not (tmp_path / "cache" / "proposals").exists()  # its own boxes are not cached selective search
    assert propose_main(["--config", mini_config, "--split", "train", "--model", ckpt, "--cache-dir",
                         str(tmp_path / "cache")]) == 0
    assert "train: 2 images, 3 boxes/image" in capsys.readouterr().out


def test_eval_proposals_model_without_own_boxes_measures_its_configured_ones(ckpt, mini_config, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert eval_main(["--config", mini_config, "--split", "train", "--model", ckpt, "--cache-dir", cache,
                      "--workers", "1", "--json", str(a)]) == 0
    assert "its configured ss (the cache's boxes eval-map --split scores)" in capsys.readouterr().out
    assert eval_main(["--config", mini_config, "--split", "train", "--working-width", "120", "--cache-dir", cache,
                      "--workers", "1", "--json", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["recall"] == rb["recall"] and ra["boxes_per_image"] == rb["boxes_per_image"] > 10
    assert ra["proposals"]["own"] is False and ra["proposals"]["working_width"] == 120


@pytest.mark.parametrize("extra, needle", [
    (["--multibox", "mb.pt"], "--multibox would change them"),
    (["--method", "ss"], "--method would change them"),
    (["--working-width", "100", "--max-total", "5"], "--working-width, --max-total would change them"),
    (["--set", "working_width=90"], "--set working_width=90 would change them"),
])
def test_propose_model_refuses_the_flags_that_would_change_its_proposals(ckpt, extra, needle, capsys):
    assert propose_main([str(IMAGE), "--model", ckpt, *extra]) == 2
    one_error(capsys, "propose", needle, "leave --model out")


def test_eval_proposals_model_refuses_a_proposals_override(ckpt, mini_config, tmp_path, capsys):
    assert eval_main(["--config", mini_config, "--split", "train", "--model", ckpt,
                      "--set", "proposals.preset=quality", "--cache-dir", str(tmp_path / "c")]) == 2
    one_error(capsys, "eval-proposals", "--set proposals.preset=quality would change them")


@pytest.mark.parametrize("content", [None, b"", b"garbage\x00\x01", b"PK\x03\x04 not a zip"])
def test_a_missing_or_garbage_checkpoint_is_one_line(content, mini_config, tmp_path, capsys):
    path = tmp_path / "m.pt"
    if content is not None:
        path.write_bytes(content)
    assert propose_main([str(IMAGE), "--model", str(path)]) == 2
    one_error(capsys, "propose", f"error: model {path}: ")  # the checkpoint's reader named it
    assert eval_main(["--config", mini_config, "--split", "train", "--model", str(path),
                      "--cache-dir", str(tmp_path / "c")]) == 2
    one_error(capsys, "eval-proposals", f"error: model {path}: ")
    assert not (tmp_path / "c" / "proposals").exists()  # nothing computed before the checkpoint is read


def test_an_empty_model_path_is_one_line(capsys):
    assert propose_main([str(IMAGE), "--model", " "]) == 2
    one_error(capsys, "propose", "an empty path")


@pytest.mark.shared
def test_bundled_fast_model_on_bccd_test(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: voc\n  root: {BCCD}\n  classes: [Platelets, RBC, WBC]\n")
    js = tmp_path / "r.json"
    assert eval_main(["--config", str(cfg), "--split", "test", "--max-images", "2", "--model", FAST_MODEL,
                      "--cache-dir", str(tmp_path / "cache"), "--workers", "2", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "its configured ss" in text and all(c in text for c in ("Platelets", "RBC", "WBC", "recall@0.7"))
    res = json.loads(js.read_text())
    assert res["num_images"] == 2 and res["recall"]["0.5"] > 0.8 and res["boxes_per_image"] > 500


def test_the_checkpoint_is_an_input_never_written(ckpt, mini_config, tmp_path, capsys):
    before = open(ckpt, "rb").read()
    for overwrite in ([], ["--overwrite"]):
        assert propose_main([str(IMAGE), "--model", ckpt, "--json", ckpt, *overwrite]) == 2
        one_error(capsys, "propose", "--json")
        assert eval_main(["--config", mini_config, "--split", "train", "--model", ckpt, "--cache-dir",
                          str(tmp_path / "c"), "--plot", ckpt + ".png", "--json", ckpt, *overwrite]) == 2
        one_error(capsys, "eval-proposals", "--json")
    assert open(ckpt, "rb").read() == before
