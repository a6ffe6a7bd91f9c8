"""bench/make_synthetic_det.py: the synthetic ILSVRC DET layout is read by read_ilsvrc (issue 15)."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from detector.io.datasets import DatasetWarning
from detector.io.datasets.ilsvrc import read_ilsvrc
from detector.io.datasets.index import DISABLE_ENV

_spec = importlib.util.spec_from_file_location(
    "make_synthetic_det", Path(__file__).resolve().parent.parent / "bench" / "make_synthetic_det.py")
msd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(msd)


def _arrays(ds):
    return [(r.image_id, r.path, r.width, r.height, r.boxes.tolist(), r.labels.tolist(),
             r.devkit_index, sorted(r.blacklist)) for r in ds.records]


def test_synthetic_layout_read_with_blacklist_index_on_equals_off(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    root = tmp_path / "det"
    msd.make(str(root), 20, 20)
    bl = str(root / msd.BLACKLIST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)     # no box dropped or clipped
        train = read_ilsvrc(str(root), "train")
        val = read_ilsvrc(str(root), "val", blacklist=bl)
        val_again = read_ilsvrc(str(root), "val", blacklist=bl)
        monkeypatch.setenv(DISABLE_ENV, "1")
        val_off = read_ilsvrc(str(root), "val", blacklist=bl)
    assert len(train) == 20 and len(val) == 20 and len(train.classes) == 200
    assert all(len(r.labels) >= 1 and (r.width, r.height) == (msd.WIDTH, msd.HEIGHT) for r in val.records)
    assert [r.devkit_index for r in val.records] == list(range(1, 21))
    black = [r for r in val.records if r.blacklist]
    assert len(black) == 3                               # images 1, 8, 15
    for r in black:
        assert set(r.blacklist) <= set(r.labels.tolist())
    assert _arrays(val) == _arrays(val_again) == _arrays(val_off)
    assert all(r.boxes.dtype == np.float32 for r in train.records)
    assert list((tmp_path / "cache" / "annotations").glob("*.npz"))
