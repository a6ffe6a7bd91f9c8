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
                           ("nope", "field .members. must be a list"), ([], "no trained members")):
        p = tmp_path / "m.pt"
        torch.save({**base, "members": members}, p)
        with pytest.raises(UserError, match=match):
            load_detector(str(p))
    torch.save({**base, "format_version": 99, "members": [{}]}, p)
    with pytest.raises(UserError, match="format version 99 is newer than this program's \\(3\\)"):
        load_detector(str(p))


# the fuzz test's finds (tests/test_fuzz_readers.py), as crafted dicts: a field of the wrong type is
# one UserError naming the file and the field, never a TypeError / ValueError / RuntimeError

DETECTOR = {"format_version": 2, "kind": "detector", "detector_kind": "rcnn",
            "config": {"model": {"kind": "rcnn"}}, "classes": ["a"], "members": [{"w": torch.zeros(2)}], "multibox": None}


@pytest.mark.parametrize("key, value, match", [
    ("kind", torch.tensor(1), "not a detector checkpoint$"),                   # was RuntimeError (ambiguous truth)
    ("kind", ["detector"], "not a detector checkpoint$"),
    ("format_version", torch.tensor(2), "field 'format_version' must be an integer >= 1, got a Tensor"),  # was RuntimeError
    ("format_version", "2", "field 'format_version' must be an integer >= 1, got '2'"),
    ("format_version", True, "field 'format_version' must be an integer >= 1, got true"),
    ("format_version", 0, "field 'format_version' must be an integer >= 1, got 0"),
    ("detector_kind", torch.zeros(2), "field 'detector_kind' must be a string"),
    ("config", ["model"], "field 'config' must be a dict"),
    ("classes", [1, 2], "field 'classes' must be a list of class names, got \\[1, 2\\]"),
    ("classes", "ab", "field 'classes' must be a list, got 'ab'"),
    ("members", "nope", "field 'members' must be a list, got 'nope'"),
    ("members", [{1: torch.zeros(1)}], "member 0 is not a state dict"),
    ("multibox", 5, "field 'multibox' must be None or a dict"),
    ("config", {"model": {"kind": torch.zeros(2)}}, "config's model.kind is a Tensor"),
])
def test_detector_checkpoint_fields_of_the_wrong_type(tmp_path, key, value, match):
    from detector.io.checkpoints import load_detector

    p = tmp_path / "m.pt"
    torch.save({**DETECTOR, key: value}, p)
    with pytest.raises(UserError, match=match) as e:
        load_detector(str(p))
    assert str(e.value).startswith(f"model {p}: ") and "\n" not in str(e.value)


def _classifier_dict(tmp_path) -> dict:
    good = tmp_path / "good.pt"
    save_classifier(good, build_backbone("googlenet", 2), arch="googlenet", classes=["a", "b"], input_size=32,
                    config=ClassifierConfig())
    return torch.load(good, weights_only=True)


@pytest.mark.parametrize("key, value, match", [
    ("kind", torch.tensor(1), "not a classifier checkpoint \\(field 'kind' is a Tensor\\)"),
    ("classes", torch.zeros(2), "field 'classes' must be a list, got a Tensor"),   # was TypeError
    ("classes", [1, 2], "field 'classes' must be a list of class names, got \\[1, 2\\]"),
    ("classes", "ab", "field 'classes' must be a list, got 'ab'"),     # len("ab") == 2 passed
    ("num_classes", "2", "field 'num_classes' must be an integer, got '2'"),
    ("num_classes", 1e308, "field 'num_classes' must be an integer, got 1e\\+308"),  # was OverflowError
    ("num_classes", None, "field 'num_classes' must be an integer, got null"),       # was TypeError
    ("num_classes", 0, "field 'num_classes' must be in \\[1, 100000\\], got 0"),
    ("arch", [], "field 'arch' must be a string, got \\[\\]"),                    # was TypeError (unhashable)
    ("arch", "alexnet", "field 'arch' must be one of googlenet, googlenet_bn, inception_v3, got 'alexnet'"),
    ("format_version", "abc", "field 'format_version' must be an integer >= 1, got 'abc'"),  # was ValueError
    ("format_version", torch.zeros(2), "field 'format_version' must be an integer >= 1, got a Tensor"),
    ("format_version", 0, "field 'format_version' must be an integer >= 1, got 0"),
    ("format_version", 3, "format version 3 is newer than this program's \\(2\\)"),
    ("input_size", 32.5, "field 'input_size' must be an integer, got 32.5"),
    ("input_size", 100000, "field 'input_size' must be in \\[1, 1024\\], got 100000"),  # 200 GB
    ("num_classes", 10 ** 8, "field 'num_classes' must be in \\[1, 100000\\], got 100000000"),  # 400 GB
    ("aux_logits", "yes", "field 'aux_logits' must be true or false"),
    ("mean", [0.5, 0.5], "field 'mean' must be 3 numbers, got \\[0.5, 0.5\\]"),
    ("mean", [0.5, float("nan"), 0.5], "field 'mean'\\[1\\] must be a finite number, got nan"),
    ("std", [0.5, 0.0, 0.5], "field 'std'\\[1\\] must be > 0, got 0.0"),
    ("config", {"model": 5}, "field 'config' must be a dict"),
    ("config", {"model": {"dropout": "x"}}, "field 'config' must be a dict"),
    ("state_dict", {1: torch.zeros(1)}, "field 'state_dict' must be a state dict"),
    ("epoch", "1", "field 'epoch' must be an integer, got '1'"),
    ("epoch", -1, "field 'epoch' must be >= 0, got -1"),
    ("metrics", [], "field 'metrics' must be a dict"),
])
def test_classifier_checkpoint_fields_of_the_wrong_type(tmp_path, key, value, match):
    p = tmp_path / "c.pt"
    torch.save({**_classifier_dict(tmp_path), key: value}, p)
    with pytest.raises(UserError, match=match) as e:
        read_classifier(p)
    assert str(e.value).startswith(f"checkpoint {p}: ") and "\n" not in str(e.value)


def test_classifier_checkpoint_of_version_1_and_without_optional_fields_is_read(tmp_path):
    ck = _classifier_dict(tmp_path)
    for key in ("aux_logits", "transform_input", "mean", "std", "config", "epoch", "metrics"):
        del ck[key]
    torch.save({**ck, "format_version": 1}, tmp_path / "old.pt")
    _, meta = load_classifier(tmp_path / "old.pt")
    assert meta["classes"] == ["a", "b"] and meta["mean"] == [0.485, 0.456, 0.406]


# --- silent wrong results (issue 20, h4): class names and non-finite weights ------------------

@pytest.mark.parametrize("classes, match", [
    (["RBC", "RBC", "WBC"], r"field 'classes' must name each class once, got 'RBC' twice$"),  # relabelled silently
    ([], r"field 'classes' must not be empty$"),                                             # was a size mismatch
    (["a", " "], r"field 'classes' must not hold an empty name"),
])
def test_detector_checkpoint_class_names(tmp_path, classes, match):
    from detector.io.checkpoints import load_detector

    p = tmp_path / "m.pt"
    torch.save({**DETECTOR, "classes": classes}, p)
    with pytest.raises(UserError, match=match) as e:
        load_detector(str(p))
    assert str(e.value).startswith(f"model {p}: ")


def test_classifier_checkpoint_duplicate_class_names(tmp_path):
    ck = _classifier_dict(tmp_path)
    ck["classes"] = ["a", "a"]
    torch.save(ck, tmp_path / "dup.pt")
    with pytest.raises(UserError, match=r"dup.pt: field 'classes' must name each class once, got 'a' twice$"):
        read_classifier(tmp_path / "dup.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    from detector.io.checkpoints import load_detector

    w = torch.zeros(3)
    w[1] = bad
    p = tmp_path / "det.pt"
    torch.save({**DETECTOR, "members": [{"w": w}]}, p)  # detected nothing and exited 0
    with pytest.raises(UserError, match=r"det.pt: tensor members\[0\]\.w holds NaN or infinite values"):
        load_detector(str(p))
    ck = _classifier_dict(tmp_path)
    ck["state_dict"]["fc.weight"][0, 0] = bad
    torch.save(ck, tmp_path / "cls.pt")
    with pytest.raises(UserError, match=r"cls.pt: tensor state_dict\.fc\.weight holds NaN or infinite values"):
        read_classifier(tmp_path / "cls.pt")
