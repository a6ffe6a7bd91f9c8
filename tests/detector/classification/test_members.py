"""detector.classification.members: the ensemble a command line names (--model, or --arch with
--weights, never both), through classify."""

import torch
from PIL import Image

from backbone import build_backbone
from detector.cli import classify
from detector.io.checkpoints import save_classifier
from tests.detector.helpers import one_error


def test_classify_bad_model_options(trained, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(img)
    other = tmp_path / "other.pt"
    save_classifier(other, build_backbone("googlenet", 2), arch="googlenet", classes=["x", "y"], input_size=32)
    model = str(trained / "model.pt")
    assert classify.main([str(img), "--model", model, str(other)]) == 2
    one_error(capsys, "classify", "other.pt", "differ", "one class list")
    w = tmp_path / "w.pth"
    torch.save(build_backbone("googlenet_bn", 1000).state_dict(), w)
    assert classify.main([str(img), "--model", model, "--arch", "googlenet_bn", "--weights", str(w)]) == 2
    one_error(capsys, "classify", "not both")
    assert classify.main([str(img), "--model", model, "--arch", "googlenet_bn"]) == 2
    one_error(capsys, "classify", "not both")
    assert classify.main([str(img), "--weights", str(w)]) == 2
    one_error(capsys, "classify", "--weights needs --arch", "googlenet_bn", "inception_v3")
