"""The analysis result made JSON-safe (numpy -> Python, nan and infinity -> None)."""

from __future__ import annotations

import math

import numpy as np


def json_safe(x):
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        if x and all(type(v) is float or type(v) is int for v in x):   # the long lists: no recursion
            return [v if (type(v) is int or math.isfinite(v)) else None for v in x]
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x
