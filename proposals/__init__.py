"""Region proposals: selective search (with the paper's 2x superpixels), MultiBox, merging.

- :func:`selective_search` (``proposals.selective_search``): our engine of Uijlings et al.'s
  hierarchical grouping, or the ``selectivesearch`` package as a second backend;
- ``proposals.multibox``: the MultiBox network, k-means priors, matching loss, top-K inference;
- :func:`propose`: one image's proposals by a :class:`ProposalConfig` (ss | multibox | ss+multibox).

The on-disk cache over a dataset split lives in ``detector.proposal_runner`` (file formats and
datasets belong to ``detector/``).
"""

from .config import MultiBoxConfig, ProposalConfig
from .pipeline import METHODS, merge_boxes, propose
from .selective_search import PRESETS, selective_search

__all__ = ["MultiBoxConfig", "ProposalConfig", "METHODS", "PRESETS", "merge_boxes", "propose", "selective_search"]
