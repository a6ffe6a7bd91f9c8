"""The classification model end to end: data (object crops, image folders), the checkpoint
format, train-classifier (with resume), classify and eval-classifier, and their bad input."""

import dataclasses
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
from detector.datasets.crops import (
    ClassificationSet, TrainTransform, build_classification_set, crop_box, object_crops, to_chw, train_transform,
)
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


def _one_error(capsys, prog, *needles):
    """The CLI wrote exactly one line on stderr, ``PROG: error: ...`` containing ``needles``, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


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


def _walk(t):
    yield t
    for c in getattr(t, "transforms", None) or []:
        yield from _walk(c)


def test_train_transform_is_the_papers_recipe():
    """Random crops of 8%-100% of the area, aspect 3/4-4/3, several interpolations, mirror,
    photometric distortions: read off the built albumentations pipeline."""
    import albumentations as A

    t = train_transform(32, ClassifierConfig().train, seed=0)
    steps = list(_walk(t.compose))
    crops = [s for s in steps if isinstance(s, A.RandomResizedCrop)]
    assert crops and all(tuple(c.size) == (32, 32) for c in crops)
    for c in crops:
        assert tuple(c.scale) == pytest.approx((0.08, 1.0))
        assert tuple(c.ratio) == pytest.approx((3 / 4, 4 / 3))
    assert len({c.interpolation for c in crops}) >= 3
    chooser = next(s for s in steps if isinstance(s, A.OneOf) and crops[0] in s.transforms)
    assert chooser.p == 1.0  # one of the crops is always applied
    assert any(isinstance(s, A.HorizontalFlip) for s in steps)
    assert any(isinstance(s, A.ColorJitter) for s in steps)


def test_augmentation_differs_between_workers_and_epochs():
    """2 workers x 2 epochs over copies of one image: every batch is different (workers used to
    share one copied random state, and re-forked workers repeated it every epoch), and a
    resumed run draws epoch 2's batches again exactly."""
    img = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    t = dataclasses.replace(ClassifierConfig().train, batch_size=2, workers=2, seed=3)

    def loader():
        ds = ClassificationSet(["a"], [img] * 8, [0] * 8, [str(i) for i in range(8)],
                               train_transform(32, t, seed=t.seed))
        return train_classifier.make_train_loader(ds, t)

    def epoch(ld, e):
        train_classifier.start_epoch(ld, t.seed, e)
        return [x for x, _ in ld]

    ld = loader()
    e1, e2 = epoch(ld, 1), epoch(ld, 2)
    assert len(e1) == len(e2) == 4  # batches alternate between workers 0 and 1
    batches = e1 + e2
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            assert not torch.equal(batches[i], batches[j]), (i, j)
    resumed = epoch(loader(), 2)  # a new process would start here after --resume
    assert all(torch.equal(a, b) for a, b in zip(resumed, e2))


def test_train_transform_reseed_is_deterministic():
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    a = train_transform(32, ClassifierConfig().train, seed=5)
    b = train_transform(32, ClassifierConfig().train, seed=5)
    assert isinstance(a, TrainTransform)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a(img), b(img))
    b.reseed(worker=1)
    a.reseed(worker=0)
    assert not torch.equal(a(img), b(img))


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


def test_train_from_voc_object_crops(tmp_path):
    """Fast: the ground-truth boxes of a VOC-layout dataset become the classes; 1 step per epoch."""
    out = tmp_path / "voc"
    rc = train_classifier.main(["--data-root", VOC_MINI, "--out", str(out), "--device", "cpu",
                                "--set", "data.format=voc", "--set", "data.train_split=train",
                                "--set", "data.val_split=test", *_sets()[2:]])  # drop data.format=imagefolder
    assert rc == 0
    ck = read_classifier(out / "model.pt")
    assert ck["classes"] == ["RBC", "WBC"] and ck["config"]["data"]["format"] == "voc"  # voc-mini's classes
    rows = [json.loads(x) for x in open(out / "log.jsonl")]
    assert [(r["epoch"], r["steps"]) for r in rows] == [(1, 1)] and "val_top1" in rows[0]


def test_train_bad_input(tmp_path, capsys):
    rc = train_classifier.main(["--out", str(tmp_path / "x")])
    assert rc == 2 and "give --config" in capsys.readouterr().err
    rc = train_classifier.main(["--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "x"),
                                "--set", "data.format=imagefolder"])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    rc = train_classifier.main(["--data-root", VOC_MINI, "--out", str(tmp_path / "x"), "--set", "model.input_size=8"])
    assert rc == 2 and "input_size 8" in capsys.readouterr().err


def test_split_folders_are_not_classes(folder, tmp_path, capsys):
    """root/train + root/test without the wanted split (default train split: trainval): one error
    naming the folder and its splits, not a model with classes 'test' and 'train'."""
    out = tmp_path / "run"
    rc = train_classifier.main(["--data-root", str(folder), "--out", str(out), "--set", "data.format=imagefolder"])
    assert rc == 2
    line = _one_error(capsys, "train-classifier", str(folder), "'trainval'", "test, train")
    assert "data.train_split" in line
    assert not out.exists()
    with pytest.raises(UserError, match="no split folder 'val'"):
        image_folder(str(folder), "val")


def test_eval_classifier_split_folders_are_not_classes(trained, folder, capsys):
    rc = eval_classifier.main(["--model", str(trained / "model.pt"), "--data-root", str(folder), "--split", "val"])
    assert rc == 2
    _one_error(capsys, "eval-classifier", "no split folder 'val'", "test, train")


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


def test_classify_144_crops(trained, folder, tmp_path):
    img = folder / "test" / "red" / "2.png"
    js = tmp_path / "c144.json"
    rc = classify.main([str(img), "--model", str(trained / "model.pt"), "--crops", "144", "--json", str(js),
                        "--device", "cpu"])
    assert rc == 0
    doc = json.loads(js.read_text())
    assert doc["crops"] == 144 and len(doc["results"]) == 1
    got = {t["label"]: t["prob"] for t in doc["results"][0]["top"]}
    model, meta = load_classifier(trained / "model.pt")
    from detector.images import load_image

    want = predict_probs([model], [to_chw(load_image(str(img)))], 144, meta["input_size"])[0, 0]
    for i, c in enumerate(meta["classes"]):
        assert got[c] == pytest.approx(float(want[i]), abs=1e-5)


def test_classify_paper_googlenet_weights(tmp_path, capsys):
    """--arch googlenet takes 1000-class state dicts in our layout; torchvision's (batch-norm)
    GoogLeNet weights are refused with a pointer to googlenet_bn, which the help names."""
    img = tmp_path / "x.png"
    Image.new("RGB", (48, 40), (10, 200, 90)).save(img)
    net = build_backbone("googlenet", 1000)
    ours = tmp_path / "ours.pth"
    torch.save(net.state_dict(), ours)
    js = tmp_path / "g.json"
    rc = classify.main([str(img), "--arch", "googlenet", "--weights", str(ours), "--input-size", "32",
                        "--top", "3", "--json", str(js), "--device", "cpu"])
    assert rc == 0
    capsys.readouterr()
    top = json.loads(js.read_text())["results"][0]["top"]
    from detector.images import load_image

    want = predict_probs([net.eval()], [to_chw(load_image(str(img)))], 1, 32)[0, 0]
    p, i = want.topk(3)
    names = classify.imagenet_classes("googlenet")
    assert [t["label"] for t in top] == [names[k] for k in i.tolist()]
    assert [t["prob"] for t in top] == pytest.approx(p.tolist(), abs=1e-5)
    tv = tmp_path / "tv.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), tv)
    assert classify.main([str(img), "--arch", "googlenet", "--weights", str(tv)]) == 2
    _one_error(capsys, "classify", "does not match", "--arch googlenet_bn")
    helptext = classify.build_parser().format_help()
    assert "googlenet_bn" in helptext and "inception_v3" in helptext and "no ImageNet weights" in helptext


def test_classify_bad_model_options(trained, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(img)
    other = tmp_path / "other.pt"
    save_classifier(other, build_backbone("googlenet", 2), arch="googlenet", classes=["x", "y"], input_size=32)
    model = str(trained / "model.pt")
    assert classify.main([str(img), "--model", model, str(other)]) == 2
    _one_error(capsys, "classify", "other.pt", "differ", "one class list")
    w = tmp_path / "w.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), w)
    assert classify.main([str(img), "--model", model, "--arch", "googlenet_bn", "--weights", str(w)]) == 2
    _one_error(capsys, "classify", "not both")
    assert classify.main([str(img), "--model", model, "--arch", "googlenet_bn"]) == 2
    _one_error(capsys, "classify", "not both")
    assert classify.main([str(img), "--weights", str(w)]) == 2
    _one_error(capsys, "classify", "--weights needs --arch", "googlenet_bn", "inception_v3")


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
    _one_error(capsys, "eval-classifier", str(missing), "no such folder")
