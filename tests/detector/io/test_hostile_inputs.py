"""Hostile input: every bad file gets one clear error line (a UserError in the library, exit 2
in the CLIs), never a traceback, a hang, or a lost or overwritten user file.

1. image bombs (a pixel limit read from the header, before decoding) and large images (scaled
   to the detector's working size, boxes mapped back);
2. detect never writes its inputs and replaces only files it wrote (its manifest);
3. detection and ground-truth files with huge numbers, deep nesting, wrong types, duplicates;
4. gt-stats on an empty split, read-only outputs of propose / eval-proposals checked first.
"""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from backbone.errors import UserError
from detector.cli import detect, eval_map, eval_proposals, gt_stats, propose
from detector.io import images
from detector.io.datasets import read_ground_truth
from detector.io.datasets.coco import coco_from_dict
from detector.io.datasets.records import Dataset, ImageRecord
from detector.io.detections import read_detections
from detector.io.images import load_image
from detector.model import WORKING_MAX_SIDE, Detector
from tests.detector.helpers import CLASSES, one_error, tiny_config, untrained_detector


# ---------------------------------------------------------------------------------------------
# helpers

def png_bomb(path, width=12000, height=12000):
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: a few KB on disk, 144 MP decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, test_data):
    """An untrained R-CNN detector checkpoint (32 px warps): cheap, enough to run detect."""
    cfg = tiny_config(test_data / "voc-mini")
    return untrained_detector(tmp_path_factory.mktemp("model") / "m.pt", cfg)


def noise_image(path, size=(48, 36), seed=0):
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def run(main, capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def small_gt(n=2):
    recs = [ImageRecord(image_id=str(i), path=f"/data/{i}.jpg", width=100, height=80,
                        boxes=np.array([[10, 10, 40, 40]], np.float32), labels=np.array([1]),
                        difficult=np.array([False])) for i in (1, 2)[:n]]
    return Dataset(classes=["cat", "dog"], records=recs)


# ---------------------------------------------------------------------------------------------
# 1. image bombs and large images

def test_pixel_bomb_is_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    monkeypatch.delenv(images.MAX_PIXELS_ENV, raising=False)

    def no_decoding(self, *a, **k):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UserError, match=r"bomb\.png: 12000x12000 pixels \(144\.0 megapixels\) is more than the "
                                        r"limit of 120 megapixels .*GOOGLENET_DET_MAX_PIXELS"):
        load_image(bomb)


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    p = noise_image(tmp_path / "a.png", (100, 80))
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "7999")
    with pytest.raises(UserError, match=r"a\.png: 100x80 pixels .* limit of 0\.007999 megapixels"):
        load_image(p)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "8000")
    assert load_image(p).shape == (80, 100, 3)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "0")   # none of ours
    assert load_image(p).shape == (80, 100, 3)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "lots")
    with pytest.raises(UserError, match="GOOGLENET_DET_MAX_PIXELS='lots': expected a whole number"):
        load_image(p)


def test_pillows_own_bomb_error_is_one_line(tmp_path, monkeypatch):
    p = noise_image(tmp_path / "a.png", (100, 80))
    monkeypatch.setenv(images.MAX_PIXELS_ENV, "0")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # Pillow refuses above 2 x this
    with pytest.raises(UserError, match=r"a\.png: too large to read safely"):
        load_image(p)


def test_detect_on_a_bomb_is_one_line(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(images.MAX_PIXELS_ENV, raising=False)
    bomb = png_bomb(tmp_path / "bomb.png")
    rc = detect.main([str(bomb), "--model", tiny_model])
    assert rc == 2
    one_error(capsys, "detect", "bomb.png: 12000x12000 pixels")


def test_dataset_image_too_large_for_pillow_without_size_in_its_xml(tmp_path, monkeypatch):
    (tmp_path / "a.xml").write_text("<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                    "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    noise_image(tmp_path / "a.png", (100, 80))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match=r"a\.png: too large to read safely"):
        read_ground_truth(str(tmp_path))


def test_large_image_is_scaled_to_the_working_size_and_boxes_mapped_back(tiny_model):
    det = Detector.from_checkpoint(tiny_model)
    seen = {}

    def score_regions(image, boxes, times=None):
        seen["shape"], seen["boxes"] = image.shape, boxes.clone()
        probs = torch.zeros((len(boxes), len(CLASSES) + 1))
        probs[:, 1] = 0.9
        return probs, None

    det.score_regions = score_regions
    image = np.zeros((1000, 4000, 3), np.uint8)
    props = np.array([[0, 0, 400, 100], [1000, 200, 3000, 800], [3600, 900, 4000, 1000]], np.float32)
    d = det(image, proposals=props)
    assert seen["shape"] == (500, WORKING_MAX_SIDE, 3)        # longer side 2000, aspect kept
    np.testing.assert_allclose(seen["boxes"].numpy(), props / 2)
    np.testing.assert_allclose(np.sort(d.boxes, axis=0), np.sort(props, axis=0), atol=1e-3)  # original pixels

    def propose(image, times=None):
        seen["proposed_on"] = image.shape
        return np.array([[10, 10, 200, 100]], np.float32)

    det.propose = propose
    d = det(np.zeros((3000, 2500, 3), np.uint8))
    assert seen["proposed_on"] == (2000, 1667, 3)
    np.testing.assert_allclose(d.boxes, [[10 * 2500 / 1667, 15, 200 * 2500 / 1667, 150]], rtol=1e-5)
    bccd = np.zeros((480, 640, 3), np.uint8)                   # BCCD's size: unchanged
    det(bccd, proposals=props[:1] / 10)
    assert seen["shape"] == (480, 640, 3)
    np.testing.assert_allclose(seen["boxes"].numpy(), props[:1] / 10)


# ---------------------------------------------------------------------------------------------
# 2. detect never loses a user's file

def test_detect_never_writes_an_input(tiny_model, tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    noise_image(d / "a.png")
    before = (d / "a.png").read_bytes()
    for extra in ([], ["--overwrite"]):
        rc, _, _ = run(detect.main, capsys, d, "--out", d, "--model", tiny_model, *extra)
        assert rc == 2
    rc = detect.main([str(d), "--out", str(d), "--model", tiny_model])
    one_error(capsys, "detect", "a.png: is the input image", "inputs are never written")
    assert (d / "a.png").read_bytes() == before and sorted(os.listdir(d)) == ["a.png"]
    rc = detect.main([str(d / "a.png"), "--model", tiny_model, "--json", str(d / "a.png"), "--overwrite"])
    assert rc == 2
    one_error(capsys, "detect", "a.png: is the input image")
    assert (d / "a.png").read_bytes() == before


def test_detect_folder_into_itself_twice_does_not_read_its_own_pictures(tiny_model, tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    noise_image(d / "a.jpg")
    for _ in range(2):
        rc, out, err = run(detect.main, capsys, d, "--out", d, "--model", tiny_model, "--json", tmp_path / "d.json",
                           "--score-thr", "0")
        assert rc == 0, err
        items = json.loads((tmp_path / "d.json").read_text())
        assert [os.path.basename(i["image"]) for i in items] == ["a.jpg"]   # not the a.png written beside it
    assert sorted(os.listdir(d)) == [".googlenet-det-manifest.json", "a.jpg", "a.png", "index.html"]


def test_detect_replaces_only_what_it_wrote(tiny_model, tmp_path, capsys):
    img = noise_image(tmp_path / "cells.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells.png").write_bytes(b"my own picture")
    argv = [img, "--out", out, "--json", out / "detections.json", "--model", tiny_model]
    assert run(detect.main, capsys, *argv)[0] == 2
    assert (out / "cells.png").read_bytes() == b"my own picture"
    rc = detect.main([str(a) for a in argv])
    one_error(capsys, "detect", "cells.png: exists and was not written by detect", "--overwrite")
    assert not (out / "detections.json").exists()
    # --overwrite replaces it; from then on it is detect's own, replaced by every run (make demo twice)
    assert run(detect.main, capsys, *argv, "--overwrite")[0] == 0
    assert (out / "cells.png").read_bytes()[:4] == b"\x89PNG"
    for _ in range(2):
        rc, _, err = run(detect.main, capsys, *argv)
        assert rc == 0, err
    manifest = json.loads((out / ".googlenet-det-manifest.json").read_text())
    assert sorted(manifest["files"]) == ["cells.png", "detections.json", "index.html"]
    # a file detect wrote but the user changed since is the user's now
    (out / "detections.json").write_text("[]\n")
    rc = detect.main([str(a) for a in argv])
    assert rc == 2
    one_error(capsys, "detect", "detections.json: exists and was not written by detect")
    assert (out / "detections.json").read_text() == "[]\n"


def test_detect_json_elsewhere_is_refused_when_it_is_the_users(tiny_model, tmp_path, capsys):
    img = noise_image(tmp_path / "a.png")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "d.json").write_text('{"mine": 1}')
    assert detect.main([str(img), "--model", tiny_model, "--json", str(tmp_path / "res" / "d.json")]) == 2
    one_error(capsys, "detect", "d.json: exists and was not written by detect")
    assert (tmp_path / "res" / "d.json").read_text() == '{"mine": 1}'
    assert detect.main([str(img), "--model", tiny_model, "--json", str(tmp_path / "res" / ".detect-manifest.json")]) == 2
    one_error(capsys, "detect", "detect's own record")


# ---------------------------------------------------------------------------------------------
# 3. detection and ground-truth files

def _dets(tmp_path, obj, name="d.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def test_score_of_401_digits(tmp_path):
    p = _dets(tmp_path, '[{"image": "1", "detections": [{"box": [1, 2, 30, 40], "score": ' + "9" * 401
              + ', "label": "cat"}]}]')
    with pytest.raises(UserError, match=r"entry #0 \('1'\) detection #0: score is not a number \(got 9999"):
        read_detections(p, small_gt())
    p = _dets(tmp_path, '[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": ' + "9" * 401 + "}]")
    with pytest.raises(UserError, match=r"result #0: score is not a number"):
        read_detections(p, small_gt())
    p = _dets(tmp_path, '[{"image": "1", "detections": [{"box": [1, 2, 30, 40], "score": ' + "9" * 5000
              + ', "label": "cat"}]}]')
    with pytest.raises(UserError, match=r"d\.json: malformed JSON \(Exceeds the limit"):
        read_detections(p, small_gt())


def test_deeply_nested_json(tmp_path, capsys):
    p = _dets(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match=r"d\.json: malformed JSON \(nested too deeply\)"):
        read_detections(p, small_gt())
    with pytest.raises(UserError, match=r"d\.json: malformed JSON \(nested too deeply\)"):
        read_ground_truth(p)
    rc, _, err = run(eval_map.main, capsys, "--ground-truth", p, "--detections", p)
    assert rc == 2 and err.count("\n") == 1 and "nested too deeply" in err


def _coco(**image):
    im = {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}
    im.update(image)
    return {"images": [im], "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]}


@pytest.mark.parametrize("width, match", [
    ("abc", r"image #0 \(id 1\): width 'abc' is not a whole number of pixels"),
    (float("inf"), r"image #0 \(id 1\): width inf is not a whole number"),   # 1e400 in the file
    (-3, r"width -3 is not a whole number"),
    (True, r"width True is not a whole number"),
    (10 ** 400, r"width 1000.* is not a whole number of pixels \(0\.\.2147483647\)"),
])
def test_coco_width_not_a_number(width, match):
    with pytest.raises(UserError, match=match):
        coco_from_dict(_coco(width=width), "gt.json", None)


def test_coco_width_1e400_in_a_file(tmp_path):
    p = _dets(tmp_path, json.dumps(_coco()).replace('"width": 100', '"width": 1e400'), "gt.json")
    with pytest.raises(UserError, match=r"gt\.json: image #0 \(id 1\): width inf is not a whole number"):
        read_ground_truth(p)


def test_coco_duplicate_ids():
    data = _coco()
    data["images"].append(dict(data["images"][0]))
    with pytest.raises(UserError, match=r"gt\.json: images #0 and #1 have the same id 1 \(its boxes would be counted twice\)"):
        coco_from_dict(data, "gt.json", None)
    data = _coco()
    data["categories"].append({"id": 1, "name": "dog"})
    with pytest.raises(UserError, match=r"gt\.json: categories #0 and #1 have the same id 1"):
        coco_from_dict(data, "gt.json", None)
    data = _coco()
    data["categories"].append({"id": 2, "name": "cat"})
    with pytest.raises(UserError, match=r"gt\.json: categories #0 and #1 have the same name 'cat'"):
        coco_from_dict(data, "gt.json", None)


def test_coco_ground_truth_bbox_string_and_types():
    data = _coco()
    data["annotations"][0]["bbox"] = "1234"
    with pytest.raises(UserError, match=r"annotation #0 \(id 5\): bbox is not 4 numbers \(got '1234'\)"):
        coco_from_dict(data, "gt.json", None)
    data["annotations"][0]["bbox"] = [1, 1, 10, 10]
    data["annotations"][0]["area"] = 10 ** 400
    with pytest.raises(UserError, match=r"annotation #0 \(id 5\): area .* is not a finite number"):
        coco_from_dict(data, "gt.json", None)
    for bad in ({"images": 5, "categories": []}, {"images": [], "categories": {"id": 1}}, {"images": [[1]], "categories": []}):
        with pytest.raises(UserError):
            coco_from_dict(bad, "gt.json", None)


def test_project_json_naming_one_image_twice(tmp_path):
    p = _dets(tmp_path, [{"image": "/data/1.jpg", "detections": []}, {"image": "2", "detections": []},
                         {"image": "1", "detections": [{"box": [1, 2, 3, 4], "score": 0.5, "label": "cat"}]}])
    with pytest.raises(UserError, match=r"d\.json: entries #0 \('/data/1\.jpg'\) and #2 \('1'\) are the same image '1'"):
        read_detections(p, small_gt())


def test_coco_results_list_an_image_many_times(tmp_path):
    p = _dets(tmp_path, [{"image_id": 1, "category_id": c, "bbox": [1, 2, 10, 10], "score": s}
                         for c, s in ((1, 0.9), (2, 0.5), (1, 0.25))])
    dets = read_detections(p, small_gt())
    assert dets[0]["scores"].tolist() == [0.9, 0.5, 0.25] and len(dets[1]["scores"]) == 0


@pytest.mark.parametrize("field, value, match", [
    ("bbox", "1234", r"result #1: bbox is not 4 numbers \(got '1234'\)"),
    ("bbox", ["1", 2, 3, 4], r"result #1: bbox is not 4 numbers"),
    ("score", "0.5", r"result #1: score is not a number \(got '0\.5'\)"),
    ("score", True, r"result #1: score is not a number \(got True\)"),
    ("category_id", True, r"result #1: category_id is not an integer"),
])
def test_coco_results_wrong_types(tmp_path, field, value, match):
    res = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": 0.5} for _ in range(2)]
    res[1][field] = value
    with pytest.raises(UserError, match=match):
        read_detections(_dets(tmp_path, res), small_gt())


@pytest.mark.parametrize("field, value, match", [
    ("score", "0.5", r"entry #0 \('1'\) detection #1: score is not a number \(got '0\.5'\)"),
    ("score", True, r"detection #1: score is not a number \(got True\)"),
    ("box", "1234", r"detection #1: box is not 4 numbers \(got '1234'\)"),
    ("box", [1, 2, "3", 4], r"detection #1: box is not 4 numbers"),
    ("label", True, r"detection #1: label is not a class name or number"),
])
def test_project_json_wrong_types(tmp_path, field, value, match):
    dets = [{"box": [1, 2, 30, 40], "score": 0.5, "label": "cat"} for _ in range(2)]
    dets[1][field] = value
    with pytest.raises(UserError, match=match):
        read_detections(_dets(tmp_path, [{"image": "1", "detections": dets}]), small_gt())


def test_devkit_lines_with_numbers_that_are_not_indices(tmp_path):
    for line in ("1e400 1 0.5 1 1 5 5", "1.5 1 0.5 1 1 5 5", "1 nan 0.5 1 1 5 5"):
        p = tmp_path / "dk.txt"
        p.write_text("1 1 0.5 1 1 5 5\n" + line + "\n")
        with pytest.raises(UserError, match=r"dk\.txt line 2: image index and class id must be whole numbers"):
            read_detections(str(p), small_gt())


def test_fifo_in_a_text_folder_is_not_opened(tmp_path):
    g = tmp_path / "gt"
    g.mkdir()
    (g / "1.txt").write_text("cat 1 1 5 5\n")
    os.mkfifo(g / "2.txt")     # opening it would block forever
    ds = read_ground_truth(str(g))
    assert [r.image_id for r in ds.records] == ["1"]
    with pytest.raises(UserError, match="not a regular file"):
        read_ground_truth(str(g / "2.txt"))


def test_devkit_mat_that_crashes_scipy_is_one_line(tmp_path, capsys):
    """One byte (the type of an array's data) makes scipy.io.loadmat segfault (or, as its memory
    happens to lie, raise ZeroDivisionError: undefined behaviour, seen in CI): read in a child,
    either way one line."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"gt_img_ids": np.array([[5.0, 9.0]])})
    b = bytearray(buf.getvalue())
    b[b.index(b"\x09\x00\x00\x00\x10\x00\x00\x00")] = 43       # miDOUBLE -> no such type
    (tmp_path / "gt.mat").write_bytes(bytes(b))
    with pytest.raises(UserError, match=r"gt\.mat: not a readable MATLAB file \((the MATLAB reader crashed on it: "
                                        r"SIGSEGV|integer division or modulo by zero)\)"):
        read_ground_truth(str(tmp_path / "gt.mat"))
    (tmp_path / "d.json").write_text("[]")
    rc, _, err = run(eval_map.main, capsys, "--ground-truth", tmp_path / "gt.mat", "--detections", tmp_path / "d.json")
    assert rc == 2 and err.count("\n") == 1 and "not a readable MATLAB file" in err


# ---------------------------------------------------------------------------------------------
# 4. gt-stats on an empty split, outputs checked before the work

def _voc_config(tmp_path, split_lines=""):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "empty.txt").write_text(split_lines)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: voc\n  root: {root}\n  classes: [cat]\n")
    return cfg


def test_gt_stats_on_an_empty_split(tmp_path, capsys):
    rc, out, err = run(gt_stats.main, capsys, "--config", _voc_config(tmp_path), "--split", "empty")
    assert rc == 2 and "nan" not in out
    assert err.strip().startswith("gt-stats: error: split 'empty' of ") and "empty (no images)" in err


def test_gt_stats_on_a_split_without_boxes(tmp_path, capsys, test_data):
    cfg = _voc_config(tmp_path, "a\n")
    root = tmp_path / "voc"
    (root / "Annotations" / "a.xml").write_text("<annotation><size><width>8</width><height>8</height></size></annotation>")
    (root / "JPEGImages").mkdir()
    noise_image(root / "JPEGImages" / "a.jpg", (8, 8))
    assert gt_stats.main(["--config", str(cfg), "--split", "empty"]) == 2
    one_error(capsys, "gt-stats", "no ground-truth boxes in its 1 image(s)")


@pytest.fixture
def read_only(monkeypatch):
    """Folders made read-only for os.access (the tests may run as root, for whom chmod is no barrier)."""
    folders = []
    real = os.access

    def access(path, mode, **kw):
        if mode & os.W_OK and any(os.path.abspath(path) == f for f in folders):
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    return lambda p: folders.append(os.path.abspath(p)) or p


def _never(*a, **k):
    raise AssertionError("the work started before the outputs were checked")


def test_propose_read_only_outputs_fail_before_the_work(tmp_path, capsys, monkeypatch, read_only, mini_config):
    ro = read_only(tmp_path / "ro")
    ro.mkdir()
    img = noise_image(tmp_path / "a.png")
    monkeypatch.setattr(propose, "propose", _never)
    monkeypatch.setattr(propose, "ensure_proposals", _never)
    assert propose.main([str(img), "--json", str(ro / "p.json")]) == 2
    one_error(capsys, "propose", "--json", "is not writable")
    assert propose.main(["--config", mini_config, "--split", "test", "--cache-dir", str(ro)]) == 2
    one_error(capsys, "propose", "--cache-dir", "is not writable")
    (tmp_path / "file").write_text("x")
    assert propose.main(["--config", mini_config, "--split", "test", "--cache-dir", str(tmp_path / "file")]) == 2
    one_error(capsys, "propose", "--cache-dir", "is a file, expected a folder")


def test_eval_proposals_read_only_plot_fails_before_the_work(tmp_path, capsys, monkeypatch, read_only, mini_config):
    ro = read_only(tmp_path / "ro")
    ro.mkdir()
    monkeypatch.setattr(eval_proposals, "ensure_proposals", _never)
    argv = ["--config", mini_config, "--split", "test", "--cache-dir", str(tmp_path / "cache")]
    assert eval_proposals.main(argv + ["--plot", str(ro / "curve.png")]) == 2
    one_error(capsys, "eval-proposals", "--plot", "is not writable")
    assert eval_proposals.main(argv + ["--plot", str(tmp_path / "curve.xyz")]) == 2
    one_error(capsys, "eval-proposals", "--plot", "unknown picture format")
    assert eval_proposals.main(argv + ["--json", str(ro / "r.json")]) == 2
    one_error(capsys, "eval-proposals", "--json", "is not writable")
