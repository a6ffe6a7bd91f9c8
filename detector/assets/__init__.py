"""The bundled models, named by detector kind (trained on BCCD trainval; see docs/results.md):

- ``bccd_fast.pt``: the shared-feature kind (configs/bccd_fast.yaml);
- ``bccd_onepass.pt``: the one pass, the fast kind proposing from its own trunk
  (configs/bccd_onepass.yaml): 2.5x faster than ``bccd_fast.pt`` with live selective search,
  1.7 points of test mAP lower, so not the default;
- ``bccd_rcnn.pt``: R-CNN, the paper's kind (configs/bccd.yaml); ``bccd_default.pt`` is a link
  to it, the name it had before the fast kind existed.

:func:`default_model_path` (what ``detect`` uses without ``--model``) is :data:`DEFAULT_MODEL`.
"""

import os

from backbone.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
RCNN_MODEL = os.path.join(HERE, "bccd_rcnn.pt")
FAST_MODEL = os.path.join(HERE, "bccd_fast.pt")
ONEPASS_MODEL = os.path.join(HERE, "bccd_onepass.pt")
#: the default: the fast kind when it is bundled (at least as accurate on BCCD test, ~10x
#: faster; docs/results.md, "The fast kind"), else R-CNN
DEFAULT_MODEL = FAST_MODEL if os.path.isfile(FAST_MODEL) else RCNN_MODEL


def default_model_path() -> str:
    if not os.path.isfile(DEFAULT_MODEL):
        raise UserError(f"no bundled default model at {DEFAULT_MODEL}: pass --model CHECKPOINT")
    return DEFAULT_MODEL
