"""detect: the table, pictures and JSON of a tiny trained detector (fixture ``model``,
tests/detector/cli/conftest.py), odd images, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from detector.cli.detect import main as detect_main


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
    assert json.loads((tmp_path / "d.json").read_text()) == [{"image": str(img), "picture": "BloodImage_00000.png",
                                                               "detections": []}]
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
    assert "corrupt.pt: not a readable PyTorch file" in err and "Traceback" not in err
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


@pytest.mark.parametrize("flag", [["--max-per-image", "-1"], ["--max-per-image", "0"], ["--score-thr", "1.5"]])
def test_detect_bad_thresholds_are_one_line_before_any_work(flag, tmp_path, capsys):
    from detector.cli.detect import main

    assert main(["examples/BloodImage_00007.jpg", *flag, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("detect: error: ") and not (tmp_path / "o").exists()


def test_detect_empty_model_path_is_one_line(tmp_path, capsys):
    """--model '' ran the bundled model without a word."""
    from detector.cli.detect import main

    assert main(["examples/BloodImage_00007.jpg", "--model", "", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["detect: error: --model '': an empty path (leave --model out for the bundled model)"]
    assert not (tmp_path / "o").exists()
