"""detector.io.datasets.coco: the COCO layout of load_dataset (category ids, crowd boxes,
clipping, bad files), and COCO ground truth read exactly as pycocotools reads it."""

import contextlib
import io
import json

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import DataConfig
from detector.io.datasets import DatasetWarning, load_dataset
from tests.detector.helpers import coco_eval_files, run_eval_map


def _coco(tmp_path, anns, cats=None):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(exist_ok=True)
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50},
                       {"id": 9, "file_name": "b.jpg", "width": 100, "height": 50}],
            "categories": cats or [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
            "annotations": anns}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root


def test_coco_layout(tmp_path):
    root = _coco(tmp_path, [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [90, 40, 20, 20], "iscrowd": 1},   # clipped
        {"id": 3, "image_id": 9, "category_id": 3, "bbox": [1, 1, 0, 5], "iscrowd": 0},      # degenerate
    ])
    with pytest.warns(DatasetWarning, match=r"1 box\(es\) dropped .* 1 clipped"):
        ds = load_dataset(DataConfig(format="coco", root=str(root)), "val")
    assert ds.classes == ["car", "dog"] and ds.class_ids == [3, 18]   # category ids ascending
    assert [r.image_id for r in ds.records] == ["7", "9"]
    r = ds[0]
    np.testing.assert_array_equal(r.boxes, [[10, 5, 30, 15], [90, 40, 100, 50]])
    assert r.labels.tolist() == [2, 1] and r.difficult.tolist() == [False, True]
    assert r.path == str(root / "val" / "a.jpg") and len(ds[1].boxes) == 0
    with pytest.warns(DatasetWarning):
        ds2 = load_dataset(DataConfig(format="coco", root=str(root), classes=["dog", "car"]), "val")
    assert ds2.class_ids == [18, 3] and ds2[0].labels.tolist() == [1, 2]


def test_coco_errors(tmp_path):
    root = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(UserError, match="unknown category id 5"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    root = _coco(tmp_path, [{"id": 1, "image_id": 8, "category_id": 3, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(UserError, match="image id 8, which is not in 'images'"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    root = _coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, float("nan"), 2]}])
    with pytest.raises(UserError, match="not 4 finite numbers"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    with pytest.raises(UserError, match="class 'cat' of the config is not a category"):
        load_dataset(DataConfig(format="coco", root=str(root), classes=["cat"]), "val")
    (root / "annotations" / "instances_val.json").write_text('{"images": [\n{"id": 1},\n]}')
    with pytest.raises(UserError, match=r"instances_val\.json line 3: malformed JSON"):
        load_dataset(DataConfig(format="coco", root=str(root)), "val")
    with pytest.raises(UserError, match="COCO annotations .*instances_test.json: no such file"):
        load_dataset(DataConfig(format="coco", root=str(root)), "test")


def test_coco_protocol_equals_pycocotools_on_coco_files(tmp_path, capsys):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_file, res_file = coco_eval_files(tmp_path)
    rc, out, err = run_eval_map(capsys, "--protocol", "coco", "--ground-truth", gt_file, "--detections", res_file,
                        "--json", tmp_path / "r.json")
    assert rc == 0, err
    ours = json.loads((tmp_path / "r.json").read_text())["stats"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        E = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        E.evaluate(); E.accumulate(); E.summarize()
    names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
             "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
    # the small/medium/large ranges use the file's segment areas, not w*h: they must match too
    np.testing.assert_allclose([ours[n] for n in names], E.stats, atol=1e-6)
    assert len({round(v, 6) for v in E.stats[3:6]}) > 1
