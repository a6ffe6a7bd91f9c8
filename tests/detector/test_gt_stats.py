import os
import subprocess
import sys

import numpy as np

from detector.cli.gt_stats import main
from detector.datasets.records import ImageRecord
from detector.gt_stats import max_same_class_iou

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rec(boxes, labels):
    return ImageRecord(image_id="x", path="x.jpg", width=100, height=100, boxes=np.asarray(boxes, np.float32),
                       labels=np.asarray(labels, np.int64), difficult=np.zeros(len(labels), bool))


def _config(test_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n")
    return cfg


def test_max_same_class_iou():
    # two class-1 boxes at IoU 0.5 (10x10, shifted by a third), one class-2 box on top of them
    r = _rec([[0, 0, 10, 10], [0, 10 / 3, 10, 40 / 3], [0, 0, 10, 10]], [1, 1, 2])
    m = max_same_class_iou([r])
    assert np.allclose(sorted(m), [0.0, 0.5, 0.5], atol=1e-5)


def test_cli_on_mini(test_data, tmp_path, capsys):
    cfg = _config(test_data, tmp_path)
    assert main(["--config", str(cfg), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "boxes" in out and "> 0.3" in out
    assert main(["--config", str(cfg), "--split", "nope"]) == 2
    assert capsys.readouterr().err.startswith("gt-stats: error: ")


def test_library_module_reads_no_argv():
    import detector.gt_stats as lib

    assert not hasattr(lib, "main") and "argparse" not in open(lib.__file__).read()


def test_python_dash_m_delegates_to_the_cli(test_data, tmp_path):
    cfg = _config(test_data, tmp_path)
    run = subprocess.run([sys.executable, "-m", "detector.gt_stats", "--config", str(cfg), "--split", "train"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "train: " in run.stdout and "> 0.7" in run.stdout


def test_console_script_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "gt-stats"]
    assert ep.value == "detector.cli.gt_stats:main"
