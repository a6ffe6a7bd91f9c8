"""detector.gt_stats: ground-truth statistics, a library module without argv (the CLI:
tests/detector/cli/test_gt_stats.py)."""

import numpy as np

from detector.gt_stats import max_same_class_iou
from detector.io.datasets.records import ImageRecord


def _rec(boxes, labels):
    return ImageRecord(image_id="x", path="x.jpg", width=100, height=100, boxes=np.asarray(boxes, np.float32),
                       labels=np.asarray(labels, np.int64), difficult=np.zeros(len(labels), bool))


def test_max_same_class_iou():
    # two class-1 boxes at IoU 0.5 (10x10, shifted by a third), one class-2 box on top of them
    r = _rec([[0, 0, 10, 10], [0, 10 / 3, 10, 40 / 3], [0, 0, 10, 10]], [1, 1, 2])
    m = max_same_class_iou([r])
    assert np.allclose(sorted(m), [0.0, 0.5, 0.5], atol=1e-5)


def test_library_module_reads_no_argv():
    import detector.gt_stats as lib

    assert not hasattr(lib, "main") and "argparse" not in open(lib.__file__).read()
