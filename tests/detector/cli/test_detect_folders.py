"""detect over folders: a bad image is left out and named in one line while the others' results
are written (exit 1; --strict: the error, exit 2, nothing written); the folders' structure is
kept in --out, so no two inputs share a picture, and the JSON maps each image to its picture."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from detector.cli.detect import MANIFEST
from detector.cli.detect import main as detect_main
from detector.cli.detect import picture_names
from detector.io.datasets.records import Dataset, ImageRecord
from detector.io.detections import read_detections
from tests.detector.helpers import tiny_config, untrained_detector

CELLS = ("BloodImage_00007_0_WBC.png", "BloodImage_00007_1_RBC.png", "BloodImage_00011_16_Platelets.png")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, test_data):
    cfg = tiny_config(test_data / "voc-mini", **{"data.format": "voc", "proposals.max_boxes": 20,
                                                  "proposals.working_width": 120})
    return untrained_detector(tmp_path_factory.mktemp("m") / "m.pt", cfg)


@pytest.fixture
def cells(test_data):
    return [test_data / "images" / "bccd-cells" / n for n in CELLS]


def _detect(capsys, model, *argv):
    rc = detect_main([str(a) for a in argv] + ["--model", model, "--score-thr", "0", "--max-per-image", "3"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out


def _files(folder):
    """The pictures in ``folder`` (not the manifest, nor the page of them: tests/detector/io/test_report.py)."""
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs
                  if f not in (MANIFEST, ".googlenet-det-manifest.json", "index.html"))


def test_a_bad_image_is_left_out_named_once_and_the_others_written(untrained, cells, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(cells[0], src / "a.png")
    shutil.copy(cells[1], src / "c.png")
    (src / "b.jpg").write_bytes(b"not a picture at all")
    (src / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG signature and nothing else
    rc, out = _detect(capsys, untrained, src, "--out", tmp_path / "o", "--json", tmp_path / "d.json")
    assert rc == 1  # partial: the results of the good images, the bad ones named
    items = json.loads((tmp_path / "d.json").read_text())
    assert [i["image"] for i in items] == [str(src / "a.png"), str(src / "c.png")]
    assert [i["picture"] for i in items] == ["a.png", "c.png"]
    assert _files(tmp_path / "o") == ["a.png", "c.png"]
    warning = [line for line in out.err.splitlines() if "could not be read" in line]
    assert len(warning) == 1
    assert warning[0].startswith(f"detect: warning: 2 image(s) could not be read and were left out: {src / 'b.jpg'} (")
    assert f", {src / 'd.png'} (" in warning[0] and "image " + str(src) not in warning[0]


def test_strict_makes_a_bad_image_the_error_before_any_output(untrained, cells, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(cells[0], src / "a.png")
    (src / "b.jpg").write_bytes(b"not a picture at all")
    rc, out = _detect(capsys, untrained, src, "--out", tmp_path / "o", "--json", tmp_path / "d.json", "--strict")
    assert rc == 2
    assert out.err.strip().splitlines() == [f"detect: error: image {src / 'b.jpg'}: not an image file "
                                            "(unknown or unsupported format)"]
    assert out.out == "" and not (tmp_path / "o").exists() and not (tmp_path / "d.json").exists()


def test_no_readable_image_is_the_error(untrained, tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"junk")
    (tmp_path / "y.jpg").write_bytes(b"")
    rc, out = _detect(capsys, untrained, tmp_path, "--json", tmp_path / "d.json")
    assert rc == 2 and not (tmp_path / "d.json").exists()
    err = out.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"detect: error: none of the 2 image(s) could be read: {tmp_path / 'x.jpg'} (")


def test_same_names_in_two_folders_get_two_pictures_and_the_mapping(untrained, cells, tmp_path, capsys):
    src = tmp_path / "in"
    for sub, cell in (("c1", cells[0]), ("c2", cells[1])):
        (src / sub).mkdir(parents=True)
        shutil.copy(cell, src / sub / "same.png")
    shutil.copy(cells[2], src / "c1" / "same_2.png")
    out_dir, js = tmp_path / "o", tmp_path / "d.json"
    rc, _ = _detect(capsys, untrained, src, "--out", out_dir, "--json", js)
    assert rc == 0
    assert _files(out_dir) == ["c1/same.png", "c1/same_2.png", "c2/same.png"]
    items = json.loads(js.read_text())
    mapping = {os.path.relpath(i["image"], src): i["picture"] for i in items}
    assert mapping == {"c1/same.png": "c1/same.png", "c1/same_2.png": "c1/same_2.png", "c2/same.png": "c2/same.png"}
    for i in items:  # each picture is its own image's
        assert Image.open(out_dir / i["picture"]).size == Image.open(i["image"]).size
    # the detections JSON with its "picture" keys reads back (eval-map's reader)
    gt = Dataset(classes=["Platelets", "RBC", "WBC"], records=[
        ImageRecord(image_id=os.path.splitext(i["picture"])[0], path=i["image"], width=0, height=0,
                    boxes=np.zeros((0, 4)), labels=[], difficult=[]) for i in items])
    back = read_detections(str(js), gt)
    assert [len(d["boxes"]) for d in back] == [len(i["detections"]) for i in items]


def test_files_of_one_name_from_two_folders_get_unique_pictures(untrained, cells, tmp_path, capsys):
    for sub, cell in (("a", cells[0]), ("b", cells[1]), ("c", cells[2])):
        (tmp_path / sub).mkdir()
    shutil.copy(cells[0], tmp_path / "a" / "same.png")
    shutil.copy(cells[1], tmp_path / "b" / "same.png")
    shutil.copy(cells[2], tmp_path / "c" / "same_2.png")  # its own name is kept: the duplicate goes on to _3
    out_dir, js = tmp_path / "o", tmp_path / "d.json"
    rc, _ = _detect(capsys, untrained, tmp_path / "a" / "same.png", tmp_path / "b" / "same.png",
                    tmp_path / "c" / "same_2.png", "--out", out_dir, "--json", js)
    assert rc == 0
    assert {os.path.relpath(i["image"], tmp_path): i["picture"] for i in json.loads(js.read_text())} == {
        "a/same.png": "same.png", "b/same.png": "same_3.png", "c/same_2.png": "same_2.png"}
    assert _files(out_dir) == ["same.png", "same_2.png", "same_3.png"]


def test_other_formats_hold_the_good_images_only(untrained, cells, tmp_path, capsys):
    src = tmp_path / "in"
    for sub in ("c1", "c2"):
        (src / sub).mkdir(parents=True)
    shutil.copy(cells[0], src / "c1" / "same.png")
    (src / "c2" / "same.png").write_bytes(b"junk")  # planned as c2/same.txt beside c1/same.txt; left out
    rc, out = _detect(capsys, untrained, src, "--json", tmp_path / "t", "--format", "txt")
    assert rc == 1 and "1 image(s) could not be read" in out.err
    assert _files(tmp_path / "t") == ["same.txt"]  # the one image left: its own stem names it
    rc, _ = _detect(capsys, untrained, src, "--json", tmp_path / "c.json", "--format", "coco")
    assert rc == 1
    ids = json.loads((tmp_path / "c.ids.json").read_text())["images"]
    assert ids == {"1": {"file": str(src / "c1" / "same.png"), "image_id": "c1/same"}}
    rc, _ = _detect(capsys, untrained, src, "--json", tmp_path / "d.json")
    assert rc == 1 and [set(i) for i in json.loads((tmp_path / "d.json").read_text())] == [{"image", "detections"}]


def test_picture_names_are_unique_and_deterministic(tmp_path):
    (tmp_path / "IN" / "sub").mkdir(parents=True)
    i = str(tmp_path / "IN")
    images = [f"{i}/sub/x.jpg", f"{i}/sub/x.png", f"{i}/sub/X.jpg", f"{i}/sub/x_2.jpg", f"{tmp_path}/x.jpg"]
    # x.png beside x.jpg, X.jpg (case-insensitive file systems), x_2.jpg keeps its own name
    assert picture_names([i, f"{tmp_path}/x.jpg"], images) == {
        images[0]: "sub/x", images[1]: "sub/x_3", images[2]: "sub/X_4", images[3]: "sub/x_2", images[4]: "x"}
    # a picture x.png in the way of the folder x.png/ of another one's picture: renamed
    (tmp_path / "x.png").mkdir()
    assert picture_names([f"{tmp_path}/x.jpg", str(tmp_path)], [f"{tmp_path}/x.jpg", f"{tmp_path}/x.png/y.jpg"]) == {
        f"{tmp_path}/x.jpg": "x_2", f"{tmp_path}/x.png/y.jpg": "x.png/y"}
