"""train-detector's command line: bad config input (the training itself:
tests/detector/engine/test_train_detector.py)."""

from detector.cli.train_detector import main as train_main


def test_train_detector_unknown_key_and_missing_config(tmp_path, capsys):
    assert train_main(["--config", "configs/bccd.yaml", "--set", "train.epochz=3", "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key train.epochz" in capsys.readouterr().err
    assert train_main(["--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "no such file" in capsys.readouterr().err
