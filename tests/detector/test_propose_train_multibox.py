import os
from pathlib import Path

import numpy as np
import pytest

from backbone.errors import UserError
from detector.schema import load_detector_config
from detector.train_multibox import train_multibox
from proposals.multibox import load_multibox, predict

MINI = Path(__file__).resolve().parent.parent / "data" / "voc-mini"
SMALL = ["proposals.multibox.input_size=64", "proposals.multibox.num_priors=16", "proposals.multibox.epochs=1",
         "proposals.multibox.batch_size=2"]


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(f"data:\n  format: voc\n  root: {MINI}\n  classes: [Platelets, RBC, WBC]\n")
    return str(p)


def test_train_multibox_writes_a_loadable_checkpoint_and_resumes(config, tmp_path):
    cfg = load_detector_config(config, SMALL)
    out = tmp_path / "mb"
    path = train_multibox(cfg, str(out), split="train")
    assert os.path.isfile(path) and (out / "config.yaml").is_file() and (out / "last.pt").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    net = load_multibox(path)
    assert net.num_priors == 16 and net.cfg.input_size == 64
    boxes, scores = predict(net, [np.zeros((48, 64, 3), np.uint8)], top_k=4)[0]
    assert boxes.shape == (4, 4) and (boxes[:, 2] <= 64).all()
    # run again: everything is done, nothing is trained twice
    mtime = os.path.getmtime(out / "last.pt")
    assert train_multibox(cfg, str(out), split="train") == path
    assert os.path.getmtime(out / "last.pt") == mtime
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    # other settings in the same folder: a clear error, not a silent mix
    other = load_detector_config(config, SMALL[:-1] + ["proposals.multibox.batch_size=1"])
    with pytest.raises(UserError, match="other MultiBox settings"):
        train_multibox(other, str(out), split="train")


def test_train_multibox_bad_settings(config, tmp_path):
    with pytest.raises(UserError, match="matching"):
        train_multibox(load_detector_config(config, SMALL + ["proposals.multibox.matching=auction"]), str(tmp_path))
    with pytest.raises(UserError, match="optimizer"):
        train_multibox(load_detector_config(config, SMALL + ["proposals.multibox.optimizer=lbfgs"]), str(tmp_path))
