"""eval.analysis.hoiem: Hoiem's bins on hand-made scenes, the groups of similar classes."""


import pytest

from eval.analysis import COCO_SUPERCATEGORIES, analyze

from .common import NAMES, O1, _d, _g

# ----------------------------------------------------------------------------------------------
# Hoiem's bins, groups, the confusion matrix, F1


def _hoiem_scene(protocol):
    # objects: O_a1 (Loc target), O_b (similar class), O_c (other group), O_a2 (hit), O_a3 difficult
    gts = [_g([O1, [50, 0, 60, 10], [100, 0, 110, 10], [150, 0, 160, 10], [200, 0, 210, 10]],
              [1, 2, 3, 1, 1], [False, False, False, False, True])]
    dets = [_d([[200, 0, 210, 10],     # on the difficult object: no bin
                [150, 0, 160, 10],     # Cor
                [150, 0, 160, 9],      # duplicate of the hit: Loc
                [0, 0, 10, 2],         # IoU .2 with its own class: Loc (ilsvrc's threshold here: .25)
                [50, 0, 60, 10],       # on the b object (same group): Sim
                [100, 0, 110, 10],     # on the c object: Oth
                [300, 300, 320, 320]],  # BG
               [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5], [1] * 7)]
    return gts, dets


@pytest.mark.parametrize("protocol", ["voc", "coco", "ilsvrc"])
def test_hoiem_bins(protocol):
    gts, dets = _hoiem_scene(protocol)
    if protocol == "ilsvrc":   # no difficult flag there: blacklist nothing, the box is an object
        gts[0]["difficult"][:] = False
    groups = {"a": "x", "b": "x", "c": "y"}
    h = analyze(protocol, gts, dets, NAMES, class_groups=groups)["hoiem"]
    assert h["types"] == ["Cor", "Loc", "Sim", "Oth", "BG"]
    a = h["per_class"]["a"]
    npos = 3 if protocol == "ilsvrc" else 2
    assert a["npos"] == npos and a["N"][-1] == 8 * npos
    last = {t: a["counts"][t][-1] for t in h["types"]}
    assert last == ({"Cor": 2, "Loc": 2, "Sim": 1, "Oth": 1, "BG": 1} if protocol == "ilsvrc"
                    else {"Cor": 1, "Loc": 2, "Sim": 1, "Oth": 1, "BG": 1})
    k = h["factors"].index(1.0)   # the top npos detections
    top = {t: a["counts"][t][k] for t in h["types"]}
    assert sum(top.values()) == npos and top["Cor"] == (2 if protocol == "ilsvrc" else 1)
    assert sum(a["shares"][t][-1] for t in h["types"]) == pytest.approx(1.0)
    # no groups: no Sim bin, the similar-class box is Oth
    h = analyze(protocol, gts, dets, NAMES)["hoiem"]
    assert h["types"] == ["Cor", "Loc", "Oth", "BG"]
    assert h["per_class"]["a"]["counts"]["Oth"][-1] == 2


def test_groups_default_to_coco_supercategories():
    assert len(COCO_SUPERCATEGORIES) == 80 and len(set(COCO_SUPERCATEGORIES.values())) == 12
    gts = [_g([O1], [1])]
    dets = [_d([O1], [0.9], [1])]
    r = analyze("voc", gts, dets, ["cat", "dog", "car"])
    assert r["groups"] == {"cat": "animal", "dog": "animal", "car": "vehicle"}
    assert "Sim" in r["hoiem"]["types"] and "Sim" in r["coco_stack"]["types"]
    assert analyze("voc", gts, dets, ["cat", "blood cell"])["groups"] is None
    r = analyze("voc", gts, dets, ["cat", "blood cell"], class_groups={"cat": "animal"})
    assert r["groups"] == {"cat": "animal", "blood cell": "<blood cell>"}
