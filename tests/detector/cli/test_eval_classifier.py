"""eval-classifier: the top-1/top-5 table and JSON of models and their ensemble, 144 crops, bad
input. The tiny model comes from train-classifier (fixture ``trained``, tests/detector/conftest.py)."""

import json

import pytest

from backbone import build_backbone
from backbone.multicrop import predict_probs
from detector.classification.data import image_folder
from detector.classification.transforms import to_chw
from detector.cli import eval_classifier
from detector.io.checkpoints import load_classifier, save_classifier
from tests.detector.helpers import one_error


def test_eval_classifier_split_folders_are_not_classes(trained, folder, capsys):
    rc = eval_classifier.main(["--model", str(trained / "model.pt"), "--data-root", str(folder), "--split", "val"])
    assert rc == 2
    one_error(capsys, "eval-classifier", "no split folder 'val'", "test, train")


def test_eval_classifier_table_json_and_ensemble(trained, folder, tmp_path, capsys):
    js = tmp_path / "e.json"
    rc = eval_classifier.main(["--model", str(trained / "model.pt"), str(trained / "best.pt"),
                               "--data-root", str(folder), "--split", "test", "--crops", "1", "10",
                               "--json", str(js)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ensemble of 2" in out and "top-1 err" in out
    doc = json.loads(js.read_text())
    assert doc["images"] == 12 and len(doc["results"]) == 6  # (2 models + ensemble) x 2 crop counts
    # the 1-crop top-1 equals a direct computation with the same model
    model, meta = load_classifier(trained / "model.pt")
    data = image_folder(str(folder), "test", classes=meta["classes"])
    probs = predict_probs([model], [to_chw(data.image(i)) for i in range(len(data))], 1, meta["input_size"])
    top1 = float((probs[:, 0].argmax(1).numpy() == data.labels).mean())
    row = next(r for r in doc["results"] if r["crops"] == 1 and r["model"].endswith("model.pt"))
    assert row["top1"] == pytest.approx(top1) and row["top5"] == 1.0
    assert row["top1_error"] == pytest.approx(1 - top1)


def test_eval_classifier_bad_input(trained, tmp_path, capsys):
    other = tmp_path / "other.pt"
    save_classifier(other, build_backbone("googlenet", 2), arch="googlenet", classes=["x", "y"], input_size=32)
    assert eval_classifier.main(["--model", str(trained / "model.pt"), str(other)]) == 2
    assert "differ" in capsys.readouterr().err
    assert eval_classifier.main(["--model", str(tmp_path / "none.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_eval_classifier_144_crops(trained, folder, tmp_path, capsys):
    js = tmp_path / "e144.json"
    rc = eval_classifier.main(["--model", str(trained / "model.pt"), "--data-root", str(folder), "--split", "test",
                               "--crops", "144", "--every", "12", "--json", str(js), "--device", "cpu"])
    assert rc == 0
    assert " 144 " in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert doc["images"] == 1 and [r["crops"] for r in doc["results"]] == [144]
    model, meta = load_classifier(trained / "model.pt")
    data = image_folder(str(folder), "test", classes=meta["classes"])
    index = list(range(0, len(data), 12))
    probs = predict_probs([model], [to_chw(data.image(i)) for i in index], 144, meta["input_size"])
    top1 = float((probs[:, 0].argmax(1).numpy() == data.labels[index]).mean())
    assert doc["results"][0]["top1"] == pytest.approx(top1)


def test_eval_classifier_missing_data_root(trained, tmp_path, capsys):
    missing = tmp_path / "gone"
    assert eval_classifier.main(["--model", str(trained / "model.pt"), "--data-root", str(missing)]) == 2
    one_error(capsys, "eval-classifier", str(missing), "no such folder")
