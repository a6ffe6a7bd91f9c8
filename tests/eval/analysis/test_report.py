"""eval.analysis.report: the figures of a report come back as (file name, Figure) pairs and
nothing is written (detector.io.figures writes them: tests/detector/io/test_figures.py)."""

import os
import subprocess
import sys

from matplotlib.figure import Figure

from eval import analysis_plots
from eval.analysis import analyze, report_figures, safe_name
from eval.figures import new_figure

from .common import load_fixture


def test_report_figures_are_named_figures_and_write_nothing(tmp_path, monkeypatch):
    gts, dets, names, _ = load_fixture()
    r = analyze("voc", gts[:4], dets[:4], names)
    drawn = []

    def stub(*args, **kwargs):
        drawn.append(args)
        return new_figure((0.08, 0.06))

    for name in ("plot_hoiem", "plot_stack", "plot_tide", "plot_sensitivity", "plot_confusion", "plot_gallery"):
        monkeypatch.setattr(analysis_plots, name, stub)
    monkeypatch.chdir(tmp_path)
    got = list(report_figures(r, names, all_classes=True))
    assert all(isinstance(fig, Figure) for _, fig in got)
    subjects = ["all"] + [safe_name(n) for n in names]
    want = [f"{k}_{s}.png" for s in subjects for k in ("hoiem", "coco_stack", "tide")] + ["sensitivity.png",
                                                                                        "confusion.png"]
    assert [n for n, _ in got] == want                   # no image paths: no gallery
    assert os.listdir(tmp_path) == []


def test_figures_need_no_pyplot_and_no_backend(tmp_path):
    # the one set-up (eval/figures.py): bare Figures, so no backend is chosen and no display needed
    code = ("import sys, numpy as np\nfrom eval.plots import plot_pr_curves\n"
            "fig = plot_pr_curves([(np.array([1.0]), np.array([1.0]))], [1.0], ['a'])\n"
            "assert type(fig).__name__ == 'Figure', fig\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    env = {**os.environ, "MPLBACKEND": "tkagg", "DISPLAY": ""}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path) == []
