"""gt-stats: the console script on voc-mini, ``python -m``, its entry point (the library:
tests/detector/test_gt_stats.py)."""

import subprocess
import sys

from detector.cli.gt_stats import main
from tests.conftest import ROOT


def _config(test_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n")
    return cfg


def test_cli_on_mini(test_data, tmp_path, capsys):
    cfg = _config(test_data, tmp_path)
    assert main(["--config", str(cfg), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "boxes" in out and "> 0.3" in out
    assert main(["--config", str(cfg), "--split", "nope"]) == 2
    assert capsys.readouterr().err.startswith("gt-stats: error: ")


def test_python_dash_m_delegates_to_the_cli(test_data, tmp_path):
    cfg = _config(test_data, tmp_path)
    run = subprocess.run([sys.executable, "-m", "detector.cli.gt_stats", "--config", str(cfg), "--split", "train"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "train: " in run.stdout and "> 0.7" in run.stdout


def test_console_script_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "gt-stats"]
    assert ep.value == "detector.cli.gt_stats:main"


def test_data_prints_the_summary_alone(capsys):
    root = ROOT / "tests" / "data" / "layouts" / "yolo"
    assert main(["--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"data: yolo layout at {root} (data.yaml)\n")
    assert "images: 5 (train 3, val 1, test 1)" in out and "IoU" not in out
    assert main(["--data", str(root / "nope.yaml")]) == 2
    assert "gt-stats: error: dataset " in capsys.readouterr().err


def test_data_warns_of_an_empty_training_split(test_data, tmp_path, capsys, monkeypatch):
    """gt-stats --data on a dataset whose train.txt is empty: the summary says so (was silent)."""
    import shutil

    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    voc = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", voc)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("")
    assert main(["--data", str(voc)]) == 0
    out = capsys.readouterr().out
    assert "warning: split 'train' has no images (training on it trains nothing)" in out, out


def test_strict_refuses_a_split_file_listing_an_image_twice(test_data, tmp_path, capsys, monkeypatch):
    import shutil

    from tests.detector.helpers import one_error

    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    voc = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", voc)
    split = voc / "ImageSets" / "Main" / "train.txt"
    split.write_text("BloodImage_00000\nBloodImage_00001\nBloodImage_00000\n")
    assert main(["--data", str(voc)]) == 0
    err = capsys.readouterr().err
    assert err == (f"gt-stats: warning: split file {split}: 1 line(s) repeat an image listed before and are dropped; "
                   "e.g. line 3 'BloodImage_00000' is line 1 again\n")
    assert main(["--data", str(voc), "--strict"]) == 2
    one_error(capsys, "gt-stats", "line 3 'BloodImage_00000' is line 1 again", "--strict makes this an error")
