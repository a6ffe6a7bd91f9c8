"""The run folder's saved formats (:mod:`backbone.formats`): ``run.json`` (:class:`RunRecord`)
and ``train_state.pt`` (:class:`TrainState`), read and written by :class:`.run.RunFolder`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from backbone.config import setting
from backbone.formats import SavedFormat, is_dict

RUN_FORMAT = 1
STATE_FORMAT = 2


@dataclass(kw_only=True)
class RunRecord(SavedFormat):
    """``run.json`` (the module docstring). Versions: 1, marked ``"format": 1`` before
    ``format_version`` (both written while the version is 1, for programs before it)."""

    VERSION: ClassVar[int] = RUN_FORMAT
    LEGACY: ClassVar[dict] = {"format": {1: 1}}

    format_version: int = setting(RUN_FORMAT, ge=1)
    command: str = setting()
    kind: str = setting()
    config: dict = setting(default_factory=dict, check=is_dict, expect="a dict (the settings a resume compares)")


@dataclass(kw_only=True)
class TrainState(SavedFormat):
    """``train_state.pt``: these fields, then the trainer's payload (tensors and plain data,
    kept as they are; :class:`.trainer.Trainer`'s ``members``, a record per member). Versions: 1,
    marked ``"format": 1`` before ``format_version`` (MultiBox's and the classifier's payloads
    of their own loops: read as one member's record, :func:`_members_layout`); 2, every
    trainer's payload ``members``."""

    VERSION: ClassVar[int] = STATE_FORMAT
    UPGRADES: ClassVar[dict] = {1: lambda d: _members_layout(d)}
    LEGACY: ClassVar[dict] = {"format": {1: 1}}

    format_version: int = setting(STATE_FORMAT, ge=1)
    command: str = setting()
    kind: str = setting()
    config: dict = setting(default_factory=dict, check=is_dict, expect="a dict (the settings a resume compares)")
    log_rows: int = setting(ge=0)                   # the metrics.jsonl rows the state covers
    epochs_done: int | None = setting(None, ge=0)


def _members_layout(d: dict) -> dict:
    """A version-1 state of MultiBox (``model``, ``optimizer``, ``scheduler``) or of the classifier
    (``train``: epoch, model, optimizer, scheduler, averaged, torch_rng; ``classes``, ``best``)
    as one member's record
    of :class:`.trainer.Trainer` (the detector's has its ``members`` already). The schedule is a
    function of the step now: a scheduler's state is not needed; the steps taken are not known (0)."""
    if "members" in d:
        return d
    if isinstance(d.get("train"), dict):  # the classifier's
        tr = d.pop("train")
        rec = {"model": tr.get("model"), "optimizer": tr.get("optimizer"), "epochs": int(tr.get("epoch", 0)),
               "averaged": tr.get("averaged"), "best": d.pop("best", None)}
    elif "model" in d and "optimizer" in d:  # MultiBox's
        rec = {"model": d.pop("model"), "optimizer": d.pop("optimizer"), "epochs": int(d.get("epochs_done") or 0),
               "best": None}
        d.pop("scheduler", None)
    else:
        return d
    d["members"] = [{**rec, "step": 0, "partial": None, "steps": 0}]
    return d


__all__ = ["RUN_FORMAT", "STATE_FORMAT", "RunRecord", "TrainState"]
