"""The classification model end to end: data (object crops, image folders), the checkpoint
format, train-classifier (with resume), classify and eval-classifier, and their bad input."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from backbone import build_backbone
from backbone.errors import UserError
from backbone.multicrop import predict_probs
from detector.classifier_io import (
    ClassifierConfig, load_classifier, load_classifier_config, read_classifier, save_classifier,
)
from detector.cli import classify, eval_classifier, train_classifier
from detector.datasets.crops import build_classification_set, crop_box, object_crops, to_chw, train_transform
from detector.datasets.imagefolder import image_folder
from detector.datasets.records import Dataset, ImageRecord

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOC_MINI = os.path.join(ROOT, "tests", "data", "voc-mini")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _make_folder(root, per_class=4, size=(20, 26), seed=0):
    """root/<split>/<colour>/*.png: tiny noisy images whose class is their colour."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, rgb in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                a = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _make_folder(tmp_path_factory.mktemp("colours"))


TRAIN_SETS = ["data.format=imagefolder", "model.input_size=32", "model.arch=googlenet", "train.batch_size=4",
              "train.max_steps_per_epoch=1", "train.epochs=1", "test.crops=[1,10]"]


def _sets(extra=()):
    out = []
    for s in list(TRAIN_SETS) + list(extra):
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """One tiny model trained for 1 step (shared by the CLI tests)."""
    out = tmp_path_factory.mktemp("run") / "a"
    rc = train_classifier.main(["--data-root", str(folder), "--out", str(out), "--device", "cpu", *_sets(
        ["data.train_split=train", "data.val_split=test", "model.aux_logits=false"])])
    assert rc == 0
    return out


# ------------------------------------------------------------------ data


def test_crop_box_margin_and_clipping():
    img = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    c = crop_box(img, [4, 2, 8, 6], margin=0.25)  # 4x4 box, 1 px each side
    np.testing.assert_array_equal(c, img[1:7, 3:9])
    c = crop_box(img, [0, 0, 20, 10], margin=0.5)
    assert c.shape == (10, 20, 3)


def test_object_crops_from_voc_mini():
    from detector.datasets import load_dataset

    cfg = load_classifier_config(None, ["data.format=voc", f"data.root={VOC_MINI}", "crops.margin=0.0"])
    ds = load_dataset(cfg.data, "train")
    crops = object_crops(ds, margin=0.0)
    n_boxes = sum(len(r.labels) for r in ds.records)
    assert len(crops) == n_boxes and crops.classes == ds.classes
    rec = ds.records[0]
    x1, y1, x2, y2 = rec.boxes[0]
    img, label = crops[0]
    assert img.shape[:2] == (int(np.ceil(y2)) - int(np.floor(y1)), int(np.ceil(x2)) - int(np.floor(x1)))
    assert label == rec.labels[0] - 1  # 0-based
    via_cfg = build_classification_set(cfg, "train")
    assert len(via_cfg) == len(crops)


def test_object_crops_skip_difficult_and_empty(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (40, 30)).save(p)
    rec = ImageRecord("x", str(p), 40, 30, [[1, 1, 10, 10], [5, 5, 30, 25]], [1, 2], [True, False])
    crops = object_crops(Dataset(["a", "b"], [rec]), margin=0.0, skip_difficult=True)
    assert len(crops) == 1 and crops.labels.tolist() == [1]
    with pytest.raises(UserError, match="no ground-truth boxes"):
        object_crops(Dataset(["a"], [ImageRecord("y", str(p), 40, 30, np.zeros((0, 4)), [], [])]))


def test_image_folder(folder):
    ds = image_folder(str(folder), "train")
    assert ds.classes == ["blue", "green", "red"] and len(ds) == 12
    assert ds.class_counts().tolist() == [4, 4, 4]
    img, y = ds[0]
    assert img.shape == (20, 26, 3) and ds.classes[y] == "blue"
    test = image_folder(str(folder), "test", classes=["red", "green", "blue"])
    assert test.classes[test[0][1]] == "blue" and test[0][1] == 2


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        image_folder(str(tmp_path / "nope"))
    (tmp_path / "flat.png").write_bytes(b"x")
    with pytest.raises(UserError, match="no class folders"):
        image_folder(str(tmp_path))
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no image files in class folder 'cat'"):
        image_folder(str(tmp_path))
    (tmp_path / "cat" / "a.png").write_bytes(b"x")
    with pytest.raises(UserError, match="'cat' is not one of the classes"):
        image_folder(str(tmp_path), classes=["dog"])


def test_train_transform_shapes_and_randomness():
    cfg = ClassifierConfig()
    t = train_transform(32, cfg.train, seed=0)
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    a, b = t(img), t(img)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, b)  # random crops / jitter


# ------------------------------------------------------------------ checkpoint format


def test_checkpoint_format_and_roundtrip(tmp_path):
    net = build_backbone("googlenet", 3, aux_logits=True)
    path = tmp_path / "m.pt"
    save_classifier(path, net, arch="googlenet", classes=["a", "b", "c"], input_size=32, config=ClassifierConfig())
    raw = torch.load(path, weights_only=True)
    for key in ("format_version", "kind", "arch", "num_classes", "input_size", "classes", "config", "state_dict"):
        assert key in raw
    assert raw["kind"] == "classifier" and raw["num_classes"] == 3 and raw["aux_logits"] is True
    assert any(k.startswith("aux1.") for k in raw["state_dict"])
    # strict load into build_backbone(arch, num_classes, aux_logits=True), as documented
    with_aux, _ = load_classifier(path, "cpu")
    assert with_aux.aux1 is not None
    model, meta = load_classifier(path, "cpu", aux_logits=False)
    assert meta["classes"] == ["a", "b", "c"] and not model.training and model.aux1 is None
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), net.eval()(x))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_classifier(tmp_path / "none.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(UserError, match="corrupt.pt: not a readable PyTorch file"):
        read_classifier(bad)
    sd = tmp_path / "sd.pt"
    torch.save(build_backbone("googlenet", 3).state_dict(), sd)
    with pytest.raises(UserError, match="bare state dict"):
        read_classifier(sd)
    other = tmp_path / "det.pt"
    torch.save({"kind": "detector", "format_version": 1}, other)
    with pytest.raises(UserError, match="is a 'detector' checkpoint"):
        read_classifier(other)
    net = build_backbone("googlenet", 3)
    good = tmp_path / "good.pt"
    save_classifier(good, net, arch="googlenet", classes=["a", "b", "c"], input_size=32)
    ck = torch.load(good, weights_only=True)
    ck["state_dict"]["fc.weight"] = torch.zeros(5, 1024)
    torch.save(ck, tmp_path / "mismatch.pt")
    with pytest.raises(UserError, match="mismatch.pt: weights do not fit"):
        load_classifier(tmp_path / "mismatch.pt")
    ck["format_version"] = 99
    torch.save(ck, tmp_path / "future.pt")
    with pytest.raises(UserError, match="newer"):
        read_classifier(tmp_path / "future.pt")


# ------------------------------------------------------------------ train-classifier


def test_train_writes_run_and_resumes(trained, folder, capsys):
    files = sorted(os.listdir(trained))
    assert {"config.yaml", "last.pt", "model.pt", "log.jsonl", "log.png"} <= set(files)
    rows = [json.loads(x) for x in open(trained / "log.jsonl")]
    assert [r["epoch"] for r in rows] == [1] and "val_top1" in rows[0] and rows[0]["steps"] == 1
    lean = torch.load(trained / "model.pt", weights_only=True)
    assert "train_state" not in lean and lean["classes"] == ["blue", "green", "red"] and lean["input_size"] == 32
    assert "train_state" in torch.load(trained / "last.pt", weights_only=True)
    # the same folder again without --resume: refused, nothing overwritten
    before = (trained / "last.pt").stat().st_mtime_ns
    rc = train_classifier.main(["--data-root", str(folder), "--out", str(trained), *_sets()])
    assert rc == 2 and "use --resume" in capsys.readouterr().err
    assert (trained / "last.pt").stat().st_mtime_ns == before
    # resume for one more epoch: the log grows, the epoch count continues
    rc = train_classifier.main(["--out", str(trained), "--resume", "--set", "train.epochs=2"])
    assert rc == 0
    rows = [json.loads(x) for x in open(trained / "log.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert torch.load(trained / "model.pt", weights_only=True)["epoch"] == 2


@pytest.mark.slow
def test_train_from_voc_object_crops(tmp_path):
    out = tmp_path / "voc"
    rc = train_classifier.main(["--data-root", VOC_MINI, "--out", str(out), "--set", "data.format=voc",
                                "--set", "data.train_split=train", "--set", "data.val_split=test",
                                *_sets()[2:]])  # drop data.format=imagefolder
    assert rc == 0
    ck = read_classifier(out / "model.pt")
    assert ck["classes"] == ["RBC", "WBC"] and ck["config"]["data"]["format"] == "voc"  # voc-mini's classes


def test_train_bad_input(tmp_path, capsys):
    rc = train_classifier.main(["--out", str(tmp_path / "x")])
    assert rc == 2 and "give --config" in capsys.readouterr().err
    rc = train_classifier.main(["--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "x"),
                                "--set", "data.format=imagefolder"])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    rc = train_classifier.main(["--data-root", VOC_MINI, "--out", str(tmp_path / "x"), "--set", "model.input_size=8"])
    assert rc == 2 and "input_size 8" in capsys.readouterr().err


# ------------------------------------------------------------------ classify


def test_classify_with_checkpoint_and_json(trained, folder, tmp_path, capsys):
    out_json = tmp_path / "c.json"
    rc = classify.main([str(folder / "test" / "red"), str(folder / "test" / "blue" / "0.png"),
                        "--model", str(trained / "model.pt"), "--crops", "10", "--json", str(out_json)])
    assert rc == 0
    doc = json.loads(out_json.read_text())
    assert len(doc["results"]) == 5 and doc["crops"] == 10
    top = doc["results"][0]["top"]
    assert len(top) == 3 and {t["label"] for t in top} == {"red", "green", "blue"}
    assert abs(sum(t["prob"] for t in top) - 1) < 1e-4
    assert "red/0.png" in capsys.readouterr().out


def test_classify_ensemble_is_mean_of_members(trained, folder, tmp_path):
    img = folder / "test" / "green" / "1.png"
    single = tmp_path / "s.json"
    classify.main([str(img), "--model", str(trained / "model.pt"), "--json", str(single)])
    double = tmp_path / "d.json"
    classify.main([str(img), "--model", str(trained / "model.pt"), str(trained / "last.pt"), "--json", str(double)])
    a = {t["label"]: t["prob"] for t in json.loads(single.read_text())["results"][0]["top"]}
    b = {t["label"]: t["prob"] for t in json.loads(double.read_text())["results"][0]["top"]}
    for k in a:  # last.pt holds the same Polyak weights as model.pt
        assert a[k] == pytest.approx(b[k], abs=1e-5)


def test_classify_torchvision_weights(tmp_path, capsys):
    img = tmp_path / "x.jpg"
    Image.new("RGB", (80, 60), (120, 30, 200)).save(img)
    w = tmp_path / "tv.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), w)
    rc = classify.main([str(img), "--arch", "googlenet_bn", "--weights", str(w), "--input-size", "64"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # the path + top 5
    from torchvision.models import GoogLeNet_Weights

    names = set(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])
    assert all(ln.split(None, 1)[1] in names for ln in lines[1:])


def test_classify_bad_input(trained, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(img)
    assert classify.main([str(img)]) == 2
    assert "no model given" in capsys.readouterr().err
    assert classify.main([str(tmp_path / "gone.jpg"), "--model", str(trained / "model.pt")]) == 2
    assert "gone.jpg: no such file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert classify.main([str(empty), "--model", str(trained / "model.pt")]) == 2
    assert "no image files" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    assert classify.main([str(bad), "--model", str(trained / "model.pt")]) == 2
    assert "bad.jpg: not an image" in capsys.readouterr().err
    # weights of another network, and of another class count
    other = tmp_path / "paper.pth"
    torch.save(build_backbone("googlenet", 1000).state_dict(), other)
    assert classify.main([str(img), "--arch", "googlenet_bn", "--weights", str(other)]) == 2
    assert "does not match" in capsys.readouterr().err
    ten = tmp_path / "ten.pth"
    torch.save(build_backbone("googlenet_bn", 10).state_dict(), ten)
    assert classify.main([str(img), "--arch", "googlenet_bn", "--weights", str(ten)]) == 2
    assert "shape mismatch" in capsys.readouterr().err
    assert classify.main([str(img), "--arch", "googlenet_bn"]) == 2
    assert "--arch needs --weights" in capsys.readouterr().err
    assert classify.main([str(img), "--model", str(other)]) == 2
    assert "bare state dict" in capsys.readouterr().err


def test_classify_odd_image_kinds(trained, tmp_path, capsys):
    """Grayscale, RGBA, 16-bit, CMYK and EXIF-rotated images all classify."""
    Image.new("L", (30, 20), 90).save(tmp_path / "gray.png")
    Image.new("RGBA", (30, 20), (200, 0, 0, 100)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "g16.png")
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    rot = Image.new("RGB", (30, 20), (0, 0, 200))
    exif = rot.getexif()
    exif[0x0112] = 8
    rot.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    rc = classify.main([str(tmp_path), "--model", str(trained / "model.pt"), "--crops", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    for name in ("gray.png", "rgba.png", "g16.png", "cmyk.jpg", "rot.jpg"):
        assert name in out


# ------------------------------------------------------------------ eval-classifier


def test_eval_classifier_table_json_and_ensemble(trained, folder, tmp_path, capsys):
    js = tmp_path / "e.json"
    rc = eval_classifier.main(["--model", str(trained / "model.pt"), str(trained / "last.pt"),
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
