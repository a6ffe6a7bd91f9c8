"""eval.analysis.tide: hand-worked TIDE cases (and mutants of the TIDE rules that these cases must
catch), the committed BCCD sample against recorded tidecv numbers, and (slow) the tidecv package."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from eval import analysis as A
from eval import evaluate
from eval.analysis import analyze
from eval.analysis import tide as tide_module

from .common import FIXTURE, O1, O2, O3, _d, _g, _same, load_fixture

NO_ERRORS = dict.fromkeys(A.TIDE_MAIN, 0)

# name: (gts, dets, classes, expected error counts (others 0), expected dAP (others 0), voc)
TIDE_CASES = {
    # a class-a box at IoU .3 on O1 ranked above O2's hit: fixing it makes a second true positive
    "Loc": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 3], O2], [0.9, 0.5], [1, 1])], ["a"],
            {"Loc": 1}, {"Loc": 0.75}),
    # IoU exactly 0.1 is still Loc (TIDE: bg <= IoU <= fg), just under it is background
    "Loc at 0.1": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 1], O2], [0.9, 0.5], [1, 1])], ["a"],
                   {"Loc": 1}, {"Loc": 0.75}),
    "Bkg under 0.1": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 0.9], O2], [0.9, 0.5], [1, 1])], ["a"],
                      {"Bkg": 1, "Miss": 1}, {"Bkg": 0.25, "Miss": 0.25}),
    # IoU exactly t with an object already matched: Loc (the bound is inclusive), not Dupe; its
    # fix removes it (the object is taken)
    "Loc at IoU t": ([_g([O1, O2], [1, 1])], [_d([O1, [0, 0, 10, 5], O2], [0.9, 0.8, 0.7], [1, 1, 1])], ["a"],
                     {"Loc": 1}, {"Loc": 1 - (0.5 + 0.5 * 2 / 3)}),
    # IoU exactly 0.1 with an object of another class: still background (IoU <= 0.1), not Both
    "Bkg at 0.1": ([_g([O1, O2], [2, 1])], [_d([[0, 0, 10, 1], O2], [0.9, 0.5], [1, 1])], ["a", "b"],
                   {"Bkg": 1, "Miss": 1}, {"Bkg": 0.25, "Miss": 0.25}),
    # a class-b box exactly on the class-a object: fixing moves it to class a
    "Cls": ([_g([O1, O2], [1, 1])], [_d([O1, O2], [0.9, 0.5], [2, 1])], ["a", "b"],
            {"Cls": 1}, {"Cls": 0.5}),
    # a second box on O2 after its true positive, before O1's
    "Dupe": ([_g([O1, O2], [1, 1])], [_d([O2, [100, 100, 110, 108], O1], [0.9, 0.8, 0.7], [1, 1, 1])], ["a"],
             {"Dupe": 1}, {"Dupe": 1 - (0.5 + 0.5 * 2 / 3)}),
    # far from every object, and in an image without objects
    "Bkg": ([_g([O1, O2], [1, 1]), _g([], [])], [_d([O2, O1], [0.5, 0.4], [1, 1]), _d([O3], [0.9], [1])], ["a"],
            {"Bkg": 1}, {"Bkg": 1 - 2 / 3}),
    # class b at IoU .3 on the class-a object: neither Loc (no b object there) nor Cls (IoU < t)
    "Both": ([_g([O1, O3], [1, 2])], [_d([O1, [0, 0, 10, 3], O3], [0.3, 0.9, 0.5], [1, 2, 2])], ["a", "b"],
             {"Both": 1}, {"Both": 0.25}),
    "Miss": ([_g([O1, O2], [1, 1])], [_d([O2], [0.5], [1])], ["a"], {"Miss": 1}, {"Miss": 0.5}),
    # Loc is tested before Cls: IoU .3 with its own class wins over IoU 1 with class b
    "Loc before Cls": ([_g([O1, [0, 0, 10, 3], O2], [2, 1, 1])], [_d([[0, 0, 10, 10], O2], [0.9, 0.5], [1, 1])],
                       ["a", "b"], {"Loc": 1, "Miss": 1}, {"Loc": 0.375, "Miss": 0.125}),
    # one object, a Cls error (0.9) and a Loc error (0.8) on it: only the higher-scoring one is
    # fixed (tidecv's BestGTMatch is shared by both types), so fixing Loc gains nothing
    "best of Cls and Loc": ([_g([O1], [1])], [_d([O1, [0, 0, 10, 3]], [0.9, 0.8], [2, 1])], ["a", "b"],
                            {"Cls": 1, "Loc": 1}, {"Cls": 1.0}),
    # two Loc errors on O1: one true positive, the other removed
    "two Loc on one object": ([_g([O1, O2], [1, 1])], [_d([[0, 0, 10, 3], [0, 0, 10, 4], O2], [0.9, 0.8, 0.5], [1, 1, 1])],
                              ["a"], {"Loc": 2}, {"Loc": 1 - 1 / 6}),
    # a box on a difficult object is ignored by voc, so it is no error at all
    "difficult": ([_g([O1, O2], [1, 1], [True, False])], [_d([O1, O2], [0.9, 0.5], [1, 1])], ["a"], {}, {}),
}


def _check_tide_case(run, name):
    gts, dets, classes, counts, dap = TIDE_CASES[name]
    r = run("voc", gts, dets, classes)["tide"]
    assert r["counts"] == {**NO_ERRORS, **counts}, (name, r["counts"])
    for k in A.TIDE_MAIN:
        assert r["dAP"][k] == pytest.approx(dap.get(k, 0.0), abs=1e-12), (name, k, r["dAP"])


@pytest.mark.parametrize("name", list(TIDE_CASES))
def test_tide_error_types(name):
    _check_tide_case(analyze, name)


def test_tide_special_errors_and_coco_ap():
    gts, dets, classes, _, _ = TIDE_CASES["Loc"]
    r = analyze("voc", gts, dets, classes)["tide"]
    # FalsePos: the FP removed -> O2 alone, recall .5 at precision 1; FalseNeg: O1 removed
    assert r["special"] == pytest.approx({"FalsePos": 0.25, "FalseNeg": 0.25})
    assert r["mAP"] == pytest.approx(0.25)
    # coco: the same errors, COCO's 101-point AP (rec .5 at prec .5: 51 points of .5 / 101)
    rc = analyze("coco", gts, dets, classes)["tide"]
    assert rc["counts"] == {**NO_ERRORS, "Loc": 1}
    assert rc["mAP"] == pytest.approx(51 * 0.5 / 101, abs=1e-9)
    assert rc["dAP"]["Loc"] == pytest.approx(1 - 51 * 0.5 / 101, abs=1e-9)
    assert rc["per_class"]["a"]["largest"] == "Loc"


MUTANTS = {   # a broken rule each: one of TIDE_CASES must fail on it
    "Loc's upper bound exclusive": ("(sc.ms <= loc_thr)", "(sc.ms < loc_thr)"),
    "Loc's lower bound exclusive": ("(sc.ms >= BACKGROUND_IOU) & (sc.ms <= loc_thr)", "(sc.ms > BACKGROUND_IOU) & (sc.ms <= loc_thr)"),
    "Cls tested before Loc": ("loc = fp & ~no_obj & (sc.ms >= BACKGROUND_IOU)", "loc = fp & ~no_obj & (sc.fg_other_gt < 0) & (sc.ms >= BACKGROUND_IOU)"),
    "every Cls/Loc error fixed": ("best[cand[np.unique(target[cand], return_index=True)[1]]] = True", "best[cand] = True"),
    "Cls fixed in its own class": ("lab[fix] = f.g_lab[target[fix]]", "pass"),
    "Dupe not tested": ("dupe = fp & ~no_obj & ~loc & ~cls & dupe_hit", "dupe = np.zeros(D, bool)"),
    "Bkg bound exclusive": ("(sc.max_any <= BACKGROUND_IOU)", "(sc.max_any < BACKGROUND_IOU)"),
    "Miss counts usable objects": ("missed = sc.g_count & ~used & ~usable", "missed = sc.g_count & ~used"),
    "fixed Miss keeps the object": ("npos = sc.npos - miss_c", "npos = sc.npos"),
    "ignored detections are errors": ("fp = state == 0\n    used", "fp = state <= 0\n    used"),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_tide_cases_catch_broken_rules(mutant, monkeypatch):
    old, new = MUTANTS[mutant]
    path = tide_module.__file__
    src = Path(path).read_text()
    assert src.count(old) == 1, f"mutant {mutant!r} no longer applies: update it"
    mod = types.ModuleType("eval.analysis._tide_mutant")
    mod.__package__ = "eval.analysis"
    mod.__file__ = path
    exec(compile(src.replace(old, new), path, "exec"), mod.__dict__)  # noqa: S102 (the mutant)
    monkeypatch.setattr(A, "tide_breakdown", mod.tide_breakdown)   # what analyze calls
    failed = []
    for name in TIDE_CASES:
        try:
            _check_tide_case(A.analyze, name)
        except AssertionError:
            failed.append(name)
    assert failed, f"no TIDE case notices the mutant {mutant!r}"


def test_bccd_sample_tide_matches_recorded_tidecv():
    """Our dAP on the committed sample against the numbers tidecv printed for the same two files
    (tidecv_reference.json, made by the slow test below): within 0.1 AP points."""
    gts, dets, names, _ = load_fixture()
    ref = json.loads((FIXTURE / "tidecv_reference.json").read_text())
    r = analyze("coco", gts, dets, names, iou=0.5)
    assert abs(100 * r["tide"]["mAP"] - ref["AP"]) < 0.1
    for k in A.TIDE_MAIN:
        assert abs(100 * r["tide"]["dAP"][k] - ref["main"][k]) < 0.1, (k, r["tide"]["dAP"], ref["main"])
    for k in A.TIDE_SPECIAL:
        assert abs(100 * r["tide"]["special"][k] - ref["special"][k]) < 0.1, (k, r["tide"]["special"], ref["special"])
    # and the stack's C50 is COCOeval's AP50
    e = evaluate("coco", gts, dets, len(names), iou=0.5)
    _same([r["coco_stack"]["per_class"][n]["AP"]["C50"] for n in names], e["AP"])


# ----------------------------------------------------------------------------------------------
# slow: the tidecv package itself, in its own virtual environment

TIDECV_VENV = Path(os.environ.get("TIDECV_VENV", "/tmp/googlenet-det-tidecv-venv"))
# tidecv 1.0.1 (2020) is pure Python; first try it with today's numpy / matplotlib, then with pins
# from its time
TIDECV_INSTALLS = [["tidecv==1.0.1"],
                   ["tidecv==1.0.1", "numpy<2", "matplotlib<3.9", "pandas<2.2", "opencv-python-headless<4.9"]]
TIDECV_SCRIPT = r"""
import contextlib, io, json, sys
from importlib.metadata import version
from tidecv import TIDE, datasets
gt = datasets.COCO(sys.argv[1])
res = datasets.COCOResult(sys.argv[2])
tide = TIDE()
with contextlib.redirect_stdout(io.StringIO()):
    tide.evaluate(gt, res, mode=TIDE.BOX)
    tide.summarize()
name = next(iter(tide.runs))
out = {"AP": tide.runs[name].ap, "main": tide.get_main_errors()[name], "special": tide.get_special_errors()[name],
       "versions": {p: version(p) for p in ("tidecv", "numpy", "matplotlib", "pycocotools", "opencv-python")}}
print(json.dumps(out))
"""


def _tidecv_python():
    py = TIDECV_VENV / "bin" / "python"

    def works():
        return py.exists() and subprocess.run([str(py), "-c", "import tidecv"], capture_output=True, check=False).returncode == 0

    if works():
        return py
    if not py.exists():
        r = subprocess.run([sys.executable, "-m", "venv", str(TIDECV_VENV)], capture_output=True, text=True, check=False)
        if r.returncode:
            pytest.skip(f"cannot create a virtual environment for tidecv: {r.stderr.strip()[-300:]}")
    errors = []
    for pkgs in TIDECV_INSTALLS:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], capture_output=True, text=True, timeout=1800, check=False)
        if r.returncode == 0 and works():
            return py
        errors.append(r.stderr.strip()[-300:])
    pytest.skip("tidecv does not install here: " + " | ".join(errors))


@pytest.mark.slow
def test_tide_dap_agrees_with_tidecv(capsys):
    py = _tidecv_python()
    r = subprocess.run([str(py), "-c", TIDECV_SCRIPT, str(FIXTURE / "bccd_test_gt.json"),
                        str(FIXTURE / "bccd_test_results.json")], capture_output=True, text=True, timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    gts, dets, names, _ = load_fixture()
    ours = analyze("coco", gts, dets, names, iou=0.5)["tide"]
    rows = [("AP", 100 * ours["mAP"], ref["AP"])]
    rows += [(k, 100 * ours["dAP"][k], ref["main"][k]) for k in A.TIDE_MAIN]
    rows += [(k, 100 * ours["special"][k], ref["special"][k]) for k in A.TIDE_SPECIAL]
    with capsys.disabled():
        print(f"\ntidecv {ref['versions']}")
        for k, a, b in rows:
            print(f"  {k:<9} ours {a:7.3f}  tidecv {b:7.3f}  (AP points)")
    for k, a, b in rows:
        assert abs(a - b) < 0.1, (k, a, b)
