"""Fixtures of the console-script tests."""

import pytest
import torch

from detector.io.datasets import load_dataset
from tests.detector.helpers import jittered_proposals, tiny_config, train_given


@pytest.fixture(scope="session")
def model(tmp_path_factory, test_data):
    """A tiny R-CNN detector with box regression, trained for one epoch on voc-mini: its model.pt."""
    cfg = tiny_config(test_data / "voc-mini", **{"model.bbox_reg": "true", "proposals.max_boxes": 60,
                                                  "proposals.working_width": 200, "test.max_proposals": 60})
    out = tmp_path_factory.mktemp("model")
    props = jittered_proposals(load_dataset(cfg.data, "train"))
    return train_given(cfg, str(out / "run"), torch.device("cpu"), train_proposals=props, progress=False)
