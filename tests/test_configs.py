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
        # default.yaml names no data (train-detector --data gives it); every other config does
        assert (not cfg.data.root) if path.name == "default.yaml" else cfg.data.root
        assert cfg.model.members >= 1 and cfg.test.protocol in ("ilsvrc", "voc07", "voc", "coco")
        assert cfg.proposals.method in ("ss", "multibox", "ss+multibox")
