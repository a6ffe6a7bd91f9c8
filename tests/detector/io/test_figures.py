"""detector/io/figures.py: the one place figures are written (eval/ returns Figures): one Figure
atomically by extension, the precision-recall curves, and eval-map --analyze's report files."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backbone.errors import UserError
from detector.io.figures import (
    figure_format,
    write_figure,
    write_pr_curves,
    write_report,
)
from eval import analysis_plots
from eval.analysis import analyze, sensitivity, summary_lines
from eval.figures import new_figure
from tests.eval.analysis.common import load_fixture


def _tiny_figure(*args, **kwargs):
    return new_figure((0.08, 0.06))


def test_write_figure_by_extension_and_atomically(tmp_path):
    fig = new_figure((0.5, 0.4))
    fig.subplots().plot([0, 1], [0, 1])
    p = write_figure(str(tmp_path / "sub" / "a.png"), fig)
    assert p == str(tmp_path / "sub" / "a.png")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (50, 40)
    assert write_figure(str(tmp_path / "a.svg"), fig).endswith("a.svg")
    assert (tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")
    assert figure_format("x/noext") == "png" and figure_format("A.PDF") == "pdf"
    assert sorted(os.listdir(tmp_path)) == ["a.svg", "sub"]          # no temporary file left
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        write_figure(str(tmp_path / "dir.png"), fig, what="--plots")


def test_write_pr_curves(tmp_path):
    curves = [(np.array([0.5, 1.0]), np.array([1.0, 0.5])), (np.zeros(0), np.zeros(0))]
    p = write_pr_curves(curves, [0.75, float("nan")], ["a", "b"], str(tmp_path / "pr.png"), title="voc")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size == (700, 600)


def test_write_report(tmp_path, monkeypatch):
    gts, dets, names, _ = load_fixture()
    gts, dets = gts[:6], dets[:6]
    paths = []
    for i in range(6):   # small stand-in images: the crops only need pixels at the boxes
        p = tmp_path / "img" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((480, 640, 3), round(255 * (0.2 + 0.1 * i)), np.uint8)).save(p)
        paths.append(str(p))
    monkeypatch.setattr(sensitivity, "GALLERY_SIZE", 3)   # fewer crops: a faster test
    r = analyze("voc", gts, dets, names, image_paths=paths)
    assert all(len(g["false_positives"]) <= 3 for g in r["gallery"].values())
    out = tmp_path / "report"
    written = write_report(r, str(out), names, gts=gts, dets=dets)
    assert all(Path(p).is_file() for p in written)
    got = {Path(p).name for p in written}
    assert {"analysis.json", "summary.txt", "hoiem_all.png", "coco_stack_all.png", "tide_all.png",
            "sensitivity.png", "confusion.png"} <= got
    assert any(g.startswith("gallery_") for g in got) and {f"tide_{n}.png" for n in names} <= got
    j = json.loads((out / "analysis.json").read_text())
    assert set(j["tide"]["dAP"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
    assert all(0 <= v <= 1 for v in j["tide"]["dAP"].values())
    text = (out / "summary.txt").read_text().splitlines()
    assert text == summary_lines(r)
    for n in names:
        line = next(ln for ln in text if ln.startswith(n + " "))
        big = r["tide"]["per_class"][n]["largest"]
        assert (big or "none") in line
    # without image paths no gallery; every class shown with all_classes (figures stubbed: fast)
    for name in ("plot_hoiem", "plot_stack", "plot_tide", "plot_sensitivity", "plot_confusion"):
        monkeypatch.setattr(analysis_plots, name, _tiny_figure)
    monkeypatch.setattr(analysis_plots, "plot_gallery", lambda *a, **k: pytest.fail("gallery without image paths"))
    written = write_report(analyze("voc", gts, dets, names), str(tmp_path / "r2"), names, all_classes=True)
    assert sum(Path(p).name.startswith("tide_") for p in written) == 1 + len(names)
