"""backbone.formats: a saved format declared as a schema, one integer version, upgrades."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from backbone.config import setting
from backbone.errors import UserError
from backbone.formats import STATE_DICT, SavedFormat, is_state_dict, read_format, record


def _v1_to_v2(data: dict) -> dict:
    data["size"] = data.pop("side")  # version 2 renamed side -> size
    return data


@dataclass(kw_only=True)
class Thing(SavedFormat):
    VERSION: ClassVar[int] = 2
    UPGRADES: ClassVar[dict] = {1: _v1_to_v2}
    LEGACY: ClassVar[dict] = {"format": {"thing-v1": 1}}

    format_version: int = setting(2, ge=1)
    size: int = setting(ge=1, le=100)
    weights: dict = setting(check=is_state_dict, expect=STATE_DICT)
    note: str = setting("")


W = {"w": torch.zeros(2)}


def test_versions_upgrade_and_extra_keys_are_kept():
    obj, extra = read_format(Thing, {"format_version": 1, "side": 5, "weights": W, "payload": [1]}, source="t.pt")
    assert obj.size == 5 and obj.format_version == 1 and extra == {"payload": [1]}
    obj, _ = read_format(Thing, {"format": "thing-v1", "side": 7, "weights": W}, source="t.pt")  # the old marker
    assert obj.size == 7
    assert record(obj, {"x": 1}) == {"format_version": 1, "size": 7, "weights": W, "note": "", "x": 1}


@pytest.mark.parametrize("data, match", [
    ({"format_version": 3, "size": 1, "weights": W}, r"^t.pt: format version 3 is newer than this program's \(2\)"),
    ({"format_version": True, "size": 1, "weights": W}, r"^t.pt: field 'format_version' must be an integer >= 1, got true$"),
    ({"format": "thing-v9", "size": 1, "weights": W}, r"^t.pt: field 'format_version' must be an integer >= 1, got null$"),
    ({"format_version": 2, "weights": W}, r"^t.pt: incomplete, missing size$"),
    ({"format_version": 2, "size": 0, "weights": W}, r"^t.pt: field 'size' must be in \[1, 100\], got 0$"),
    ({"format_version": 2, "size": 1, "weights": {"w": 1}}, r"^t.pt: field 'weights' must be a state dict \(names -> tensors\), got \{'w': 1\}$"),
    ({"format_version": 2, "size": torch.zeros(3, 3), "weights": W}, r"^t.pt: field 'size' must be an integer, got a Tensor$"),
    ([1], r"^t.pt: not a mapping of fields, got \[1\]$"),
])
def test_bad_files_are_one_line_naming_the_field(data, match):
    with pytest.raises(UserError, match=match):
        read_format(Thing, data, source="t.pt")
