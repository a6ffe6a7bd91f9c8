"""detect / eval-map --split / train-detector CLIs and their bad-input cases."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detector.cli.detect import main as detect_main
from detector.cli.train_detector import main as train_main
from detector.datasets import load_dataset
from detector.train import train_detector

from .helpers import jittered_proposals, tiny_config


@pytest.fixture(scope="module")
def model(tmp_path_factory, test_data):
    cfg = tiny_config(test_data / "voc-mini", **{"model.bbox_reg": "true", "proposals.max_boxes": 60,
                                                  "proposals.working_width": 200, "test.max_proposals": 60})
    out = tmp_path_factory.mktemp("model")
    props = jittered_proposals(load_dataset(cfg.data, "train"))
    return train_detector(cfg, str(out / "run"), torch.device("cpu"), train_proposals=props, progress=False)


def test_detect_writes_table_png_and_json(model, test_data, tmp_path, capsys):
    img = test_data / "voc-mini" / "JPEGImages" / "BloodImage_00000.jpg"
    rc = detect_main([str(img), "--model", model, "--out", str(tmp_path / "out"), "--json", str(tmp_path / "d.json"),
                      "--score-thr", "0", "--max-per-image", "5", "--timing"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "BloodImage_00000.jpg: 5 detections" in out
    assert all(f" {k} " in out for k in ("load", "proposals", "warp", "network", "postprocess"))
    items = json.loads((tmp_path / "d.json").read_text())
    assert items[0]["image"] == str(img) and len(items[0]["detections"]) == 5
    d = items[0]["detections"][0]
    assert set(d) == {"box", "score", "label"} and d["label"] in ("Platelets", "RBC", "WBC")
    assert Image.open(tmp_path / "out" / "BloodImage_00000.png").size == (640, 480)


def test_detect_score_thr_one_gives_no_detections_but_a_picture(model, test_data, tmp_path, capsys):
    img = test_data / "voc-mini" / "JPEGImages" / "BloodImage_00000.jpg"
    rc = detect_main([str(img), "--model", model, "--score-thr", "1", "--out", str(tmp_path / "out"),
                      "--json", str(tmp_path / "d.json")])
    assert rc == 0
    assert "BloodImage_00000.jpg: 0 detections" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text()) == [{"image": str(img), "detections": []}]
    assert Image.open(tmp_path / "out" / "BloodImage_00000.png").size == (640, 480)


def test_detect_odd_images(model, tmp_path, capsys):
    # grayscale, RGBA and a tiny single-colour image: handled, no crash, boxes inside the image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160), dtype=np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(rng.integers(0, 255, (120, 160, 4), dtype=np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "tiny.png")
    rc = detect_main([str(tmp_path), "--model", model, "--json", str(tmp_path / "o.json")])
    assert rc == 0
    items = json.loads((tmp_path / "o.json").read_text())
    assert len(items) == 3
    tiny = [i for i in items if i["image"].endswith("tiny.png")][0]
    assert all(0 <= d["box"][0] < d["box"][2] <= 8 and 0 <= d["box"][1] < d["box"][3] <= 8 for d in tiny["detections"])


def test_detect_bad_inputs(model, tmp_path, capsys):
    assert detect_main([str(tmp_path / "missing.jpg"), "--model", model]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"garbage")
    (tmp_path / "x.png").write_bytes(b"")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    assert detect_main([str(tmp_path / "ok.png"), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corrupt.pt: not a readable checkpoint" in err and "Traceback" not in err
    # a classifier-style checkpoint is not a detector
    torch.save({"kind": "classifier", "format_version": 1}, tmp_path / "cls.pt")
    assert detect_main([str(tmp_path / "ok.png"), "--model", str(tmp_path / "cls.pt")]) == 2
    assert "not a detector checkpoint" in capsys.readouterr().err
    assert detect_main([str(tmp_path / "ok.png"), "--model", model, "--score-thr", "1.5"]) == 2
    assert "--score-thr 1.5: must be between 0 and 1" in capsys.readouterr().err


def test_checkpoint_of_other_network_is_clear_error(model, tmp_path, capsys):
    ck = torch.load(model, weights_only=True)
    ck["config"]["model"]["arch"] = "googlenet_bn"
    torch.save(ck, tmp_path / "other.pt")
    Image.new("RGB", (64, 64)).save(tmp_path / "ok.png")
    assert detect_main([str(tmp_path / "ok.png"), "--model", str(tmp_path / "other.pt")]) == 2
    assert "does not fit its config" in capsys.readouterr().err


def test_train_detector_unknown_key_and_missing_config(tmp_path, capsys):
    assert train_main(["--config", "configs/bccd.yaml", "--set", "train.epochz=3", "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key train.epochz" in capsys.readouterr().err
    assert train_main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_eval_split_with_model(model, test_data, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main
    import detector.proposal_runner as pr

    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n"
                        "proposals:\n  method: ss\n  working_width: 200\n  max_boxes: 60\n"
                        "test:\n  protocol: voc\n  score_thr: 0.0\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache"),
                    "--json", str(tmp_path / "m.json")])
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= res["mAP"] <= 1.0
    # pipeline order, warping timed apart from the network
    assert list(res["seconds_per_image"]) == ["load", "proposals", "warp", "network", "postprocess"]
    assert res["seconds_per_image"]["proposals"] > 0  # the time the cached boxes took
    assert res["seconds_per_image"]["warp"] > 0 and res["seconds_per_image"]["network"] > 0
    line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("seconds per image:")]
    assert len(line) == 1 and "warp" in line[0] and "network" in line[0]
    dets = json.loads((tmp_path / "detections_test.json").read_text())
    assert len(dets) == 1 and dets[0]["image"].endswith("BloodImage_00001.jpg")


def test_eval_split_proposals_from_config(model, test_data, tmp_path, capsys, monkeypatch):
    """--proposals config scores the same region classifier on the config's proposals."""
    from detector.cli.eval_map import main as eval_main

    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n"
                        "test:\n  protocol: voc\n  score_thr: 0.0\n")
    common = ["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache")]
    assert eval_main(common + ["--proposals", "config", "--set", "proposals.method=ss", "--set", "proposals.working_width=160",
                               "--set", "proposals.max_boxes=7", "--json", "a.json"]) == 0
    # the cache now holds the config's setting (7 boxes), not the model's (60)
    cached = [np.load(f) for f in (tmp_path / "cache" / "proposals").glob("*/*.npz")]
    assert cached and all(len(c["boxes"]) <= 7 for c in cached)
    assert eval_main(common + ["--json", "b.json"]) == 0
    assert len(list((tmp_path / "cache" / "proposals").glob("*/*.npz"))) == 2  # the model's setting, computed anew
