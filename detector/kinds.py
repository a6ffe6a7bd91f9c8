"""The detector kinds, by the name in ``model.kind``: each is a sub-package with the same
pieces (``build_member``, a batcher, ``forward``, ``region_loss``, ``score_regions``)."""

from __future__ import annotations

from types import ModuleType

from . import fast, rcnn

KINDS: dict[str, ModuleType] = {"rcnn": rcnn, "fast": fast}


def kind_of(cfg) -> ModuleType:
    """The kind module of a :class:`detector.config.DetectorConfig`."""
    return KINDS[getattr(cfg.model, "kind", "rcnn")]
