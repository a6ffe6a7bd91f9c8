"""Detections out in other tools' formats (``detect --format``, ``eval-map --split --format``),
read back by ``eval-map --detections``; ``eval-map --split --model`` with the data of the
checkpoint's config; their bad input (one error line, exit code 2, nothing lost)."""

import json
import os
import shutil

import pytest
import torch

from backbone.config import to_dict
from detector.cli.detect import main as detect_main
from detector.io.checkpoints import save_detector
from detector.io.datasets import load_dataset
from tests.detector.helpers import (
    eval_map_error,
    one_error,
    run_eval_map,
    tiny_config,
    untrained_detector,
)

IMAGES = ("BloodImage_00000.jpg", "BloodImage_00001.jpg")


def _cfg(root, **over):
    return tiny_config(root, **{"data.format": "voc", "proposals.max_boxes": 30, "proposals.working_width": 160, **over})


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, test_data):
    """An untrained R-CNN checkpoint: random but deterministic detections, enough to compare formats."""
    return untrained_detector(tmp_path_factory.mktemp("m") / "m.pt", _cfg(test_data / "voc-mini"))


def _detect(capsys, model, images, *argv):
    rc = detect_main([str(i) for i in images] + ["--model", model, "--score-thr", "0", "--max-per-image", "15"]
                     + [str(a) for a in argv])
    return rc, capsys.readouterr()


def test_detect_formats_read_back_with_the_same_map(untrained, mini, tmp_path, capsys):
    images = [mini / "JPEGImages" / n for n in IMAGES]
    maps = {}
    for fmt, out in (("json", "d.json"), ("coco", "c.json"), ("txt", "t")):
        rc, (_, err) = _detect(capsys, untrained, images, "--json", tmp_path / out, "--format", fmt)
        assert rc == 0, err
        rc, _, err = run_eval_map(capsys, "--ground-truth", mini / "Annotations", "--detections", tmp_path / out,
                                  "--json", tmp_path / f"{fmt}.r.json")
        assert rc == 0, err
        maps[fmt] = json.loads((tmp_path / f"{fmt}.r.json").read_text())
    assert maps["json"]["mAP"] == maps["coco"]["mAP"] == maps["txt"]["mAP"]
    assert maps["json"]["num_detections"] == maps["txt"]["num_detections"] == maps["coco"]["num_detections"]
    ids = json.loads((tmp_path / "c.ids.json").read_text())
    assert ids["images"]["1"]["file"] == str(images[0]) and ids["categories"] == {"1": "Platelets", "2": "RBC", "3": "WBC"}
    assert sorted(os.listdir(tmp_path / "t")) == [".googlenet-det-manifest.json", "BloodImage_00000.txt", "BloodImage_00001.txt"]
    # detect's own txt folder is replaced without --overwrite; a user's file in it is refused
    rc, (_, err) = _detect(capsys, untrained, images, "--json", tmp_path / "t", "--format", "txt")
    assert rc == 0, err
    (tmp_path / "t" / "notes.txt").write_text("mine\n")
    rc, (_, err) = _detect(capsys, untrained, images, "--json", tmp_path / "t", "--format", "txt")
    assert rc == 2 and "notes.txt, which detect did not write" in err and "--overwrite" in err
    (tmp_path / "t" / "BloodImage_00000.txt").write_text("edited by hand\n")
    (tmp_path / "t" / "notes.txt").unlink()
    rc, (_, err) = _detect(capsys, untrained, images, "--json", tmp_path / "t", "--format", "txt")
    assert rc == 2 and "BloodImage_00000.txt: exists and was not written by detect" in err
    assert (tmp_path / "t" / "BloodImage_00000.txt").read_text() == "edited by hand\n"
    rc, (_, err) = _detect(capsys, untrained, images, "--json", tmp_path / "t", "--format", "txt", "--overwrite")
    assert rc == 0, err and (tmp_path / "t" / "BloodImage_00000.txt").read_text() != "edited by hand\n"


def test_detect_format_bad_input(untrained, mini, tmp_path, capsys):
    img = [mini / "JPEGImages" / IMAGES[0]]
    for argv, needle in [
        (("--json", tmp_path / "k.txt", "--format", "devkit"), "--format devkit needs the ILSVRC devkit's image indexes"),
        (("--format", "coco"), "--format coco is the format of --json PATH"),
    ]:
        rc = detect_main([str(img[0]), "--model", untrained] + [str(a) for a in argv])
        assert rc == 2
        one_error(capsys, "detect", needle)
    assert not (tmp_path / "k.txt").exists()
    (tmp_path / "file").write_text("x")  # an unwritable target: a file where the folder must be
    for fmt in ("txt", "coco"):
        rc = detect_main([str(img[0]), "--model", untrained, "--json", str(tmp_path / "file" / "out"), "--format", fmt])
        assert rc == 2
        one_error(capsys, "detect", "is a file, not a folder")
    rc = detect_main([str(img[0]), "--model", untrained, "--json", str(tmp_path / "file"), "--format", "txt"])
    assert rc == 2
    one_error(capsys, "detect", "is a file, expected a folder")
    (tmp_path / "c.ids.json").write_text("{}")  # a user's file where the ids mapping goes: refused, kept
    rc = detect_main([str(img[0]), "--model", untrained, "--json", str(tmp_path / "c.json"), "--format", "coco"])
    assert rc == 2
    one_error(capsys, "detect", "c.ids.json: exists and was not written by detect")
    assert (tmp_path / "c.ids.json").read_text() == "{}" and not (tmp_path / "c.json").exists()


def _fake_detect_split(calls):
    def fake(cfg, split, model_path=None, **kw):
        calls.append({"root": cfg.data.root, "format": cfg.data.format, "classes": cfg.data.classes,
                      "kind": cfg.model.kind, "model": model_path, "protocol": cfg.test.protocol})
        ds = load_dataset(cfg.data, split)
        items = [{"image": r.path, "detections": [
            {"box": [float(v) + 0.25 for v in b], "score": 0.9 - 0.01 * k, "label": ds.classes[lab - 1]}
            for k, (b, lab) in enumerate(zip(r.boxes[:-1], r.labels[:-1]))]} for r in ds.records]
        return ds, items
    return fake


@pytest.mark.parametrize("fmt, name", [("json", "detections_test.json"), ("coco", "detections_test.json"),
                                       ("txt", "detections_test")])
def test_eval_split_formats_read_back(mini, tmp_path, capsys, monkeypatch, fmt, name):
    from detector.cli import eval_map

    monkeypatch.setattr(eval_map, "detect_split", _fake_detect_split([]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: voc\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\n")
    out = tmp_path / "out"
    rc, _, err = run_eval_map(capsys, "--split", "test", "--config", cfg, "--format", fmt, "--json", out / "r.json")
    assert rc == 0, err
    saved = out / name
    assert saved.exists() and f"detections: {saved}" in err
    assert (out / "detections_test.ids.json").exists() == (fmt == "coco")
    want = json.loads((out / "r.json").read_text())["mAP"]
    rc, _, err = run_eval_map(capsys, "--ground-truth", mini / "ImageSets" / "Main" / "test.txt", "--detections", saved,
                              "--json", tmp_path / "r2.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r2.json").read_text())["mAP"] == want and 0.5 < want < 1


def test_eval_split_format_bad_input(mini, tmp_path, capsys, monkeypatch):
    from detector.cli import eval_map

    calls = []
    monkeypatch.setattr(eval_map, "detect_split", _fake_detect_split(calls))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: voc\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\n")
    base = ["--split", "test", "--config", cfg]
    assert "--format devkit needs the ILSVRC devkit's ids" in eval_map_error(capsys, *base, "--format", "devkit")
    assert calls == []  # refused before any detection
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x.txt").write_text("person 1 1 1 2 2\n")
    line = eval_map_error(capsys, *base, "--format", "txt", "--save-detections", tmp_path / "old")
    assert "the folder holds other files (x.txt)" in line
    assert (tmp_path / "old" / "x.txt").read_text() == "person 1 1 1 2 2\n"
    (tmp_path / "file").write_text("x")
    assert "is a file, expected a folder" in eval_map_error(capsys, *base, "--format", "txt", "--save-detections", tmp_path / "file")
    assert "is a file, not a folder" in eval_map_error(capsys, *base, "--format", "coco", "--save-detections",
                                                       tmp_path / "file" / "d.json")
    assert "--format is the format of the detections --split saves" in eval_map_error(
        capsys, "--ground-truth", mini / "Annotations", "--detections", tmp_path / "old", "--format", "coco")


@pytest.mark.parametrize("kind", ["rcnn", "fast"])
def test_eval_split_takes_the_data_of_the_checkpoint(mini, tmp_path, capsys, monkeypatch, kind):
    """No --config: the checkpoint's config gives data.root, format and classes (either kind);
    --data-root moves the data, --set changes a setting."""
    from detector.cli import eval_map

    calls = []
    monkeypatch.setattr(eval_map, "detect_split", _fake_detect_split(calls))
    if kind == "rcnn":
        model = untrained_detector(tmp_path / "m.pt", _cfg(mini))
    else:
        cfg = _cfg(mini, **{"model.kind": "fast", "model.rcnn": "null"})
        model = str(tmp_path / "m.pt")
        save_detector(model, to_dict(cfg), ["Platelets", "RBC", "WBC"], [{"w": torch.zeros(1)}])
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_eval_map(capsys, "--split", "test", "--model", model)
    assert rc == 0, err
    assert calls[-1] == {"root": str(mini), "format": "voc", "classes": ["Platelets", "RBC", "WBC"], "kind": kind,
                         "model": model, "protocol": "voc"}
    moved = tmp_path / "moved"
    shutil.copytree(mini, moved)
    rc, _, err = run_eval_map(capsys, "--split", "test", "--model", model, "--data-root", moved,
                              "--set", "test.protocol=voc07", "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert calls[-1]["root"] == str(moved) and calls[-1]["protocol"] == "voc07"
    saved = json.loads((tmp_path / "detections_test.json").read_text())
    assert saved[0]["image"].startswith(str(moved))
    assert json.loads((tmp_path / "r.json").read_text())["config"] is None


def test_eval_split_checkpoint_bad_input(tmp_path, capsys, mini):
    assert "--split needs --config (the detector config) or --model" in eval_map_error(capsys, "--split", "test")
    assert "no such file" in eval_map_error(capsys, "--split", "test", "--model", tmp_path / "none.pt")
    model = untrained_detector(tmp_path / "m.pt", _cfg(tmp_path / "gone"))
    assert "gone" in eval_map_error(capsys, "--split", "test", "--model", model, "--cache-dir", tmp_path / "cache")


def test_eval_split_with_the_trained_checkpoint_alone(model, tmp_path, capsys, monkeypatch):
    """A tiny trained checkpoint, no --config: the data of its config, detected and scored for real."""
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_eval_map(capsys, "--split", "test", "--model", model, "--cache-dir", tmp_path / "cache",
                              "--format", "txt", "--json", tmp_path / "m.json")
    assert rc == 0, err
    assert 0.0 <= json.loads((tmp_path / "m.json").read_text())["mAP"] <= 1.0
    assert sorted(os.listdir(tmp_path / "detections_test")) == [".googlenet-det-manifest.json", "BloodImage_00001.txt"]
