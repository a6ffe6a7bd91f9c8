"""classify: top-k of images from train-classifier checkpoints (an ensemble is the mean of its
members) or ImageNet state dicts, 1 to 144 crops, odd image kinds, bad input. The tiny model
comes from train-classifier (fixture ``trained``, tests/detector/conftest.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backbone import build_backbone
from backbone.multicrop import predict_probs
from detector.classification import members as members_mod
from detector.classification.transforms import to_chw
from detector.cli import classify
from detector.io.checkpoints import load_classifier, save_classifier
from detector.io.images import load_image
from tests.detector.helpers import one_error


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
    """Two members of different weights: each alone gives other probabilities, the ensemble their mean."""
    model, meta = load_classifier(trained / "model.pt")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * p.std().nan_to_num() * torch.randn(p.shape, generator=g))
    other = tmp_path / "other.pt"
    save_classifier(other, model, arch=meta["arch"], classes=meta["classes"], input_size=meta["input_size"],
                    config=meta["config"], mean=meta["mean"], std=meta["std"])
    img = folder / "test" / "green" / "1.png"

    def probs(*models):
        js = tmp_path / ("_".join(Path(m).stem for m in models) + ".json")
        assert classify.main([str(img), "--model", *map(str, models), "--json", str(js), "--device", "cpu"]) == 0
        (result,) = json.loads(js.read_text())["results"]
        return {t["label"]: t["prob"] for t in result["top"]}

    a, b = probs(trained / "model.pt"), probs(other)
    both = probs(trained / "model.pt", other)
    assert set(a) == set(b) == set(both) == set(meta["classes"])
    assert max(abs(a[k] - b[k]) for k in a) > 0.05  # the members do differ ...
    for k in a:  # ... so ignoring either one would fail here
        assert both[k] == pytest.approx((a[k] + b[k]) / 2, abs=1e-5)


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
    want = predict_probs([net.eval()], [to_chw(load_image(str(img)))], 1, 32)[0, 0]
    p, i = want.topk(3)
    names = members_mod.imagenet_classes("googlenet")
    assert [t["label"] for t in top] == [names[k] for k in i.tolist()]
    assert [t["prob"] for t in top] == pytest.approx(p.tolist(), abs=1e-5)
    tv = tmp_path / "tv.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), tv)
    assert classify.main([str(img), "--arch", "googlenet", "--weights", str(tv)]) == 2
    one_error(capsys, "classify", "does not match", "--arch googlenet_bn")
    helptext = classify.build_parser().format_help()
    assert "googlenet_bn" in helptext and "inception_v3" in helptext and "no ImageNet weights" in helptext


@pytest.mark.parametrize("flag, value", [("--top", "0"), ("--top", "-2"), ("--batch-size", "0")])
def test_classify_counts_below_one_are_one_line(trained, tmp_path, capsys, flag, value):
    """--top 0 printed one class anyway; --batch-size 0 was accepted."""
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(img)
    assert classify.main([str(img), "--model", str(trained / "model.pt"), flag, value]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"classify: error: {flag} {value}: must be >= 1"]


def test_classify_input_size_out_of_range_is_one_line(tmp_path, capsys):
    """--input-size 100000 for --arch models asked for 200 GB of crops."""
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(img)
    w = tmp_path / "w.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), w)
    assert classify.main([str(img), "--arch", "googlenet_bn", "--weights", str(w), "--input-size", "100000"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["classify: error: --input-size 100000: must be in [1, 1024]"]
