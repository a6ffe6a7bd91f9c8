"""Write the reference outputs of today's code (issue 22: "users see no change"):

- ``bundled_detections.json``: the two bundled models' detections (boxes, scores, labels, at the
  checkpoints' own test settings) on two BCCD test images of the repository
  (``examples/BloodImage_00007.jpg``; ``tests/data/proposals/BloodImage_00000.jpg``, test split
  too), R-CNN on the first only (7 s an image here);
- ``seeded_runs.json``: SHA-256 of every member's weights after a seeded 2-member training of
  each kind (``tests/detector/test_reference_outputs.py`` has the config), plus per-tensor sums
  for machines whose CPU kernels differ (float results may then differ in the last bits).

Run from the repository root: ``python tests/data/reference/make_reference.py`` (2 minutes).
The commit that wrote the files is named in them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, ROOT)

from tests.detector.test_reference_outputs import (  # noqa: E402
    IMAGES, MODELS, bundled_detections, machine, seeded_run_digests)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dets = {"commit": commit, "machine": machine(), "models": {}}
    for name, images in MODELS.items():
        dets["models"][name] = {img: bundled_detections(name, img) for img in images}
    with open(os.path.join(here, "bundled_detections.json"), "w") as f:
        json.dump(dets, f, indent=1)
    runs = {"commit": commit, "machine": machine(), "kinds": {k: seeded_run_digests(k) for k in ("rcnn", "fast")}}
    with open(os.path.join(here, "seeded_runs.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print("wrote", here, "at", commit, IMAGES)


if __name__ == "__main__":
    main()
