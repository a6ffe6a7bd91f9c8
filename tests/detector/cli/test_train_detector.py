"""train-detector's command line: bad config input (the training itself:
tests/detector/engine/test_train_detector.py)."""

from detector.cli.train_detector import main as train_main


def test_train_detector_unknown_key_and_missing_config(tmp_path, capsys):
    assert train_main(["--config", "configs/bccd.yaml", "--set", "train.epochz=3", "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key train.epochz" in capsys.readouterr().err
    assert train_main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_data_resolves_layout_classes_and_default_config(capsys):
    import os

    import yaml

    from detector.cli.common import DEFAULT_CONFIG
    from detector.cli.train_detector import resolve_dataset
    from detector.config import load_detector_config
    from tests.conftest import ROOT

    root = ROOT / "tests" / "data" / "layouts" / "voc_xml"
    with open(DEFAULT_CONFIG) as f:
        assert "data" not in yaml.safe_load(f)                     # the default names no data
    assert os.path.realpath(ROOT / "configs" / "default.yaml") == os.path.realpath(DEFAULT_CONFIG)  # one file
    cfg = load_detector_config(DEFAULT_CONFIG, ["data.format=auto"], os.path.relpath(root))
    data = resolve_dataset(cfg.data, True)
    assert (data.format, data.root, data.classes) == ("voc_xml", str(root), ["Platelets", "RBC", "WBC"])
    err = capsys.readouterr().err
    assert err.startswith(f"train-detector: data: voc_xml layout at {root} (") and "boxes per class" in err


def test_data_and_data_root_together_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        train_main(["--data", str(tmp_path), "--data-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err
    assert train_main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
