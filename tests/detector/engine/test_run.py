"""The run folder (detector.engine.run) on its own: the resume rule, refusals before any
write, the log trimmed to the state, the curves. No training here (see the other files)."""

import json
import os
from pathlib import Path

import pytest

import backbone.io
from backbone.errors import UserError
from detector.engine.run import RunFolder, config_compatible, config_difference, plot_curves, read_log

ROOT_SKIP = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
CFG = {"data": {"root": "/d", "classes": ["a", "b"]}, "train": {"epochs": 2, "lr": 0.01}, "test": {"nms_iou": 0.3}}


def _cfg(**changes):
    c = json.loads(json.dumps(CFG))
    for key, v in changes.items():
        section, name = key.split("__")
        c[section][name] = v
    return c


def snapshot(folder):
    """Every file under ``folder`` with its mtime and bytes (to prove that nothing was written)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(out, cfg=CFG, command="train-detector", kind="rcnn", **kw):
    return RunFolder(out, command, kind, cfg, metric="val_mAP", **kw)


def _started(out, rows=2, state_rows=None):
    """A run folder with ``rows`` log rows and a state covering ``state_rows`` of them."""
    rf = _run(out).check()
    rf.start()
    for e in range(1, rows + 1):
        rf.log({"epoch": e, "loss": 1.0 / e, "val_mAP": 0.1 * e})
        if state_rows is None or e <= state_rows:
            rf.save_state({"x": e}, epochs_done=e)
    return rf


def test_config_difference_allows_only_test_and_more_epochs():
    assert config_difference(CFG, CFG) is None
    assert config_difference(CFG, _cfg(test__nms_iou=0.5)) is None  # test.* is free
    assert config_difference(CFG, _cfg(train__epochs=5)) is None    # more epochs
    assert config_compatible(CFG, _cfg(train__epochs=2))
    assert "train.epochs 1 is fewer" in config_difference(CFG, _cfg(train__epochs=1))
    assert config_difference(CFG, _cfg(train__lr=0.5)) == "train.lr 0.01 -> 0.5"
    assert config_difference(CFG, _cfg(data__classes=["a"])).startswith("data.classes")
    assert not config_compatible(CFG, {**CFG, "model": {"arch": "x"}})  # a key only one side has
    assert config_difference(CFG, {k: v for k, v in CFG.items() if k != "test"}) is None


def test_run_folder_files_and_resume(tmp_path):
    out = tmp_path / "run"
    rf = _started(out)
    assert {p.name for p in out.iterdir()} == {"run.json", "config.yaml", "metrics.jsonl", "curves.png",
                                                "train_state.pt", ".lock"}  # .lock: the job lock of the live run
    run = json.loads((out / "run.json").read_text())
    assert run == {"format": 1, "format_version": 1, "command": "train-detector", "kind": "rcnn", "config": CFG}
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # found again: resumes with its state; the same config, or one differing in test.* / more epochs
    again = _run(out).check()
    assert again.found and again.load_state()["x"] == 2 and again.load_state()["log_rows"] == 2
    assert not again.config_changed
    assert _run(out, _cfg(test__nms_iou=0.5, train__epochs=4)).check().config_changed
    assert rf.model_path == str(out / "model.pt") and rf.best_path == str(out / "best.pt")


@pytest.mark.parametrize("case, match", [
    ("no-resume", "already holds a training run"),
    ("config", r"another config \(train.lr 0.01 -> 0.5\)"),
    ("fewer-epochs", "train.epochs 1 is fewer"),
    ("command", "holds a train-detector run of kind 'rcnn', not a train-classifier run"),
    ("kind", "holds a train-detector run of kind 'rcnn', not a train-detector run of kind 'fast'"),
])
def test_refusals_write_nothing(tmp_path, case, match):
    out = tmp_path / "run"
    _started(out)
    before = snapshot(out)
    rf = {"no-resume": lambda: _run(out, resume=False),
          "config": lambda: _run(out, _cfg(train__lr=0.5)),
          "fewer-epochs": lambda: _run(out, _cfg(train__epochs=1)),
          "command": lambda: _run(out, command="train-classifier", kind="classifier"),
          "kind": lambda: _run(out, kind="fast")}[case]()
    with pytest.raises(UserError, match=match):
        rf.check()
    with pytest.raises(UserError, match=match):
        rf.start()  # start() checks first when check() was not called
    assert snapshot(out) == before


@pytest.mark.parametrize("name", ["model.pt", "train_state.pt", "last.pt", "metrics.jsonl"])
def test_files_of_unknown_origin_are_refused(tmp_path, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"someone else's")
    before = snapshot(out)
    with pytest.raises(UserError, match=f"holds {name} but no run.json"):
        _run(out).check()
    assert snapshot(out) == before
    # other files (notes, an empty folder) are fine
    os.remove(out / name)
    (out / "notes.txt").write_text("mine")
    assert not _run(out).check().found


def test_a_damaged_run_record_or_state_is_refused(tmp_path):
    out = tmp_path / "run"
    _started(out)
    (out / "train_state.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="training state .*train_state.pt"):
        _run(out).check()
    (out / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable run record"):
        _run(out).check()


def test_out_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file, expected a folder"):
        _run(f).check()
    with pytest.raises(UserError, match="is a file, not a folder"):
        _run(f / "sub").check()


@ROOT_SKIP
def test_out_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="is not writable"):
            _run(ro / "run").check()
        with pytest.raises(UserError, match="is not writable"):
            _run(ro).check()
    finally:
        ro.chmod(0o700)


def test_out_a_read_only_folder_as_root_too(tmp_path, monkeypatch):
    """os.access says "not writable" for ro/ (how a read-only folder looks to a non-root user)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(backbone.io.os, "access", lambda p, mode: False if str(p).startswith(str(ro)) else real(p, mode))
    for out in (ro, ro / "run"):
        with pytest.raises(UserError, match="is not writable"):
            _run(out).check()
    assert list(ro.iterdir()) == []


def test_start_trims_the_log_to_the_rows_the_state_covers(tmp_path):
    out = tmp_path / "run"
    _started(out, rows=3, state_rows=2)  # killed after epoch 3's row, before its state
    assert [r["epoch"] for r in read_log(str(out / "metrics.jsonl"))] == [1, 2, 3]
    rf = _run(out).check()
    rf.start()
    assert [r["epoch"] for r in read_log(str(out / "metrics.jsonl"))] == [1, 2]
    rf.log({"epoch": 3, "loss": 0.3})
    assert [r["epoch"] for r in read_log(str(out / "metrics.jsonl"))] == [1, 2, 3]
    # a run killed before its first state: no row survives
    out2 = tmp_path / "run2"
    _started(out2, rows=1, state_rows=0)
    rf2 = _run(out2).check()
    rf2.start()
    assert read_log(str(out2 / "metrics.jsonl")) == [] and not (out2 / "curves.png").exists()


def test_log_is_strict_json_and_curves_are_drawn(tmp_path):
    out = tmp_path / "run"
    rf = _run(out, group="member").check()
    rf.start()
    rf.log({"member": 1, "epoch": 1, "loss": float("nan"), "val_mAP": None})
    rf.log({"member": 2, "epoch": 1, "loss": 0.5, "val_mAP": 0.25})
    text = (out / "metrics.jsonl").read_text()
    assert "NaN" not in text and json.loads(text.splitlines()[0])["loss"] is None
    png = tmp_path / "c.png"
    plot_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5, "val_top1": 0.9}], str(png), metric="val_top1")
    assert png.read_bytes()[:4] == b"\x89PNG" and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _release(rf):
    from detector.engine.run import release_run_lock

    release_run_lock(rf.out_dir)


def test_a_run_folder_from_before_format_version_resumes(tmp_path):
    """run.json and train_state.pt as written before format_version ({"format": 1}) read as version 1."""
    import torch

    out = tmp_path / "run"
    _release(_started(out))
    run = json.loads((out / "run.json").read_text())
    del run["format_version"]
    (out / "run.json").write_text(json.dumps(run))
    st = torch.load(out / "train_state.pt", weights_only=True)
    del st["format_version"]
    st["format"] = 1  # as written then (version 2 writes no marker)
    torch.save(st, out / "train_state.pt")
    again = _run(out).check()
    assert again.found and again.load_state()["x"] == 2 and again.load_state()["epochs_done"] == 2


@pytest.mark.parametrize("change, match", [
    ({"format_version": 2}, (r"run.json: format version 2 is newer than this program's \(1\); update googlenet-det; "
                             "choose another --out$")),
    ({"format_version": "1"}, r"run.json: field 'format_version' must be an integer >= 1, got '1'; choose another"),
    ({"format": 2, "format_version": None}, r"run.json: field 'format_version' must be an integer >= 1, got null"),
    ({"config": [1]}, r"run.json: field 'config' must be a dict \(the settings a resume compares\), got \[1\]"),
])
def test_a_damaged_run_record_names_the_field(tmp_path, change, match):
    out = tmp_path / "run"
    _release(_started(out))
    run = {**json.loads((out / "run.json").read_text()), **change}
    if run.get("format_version", 0) is None:
        del run["format_version"]
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError, match=match):
        _run(out).check()


@pytest.mark.parametrize("change, match", [
    ({"log_rows": "2"}, r"train_state.pt: field 'log_rows' must be an integer, got '2'; choose another --out$"),
    ({"log_rows": -1}, r"train_state.pt: field 'log_rows' must be >= 0, got -1"),
    ({"epochs_done": 1.5}, r"train_state.pt: field 'epochs_done' must be an integer or null, got 1.5"),
    ({"kind": "fast"}, r"train_state.pt: not the state of this train-detector run \(train-detector, kind 'fast'\)"),
    ({"format_version": 7}, r"train_state.pt: format version 7 is newer"),
])
def test_a_damaged_training_state_names_the_field(tmp_path, change, match):
    import torch

    out = tmp_path / "run"
    _release(_started(out))
    st = {**torch.load(out / "train_state.pt", weights_only=True), **change}
    torch.save(st, out / "train_state.pt")
    with pytest.raises(UserError, match=match):
        _run(out).check()
