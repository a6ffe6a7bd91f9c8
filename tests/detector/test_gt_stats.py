import numpy as np

from detector.datasets.records import ImageRecord
from detector.gt_stats import main, max_same_class_iou


def _rec(boxes, labels):
    return ImageRecord(image_id="x", path="x.jpg", width=100, height=100, boxes=np.asarray(boxes, np.float32),
                       labels=np.asarray(labels, np.int64), difficult=np.zeros(len(labels), bool))


def test_max_same_class_iou():
    # two class-1 boxes at IoU 0.5 (10x10, shifted by a third), one class-2 box on top of them
    r = _rec([[0, 0, 10, 10], [0, 10 / 3, 10, 40 / 3], [0, 0, 10, 10]], [1, 1, 2])
    m = max_same_class_iou([r])
    assert np.allclose(sorted(m), [0.0, 0.5, 0.5], atol=1e-5)


def test_cli_on_mini(test_data, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n")
    assert main(["--config", str(cfg), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "boxes" in out and "> 0.3" in out
    assert main(["--config", str(cfg), "--split", "nope"]) == 2
