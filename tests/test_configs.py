"""Every config in configs/ loads and validates."""

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    if "classifier" in path.name:
        from detector.config import load_classifier_config, validate_config
        validate_config(load_classifier_config(str(path)))
    else:
        from detector.config import load_detector_config
        cfg = load_detector_config(str(path))
        # the default configs name no data (train-detector --data gives it); every other config does
        assert (not cfg.data.root) if path.name.startswith("default") else cfg.data.root
        assert cfg.model.members >= 1 and cfg.test.protocol in ("ilsvrc", "voc07", "voc", "coco")
        assert cfg.proposals.method in ("ss", "multibox", "ss+multibox", "trunk")


def test_the_imagenet_default_differs_from_the_default_only_where_it_says():
    """default_imagenet.yaml is default.yaml with the weights, the norm and the rate of fine-tuning."""
    from backbone.config import to_dict
    from detector.config import load_detector_config

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a = dict(flat(to_dict(load_detector_config(str(ROOT / "configs" / "default.yaml")))))
    b = dict(flat(to_dict(load_detector_config(str(ROOT / "configs" / "default_imagenet.yaml")))))
    assert {k: (a[k], b[k]) for k in a if a[k] != b[k]} == {
        "model.init": (None, "imagenet"), "model.fast.norm": ("bn", "none"), "train.lr": (0.02, 0.0025)}
