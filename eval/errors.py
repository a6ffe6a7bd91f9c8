"""The error type of eval/ for bad input (it imports nothing of ours, so it has its own)."""


class EvalError(ValueError):
    """Bad input to a metric (NaN boxes, unknown class ...): the message says what and where."""
