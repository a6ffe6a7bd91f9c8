"""Fixtures that test modules in several folders below tests/detector/ share."""

import pytest

from detector.cli import train_classifier

from .helpers import colour_folder, tiny_multibox


@pytest.fixture
def mini(test_data):
    return test_data / "voc-mini"


@pytest.fixture
def sample(test_data):
    """The published eval-map sample (text files, boxes as xywh)."""
    return test_data / "metrics-sample"


@pytest.fixture
def mini_config(test_data, tmp_path):
    """A detector config of voc-mini with selective search proposals at superpixel scale 1."""
    p = tmp_path / "mini.yaml"
    p.write_text(f"data:\n  format: voc\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n"
                 "proposals:\n  method: ss\n  superpixel_scale: 1.0\n")
    return str(p)


@pytest.fixture(scope="module")
def multibox_nets():
    """Two untrained MultiBox networks of different weights and priors."""
    return tiny_multibox(0), tiny_multibox(1)


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """An image-folder classification set (colour classes; splits train and test)."""
    return colour_folder(tmp_path_factory.mktemp("colours"))


TRAIN_SETS = ["data.format=imagefolder", "model.input_size=32", "model.arch=googlenet", "train.batch_size=4",
              "train.max_steps_per_epoch=1", "train.epochs=1", "test.crops=[1,10]"]


@pytest.fixture(scope="session")
def trained(folder, tmp_path_factory):
    """One tiny classifier trained for 1 step by the train-classifier CLI: its run folder."""
    out = tmp_path_factory.mktemp("run") / "a"
    sets = []
    for s in TRAIN_SETS + ["data.train_split=train", "data.val_split=test", "model.aux_logits=false"]:
        sets += ["--set", s]
    rc = train_classifier.main(["--data-root", str(folder), "--out", str(out), "--device", "cpu", *sets])
    assert rc == 0
    return out
