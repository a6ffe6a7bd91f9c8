"""detector.io.checkpoints: the classifier checkpoint format, its round trip and bad files (the
detector format's bad files: tests/detector/cli/test_detect.py)."""

import pytest
import torch

from backbone import build_backbone
from backbone.errors import UserError
from detector.config import ClassifierConfig
from detector.io.checkpoints import load_classifier, read_classifier, save_classifier


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


def test_detector_checkpoint_member_not_a_state_dict_and_bad_types(tmp_path):
    import torch

    from backbone.errors import UserError
    from detector.io.checkpoints import load_detector

    base = {"format_version": 2, "kind": "detector", "detector_kind": "rcnn", "config": {}, "classes": ["a"]}
    for members, match in (([[1, 2, 3]], "member 0 is not a state dict"), ([{"w": 3}], "member 0 is not a state dict"),
                           ("nope", "wrong type"), ([], "no trained members")):
        p = tmp_path / "m.pt"
        torch.save({**base, "members": members}, p)
        with pytest.raises(UserError, match=match):
            load_detector(str(p))
    torch.save({**base, "format_version": 99, "members": [{}]}, p)
    with pytest.raises(UserError, match="checkpoint format 99 is not supported"):
        load_detector(str(p))
