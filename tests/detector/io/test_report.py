"""The report pages (detector/io/report.py): ``eval-map --analyze DIR`` and ``detect --out DIR``
write ``DIR/index.html``; every string of user data is escaped, links are relative, and a real
browser (headless Chromium driven by Playwright, one launch for the module) decodes every
picture, shows the tables' rows and runs the class filter.

Without Chromium or playwright the browser tests skip, saying why; under ``CI=true`` they fail."""

import html
import json
import os
import re
import shutil
import urllib.parse
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import detector.cli.detect as detect_cli
import eval.analysis_plots as analysis_plots
from detector.cli.detect import MANIFEST
from detector.config import TestConfig as _TestConfig
from detector.io.report import PAGE_NAME, analysis_page, detect_page, write_report_page
from detector.model import Detections
from eval.analysis import analyze
from eval.figures import new_figure
from tests.detector.helpers import run_eval_map

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: without the background-networking flags Chromium's start-up calls are refused by a closed network
CHROMIUM_ARGS = ["--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ODD = '<b>&"x\'s</b>'          # a class name that is HTML
CLASSES = ["RBC", ODD, "WBC"]


# ----------------------------------------------------------------------------------------------
# the browser: one launch for the module


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test: {reason} (CI=true: the browser test must run; .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("needs playwright (pip install -e '.[test]')")
    exe = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    if not exe:
        _unavailable(f"needs Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    args = CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=args)
        except Error as e:
            _unavailable(f"Chromium {exe} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _open(browser, path):
    """The page at ``path`` loaded from file://, and the URLs it requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("file://" + urllib.parse.quote(str(path)))
    page.wait_for_load_state("load")
    return page, requests


def _images(page):
    return page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")


def _check_images(page, requests, n):
    imgs = _images(page)
    assert len(imgs) == n
    bad = [src for src, complete, w in imgs if not (complete and w > 0)]
    assert not bad, f"not decoded: {bad}"
    assert all(u.startswith("file://") for u in requests), requests   # nothing from the network


# ----------------------------------------------------------------------------------------------
# fixtures: a tiny COCO data set (images, ground truth, results) and a fake detector


def _scene(folder, n_img=3, seed=0):
    """``n_img`` small images with objects of CLASSES, COCO ground truth and results JSON."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(n_img):
        img = np.full((120, 160, 3), 230, np.uint8)
        path = folder / f"img #{i}&.png"           # a file name to percent-encode and escape
        for k in range(3):
            x, y = int(rng.integers(0, 110)), int(rng.integers(0, 70))
            w, h = int(rng.integers(20, 45)), int(rng.integers(20, 45))
            cv2.rectangle(img, (x, y), (x + w, y + h), (40 * k, 90, 200), -1)
            cid = 1 + (i + k) % 3
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cid, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            results.append({"image_id": i + 1, "category_id": cid, "score": float(rng.uniform(0.3, 1)),
                            "bbox": [x + float(rng.normal(0, 3)), y + float(rng.normal(0, 3)), w, h]})
            results.append({"image_id": i + 1, "category_id": 1 + (cid % 3), "score": float(rng.uniform(0, 0.6)),
                            "bbox": [float(rng.uniform(0, 120)), float(rng.uniform(0, 80)), 30, 30]})
        cv2.imwrite(str(path), img)
        images.append({"id": i + 1, "file_name": str(path), "width": 160, "height": 120})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": k + 1, "name": c, "supercategory": "cell"} for k, c in enumerate(CLASSES)]}
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "results.json").write_text(json.dumps(results))
    return folder / "gt.json", folder / "results.json"


def _tiny_figure(*args, **kwargs):
    """A stand-in for each of eval.analysis_plots' figures (the slow test draws the real ones):
    an 8 x 6 pixel Figure, written as a PNG by detector.io.figures like the real ones."""
    return new_figure((0.08, 0.06))


@pytest.fixture(scope="module")
def analysis_dir(tmp_path_factory):
    """``eval-map --analyze`` on the tiny scene: its folder (figures, galleries, index.html)."""
    folder = tmp_path_factory.mktemp("scene")
    gt, res = _scene(folder)
    out = folder / "analysis out"

    class Capsys:   # run_eval_map reads the captured output; here nothing is captured
        def readouterr(self):
            return "", ""

    with pytest.MonkeyPatch.context() as mp:
        for name in ("plot_hoiem", "plot_stack", "plot_tide", "plot_sensitivity", "plot_confusion"):
            mp.setattr(analysis_plots, name, _tiny_figure)
        mp.setattr(analysis_plots, "plot_gallery", _tiny_figure)
        rc, _, _ = run_eval_map(Capsys(), "--protocol", "voc", "--ground-truth", gt, "--detections", res,
                                "--analyze", out)
    assert rc == 0
    return out


class FakeDetector:
    """What detect's CLI uses of a Detector, with fixed detections (no network to run)."""

    classes = CLASSES

    def __init__(self):
        self.cfg = SimpleNamespace(test=_TestConfig())

    def configured(self, **kw):
        return self

    def __call__(self, image):
        h, w = image.shape[:2]
        if w < 100:   # the second image: nothing found
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64), CLASSES)
        boxes = np.array([[5, 5, 40, 40], [50, 10, 90, 60], [10, 60, 60, 110], [100, 20, 150, 70]], np.float32)
        return Detections(boxes, np.array([0.95, 0.9, 0.8, 0.7]), np.array([1, 2, 1, 3]), CLASSES)


@pytest.fixture
def detect_run(tmp_path, monkeypatch):
    """``detect IMAGES --out DIR`` with a fake detector: (DIR, the input images)."""
    monkeypatch.setattr(detect_cli.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: FakeDetector()))
    a, b = tmp_path / "a & <b>.jpg", tmp_path / "small #2.jpg"
    cv2.imwrite(str(a), np.full((120, 160, 3), 200, np.uint8))
    cv2.imwrite(str(b), np.full((40, 60, 3), 120, np.uint8))
    out = tmp_path / "out"
    assert detect_cli.main([str(a), str(b), "--out", str(out)]) == 0
    return out, [a, b]


# ----------------------------------------------------------------------------------------------
# the pages' text: escaped, relative, nothing from the network


def _no_raw_user_html(text):
    assert ODD not in text and html.escape(ODD, quote=True) in text
    assert not re.search(r"""(src|href)=["']?(https?:|//|/)""", text)     # relative links only
    assert "http://" not in text and "https://" not in text


def test_analysis_page_is_written_escaped_and_relative(analysis_dir):
    text = (analysis_dir / PAGE_NAME).read_text()
    _no_raw_user_html(text)
    srcs = re.findall(r'<img src="([^"]+)"', text)
    pngs = sorted(p.name for p in analysis_dir.glob("*.png"))
    assert sorted(urllib.parse.unquote(html.unescape(s)) for s in srcs) == pngs
    assert any(s.startswith("gallery_") for s in pngs)   # the scene's images exist: galleries too
    doc = json.loads((analysis_dir / "analysis.json").read_text())
    assert f"{doc['mAP']:.4f}" in text   # the numbers are inlined


@pytest.mark.parametrize("protocol", ["voc", "coco"])
def test_analysis_page_without_figures_says_so(tmp_path, protocol):
    result = json.loads(json.dumps(_tiny_result(protocol)))
    text = analysis_page(result, [], str(tmp_path))
    assert "<img" not in text and "no charts were written" in text and "no galleries" in text
    assert text.count("no ground truth") == 2   # RBC and WBC have none
    assert ("<th>AP (0.50:0.95)</th><th>AP@0.5</th>" in text) == (protocol == "coco")   # coco's AP and t's


def _tiny_result(protocol):
    g = {"boxes": np.array([[0, 0, 10, 10.0]]), "labels": np.array([2]), "difficult": np.zeros(1, bool)}
    d = {"boxes": np.array([[0, 0, 10, 10.0]]), "scores": np.array([0.9]), "labels": np.array([2])}
    return analyze(protocol, [g], [d], CLASSES)


def test_detect_page_is_written_escaped_and_recorded(detect_run):
    out, (a, b) = detect_run
    text = (out / PAGE_NAME).read_text()
    _no_raw_user_html(text)
    assert html.escape(a.name) in text and "a & <b>" not in text
    assert re.findall(r'<img class="pic" src="([^"]+)"', text) == ["a%20%26%20%3Cb%3E.png", "small%20%232.png"]
    assert text.count("<tr data-class=") == 4 and "no detections" in text
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert PAGE_NAME in manifest   # detect's own: replaced by the next run without --overwrite


def test_detect_refuses_a_page_it_did_not_write(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(detect_cli.Detector, "from_checkpoint", classmethod(lambda cls, *a, **k: FakeDetector()))
    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.full((120, 160, 3), 200, np.uint8))
    (tmp_path / "out").mkdir()
    mine = tmp_path / "out" / PAGE_NAME
    mine.write_text("the user's page")
    assert detect_cli.main([str(img), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index.html: exists and was not written by detect" in err[0]
    assert mine.read_text() == "the user's page" and not (tmp_path / "out" / "a.png").exists()
    assert detect_cli.main([str(img), "--out", str(tmp_path / "out"), "--overwrite"]) == 0
    assert "detect: 1 images, 4 detections" in mine.read_text()


def test_write_report_page_is_atomic(tmp_path):
    p = tmp_path / "sub" / PAGE_NAME
    assert write_report_page(str(p), "<p>é</p>") == str(p)
    assert p.read_text(encoding="utf-8") == "<p>é</p>" and os.listdir(p.parent) == [PAGE_NAME]


def test_detect_page_of_images_without_pictures(tmp_path):
    items = [{"image": "x/1.jpg", "detections": [{"box": [0, 0, 5, 5], "score": 0.5, "label": "WBC"}]}]
    text = detect_page(items, {}, str(tmp_path), CLASSES)
    assert "<img" not in text and 'data-class="WBC"' in text and "(1)" in text


# ----------------------------------------------------------------------------------------------
# in the browser


def test_analysis_page_in_the_browser(browser, analysis_dir):
    page, requests = _open(browser, analysis_dir / PAGE_NAME)
    _check_images(page, requests, len(list(analysis_dir.glob("*.png"))))
    assert page.locator("#ap-table tbody tr").count() == len(CLASSES)
    assert page.locator("#ap-table tbody tr td.name").first.inner_text() == "RBC"
    assert page.locator("#ap-table tbody tr").nth(1).locator("td").first.inner_text() == ODD   # escaped, shown as is
    assert page.locator("#confusion-table tbody tr").count() == len(CLASSES) + 1   # + background
    assert page.locator("#sensitivity-size tbody tr").count() == len(CLASSES)
    page.close()


def test_detect_page_in_the_browser_and_its_class_filter(browser, detect_run):
    out, _ = detect_run
    page, requests = _open(browser, out / PAGE_NAME)
    _check_images(page, requests, 2)
    rows = page.locator("tr[data-class]")
    assert rows.count() == 4
    visible = lambda: sum(rows.nth(i).is_visible() for i in range(rows.count()))   # noqa: E731
    assert visible() == 4
    boxes = page.locator("input.class-filter")
    assert [boxes.nth(i).get_attribute("value") for i in range(boxes.count())] == CLASSES   # unescaped by the parser
    boxes.nth(1).uncheck()                                   # the 1 row of ODD
    page.locator('input.class-filter[value="RBC"]').uncheck()   # the 2 rows of RBC
    assert visible() == 1
    assert all(page.locator("img.pic").nth(i).is_visible() for i in range(2))   # the pictures stay
    page.locator('input.class-filter[value="RBC"]').check()
    assert visible() == 3
    page.close()


@pytest.mark.slow
def test_analysis_page_of_the_bundled_model_on_bccd(browser, test_data, tmp_path, capsys):
    fix = test_data / "analysis"
    rc, _, err = run_eval_map(capsys, "--protocol", "voc", "--ground-truth", fix / "bccd_test_gt.json",
                              "--detections", fix / "bccd_test_results.json", "--analyze", tmp_path)
    assert rc == 0, err
    page, requests = _open(browser, tmp_path / PAGE_NAME)
    _check_images(page, requests, len(list(tmp_path.glob("*.png"))))
    assert page.locator("#ap-table tbody tr").count() == 3
    assert "0.8158" in page.locator("#ap-table tfoot").inner_text()
    page.close()
