"""The one warning class of dataset defects (dropped or clipped boxes, repeated lines, sizes)."""

from __future__ import annotations

from backbone.errors import InputWarning


class DatasetWarning(InputWarning):
    """Boxes were dropped or clipped while reading a dataset (the message has the counts)."""
