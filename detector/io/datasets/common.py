"""What every dataset reader shares, one job a module, all importable from here as before:
class lists (:mod:`.classes`), the one-warning box sanitizer (:mod:`.boxes`), split files and
splits named by folders (:mod:`.splits`), image sizes (:mod:`.sizes`), paths and folder walks
(:mod:`.walk`), the warning class (:mod:`.warning`)."""

from __future__ import annotations

from .boxes import BoxCleaner
from .classes import ClassList, configured_classes, read_class_file, warn_blank_names
from .sizes import (
    MAX_SIDE,
    SWAPS_SIDES,
    ImageSizeWarning,
    SizeChecker,
    image_header,
    image_size,
    orient_boxes,
    shown_size,
)
from .splits import (
    SPLIT_ALIASES,
    MissingSplit,
    drop_repeats,
    own_splits,
    read_split_file,
    split_of,
)
from .walk import check_unique_stems, resolve_path, walk_files
from .warning import DatasetWarning

__all__ = [
    "MAX_SIDE", "SPLIT_ALIASES", "SWAPS_SIDES", "BoxCleaner", "ClassList", "DatasetWarning", "ImageSizeWarning",
    "MissingSplit", "SizeChecker", "check_unique_stems", "configured_classes", "drop_repeats", "image_header",
    "image_size", "orient_boxes", "own_splits", "read_class_file", "read_split_file", "resolve_path", "shown_size",
    "split_of", "walk_files", "warn_blank_names",
]
