"""The bundled default model (trained on BCCD with configs/bccd.yaml; see the README)."""

import os

from backbone.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "bccd_default.pt")


def default_model_path() -> str:
    if not os.path.isfile(DEFAULT_MODEL):
        raise UserError(f"no bundled default model at {DEFAULT_MODEL}: pass --model CHECKPOINT")
    return DEFAULT_MODEL
