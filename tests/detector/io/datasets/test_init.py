"""detector.io.datasets (the package: load_dataset): a config's data section checked before any
reader runs."""

import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import load_dataset


def test_missing_root_and_unknown_format(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_dataset(DataConfig(format="voc", root=str(tmp_path / "absent")), "train")
    with pytest.raises(UserError, match="data.root is not set"):
        load_dataset(DataConfig(format="voc", root=""), "train")
    with pytest.raises(UserError, match="data.format 'darknet'"):
        load_dataset(DataConfig(format="darknet", root=str(tmp_path)), "train")
