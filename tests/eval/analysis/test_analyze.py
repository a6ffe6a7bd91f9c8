"""eval.analysis.analyze: the checks of its input."""


import pytest

from eval import analysis as A
from eval.analysis import analyze

from .common import O1, _d, _g


def test_bad_input():
    import eval

    assert A.PROTOCOLS == eval.PROTOCOLS
    gts = [_g([O1], [1])]
    dets = [_d([O1], [0.9], [1])]
    with pytest.raises(A.EvalError, match="protocol"):
        analyze("map", gts, dets, ["a"])
    with pytest.raises(A.EvalError, match="unique"):
        analyze("voc", gts, dets, ["a", "a"])
    with pytest.raises(A.EvalError, match="image paths"):
        analyze("voc", gts, dets, ["a"], image_paths=["x.jpg", "y.jpg"])
    with pytest.raises(A.EvalError, match="label 2 is not a class"):
        analyze("voc", gts, [_d([O1], [0.9], [2])], ["a"])
