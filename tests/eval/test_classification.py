"""eval.classification: top-k accuracy / error, confusion matrix, bad input."""

import numpy as np
import pytest

from eval.classification import confusion_matrix, per_class_accuracy, topk_accuracy, topk_correct, topk_error
from eval.errors import EvalError


def test_topk_by_hand():
    s = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0],
                  [0.3, 0.1, 0.2, 0.25, 0.1, 0.05],
                  [0.0, 0.0, 0.0, 0.0, 0.1, 0.9]])
    y = np.array([1, 4, 0])  # ranks 0; 4 (0.1 ties with class 1, of lower index); 2 (ties with higher indices)
    assert topk_correct(s, y, 1).tolist() == [True, False, False]
    assert topk_correct(s, y, 3).tolist() == [True, False, True]
    assert topk_correct(s, y, 4).tolist() == [True, False, True]
    assert topk_correct(s, y, 5).tolist() == [True, True, True]
    acc = topk_accuracy(s, y)
    assert acc == {"top1": pytest.approx(1 / 3), "top5": 1.0, "n": 3}
    err = topk_error(s, y)
    assert err["top1_error"] == pytest.approx(2 / 3) and err["top5_error"] == 0.0


def test_fewer_classes_than_k_all_correct():
    s = np.array([[0.9, 0.1, 0.0]])
    assert topk_accuracy(s, [2], (1, 5)) == {"top1": 0.0, "top5": 1.0, "n": 1}


def test_matches_argsort_reference():
    rng = np.random.default_rng(0)
    s = rng.random((200, 12))
    y = rng.integers(0, 12, 200)
    order = np.argsort(-s, axis=1, kind="stable")
    for k in (1, 3, 5):
        ref = (order[:, :k] == y[:, None]).any(1)
        assert (topk_correct(s, y, k) == ref).all()


def test_confusion_and_per_class():
    s = np.eye(3)[[0, 1, 1, 2]]
    y = np.array([0, 1, 2, 2])
    cm = confusion_matrix(s, y)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    np.testing.assert_allclose(per_class_accuracy(s, y), [1.0, 1.0, 0.5])


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    assert topk_accuracy(torch.tensor([[0.2, 0.8]]), torch.tensor([1]))["top1"] == 1.0


@pytest.mark.parametrize("scores, labels, msg", [
    (np.zeros(3), [0], "scores must be"),
    (np.zeros((2, 3)), [0], "labels must be"),
    (np.zeros((1, 3)), [3], "0..2"),
    (np.zeros((1, 3)), [0.5], "integers"),
    (np.full((1, 3), np.nan), [0], "NaN"),
])
def test_bad_input(scores, labels, msg):
    with pytest.raises(EvalError, match=msg):
        topk_accuracy(scores, labels)
