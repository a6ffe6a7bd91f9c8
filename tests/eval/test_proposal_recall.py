import numpy as np
import pytest

from eval.errors import EvalError
from eval.proposal_recall import best_overlaps, box_iou, proposal_recall, recall_curve


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    assert np.allclose(box_iou(a, b), [[1, 1 / 3, 0, 0]])


def test_recall_abo_mabo():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 100, 100]])]
    labels = [np.array([1, 2]), np.array([1])]
    props = [np.array([[0, 0, 10, 10], [20, 20, 25, 30]]), np.array([[0, 0, 80, 100]])]
    r = proposal_recall(gts, labels, props, num_classes=3)
    assert r["num_gt"] == 3 and r["boxes_per_image"] == 1.5
    assert r["recall"]["0.5"] == 1.0 and r["recall"]["0.7"] == pytest.approx(2 / 3)
    assert r["recall_per_class"][0] == {"0.5": 1.0, "0.7": 1.0}
    assert r["recall_per_class"][1] == {"0.5": 1.0, "0.7": 0.0} and r["recall_per_class"][2] is None
    assert r["abo_per_class"][0] == pytest.approx(0.9) and r["abo_per_class"][1] == pytest.approx(0.5)
    assert r["mabo"] == pytest.approx(0.7) and r["abo"] == pytest.approx(2.3 / 3)
    first = proposal_recall(gts, labels, props, num_classes=3, max_boxes=1)
    assert first["recall"]["0.5"] == pytest.approx(2 / 3) and first["boxes_per_image"] == 1.0
    assert best_overlaps(gts[0], np.zeros((0, 4))).tolist() == [0, 0]


def test_recall_curve():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    props = [np.array([[50, 50, 60, 60], [0, 0, 10, 10], [40, 40, 45, 45], [20, 20, 30, 30]])]
    assert recall_curve(gts, props, [1, 2, 3, 4, 10]).tolist() == [0, 0.5, 0.5, 1, 1]


@pytest.mark.parametrize("args, msg", [
    (([np.zeros((1, 4))], [np.array([1])], []), "one entry per image"),
    (([np.zeros((1, 3))], [np.array([1])], [np.zeros((1, 4))]), r"\(N, 4\)"),
    (([np.zeros((1, 4))], [np.array([5])], [np.zeros((1, 4))]), "labels must be"),
    (([np.zeros((1, 4))], [np.array([1])], [np.full((1, 4), np.nan)]), "NaN"),
])
def test_bad_input(args, msg):
    with pytest.raises(EvalError, match=msg):
        proposal_recall(*args, num_classes=2)
