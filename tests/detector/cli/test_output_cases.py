"""The data-loss cases of issue 21, one by one, through the console scripts' main(argv) only
(so that each was seen failing on the code before the output rule): --json onto a user's file
or onto the run's own input, train-detector --half, the report folders and the default paths."""

import os
import stat

import pytest

from tests.detector.cli.output_env import Env, device_node, drain, is_node
from tests.detector.conftest import TRAIN_SETS


def _main(script):
    import importlib

    return importlib.import_module(f"detector.cli.{script.replace('-', '_')}").main


def _refused(capsys, script, argv, *needles):
    rc = _main(script)([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"{script}: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def _ok(capsys, script, argv):
    rc = _main(script)([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 0, err
    return err


# ------------------------------------------------------------------ --json onto the user's file


@pytest.mark.parametrize("script", ["propose", "eval-map", "classify", "eval-classifier", "model-summary"])
def test_json_onto_a_users_file_is_refused_without_overwrite(script, tmp_path, request, capsys):
    e = Env(tmp_path, request)
    argv = {"propose": lambda: [e.img],
            "eval-map": lambda: ["--ground-truth", e.gt / "Annotations", "--detections", e.gt / "d.json"],
            "classify": lambda: [e.img, "--model", e.fixture("trained") / "model.pt", "--device", "cpu"],
            "eval-classifier": lambda: ["--model", e.fixture("trained") / "model.pt", "--data-root",
                                        e.fixture("folder"), "--split", "test", "--crops", "1", "--every", "12"],
            "model-summary": lambda: ["--size", "96"]}[script]()
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    _refused(capsys, script, [*argv, "--json", mine], "exists and was not written by", "--overwrite")
    assert mine.read_text() == "my notes"
    _ok(capsys, script, [*argv, "--json", mine, "--overwrite"])
    assert mine.read_text() != "my notes"


# ------------------------------------------------------------------ outputs onto the run's inputs


def test_outputs_onto_the_runs_own_inputs_are_refused(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    dets, xml = e.gt / "d.json", e.gt / "Annotations" / "a.xml"
    keep = {p: p.read_bytes() for p in (dets, xml)}
    _refused(capsys, "eval-map", ["--ground-truth", e.gt / "Annotations", "--detections", dets, "--json", dets],
             "is the input")
    _refused(capsys, "eval-map", ["--ground-truth", xml, "--detections", dets, "--json", xml], "is the input")
    img = e.img
    before = open(img, "rb").read()
    _refused(capsys, "propose", [img, "--json", img], "is the input image")
    model = e.fixture("trained") / "model.pt"
    weights = model.read_bytes()
    _refused(capsys, "classify", [img, "--model", model, "--json", img, "--overwrite"], "is the input image")
    _refused(capsys, "classify", [img, "--model", model, "--json", model, "--overwrite"], "is the input")
    _refused(capsys, "eval-classifier", ["--model", model, "--json", model, "--overwrite"], "is the input")
    assert {p: p.read_bytes() for p in keep} == keep and open(img, "rb").read() == before
    assert model.read_bytes() == weights


# ------------------------------------------------------------------ train-detector --half


@pytest.fixture
def finished_run(tmp_path, request, capsys):
    """A finished (1-step) train-detector run on a copy of voc-mini: (Env, argv, run folder)."""
    e = Env(tmp_path, request)
    run = tmp_path / "run"
    argv = ["--config", e.train_config, "--out", run, "--device", "cpu", "--cache-dir", tmp_path / "cache"]
    _ok(capsys, "train-detector", argv)
    return e, argv, run


def test_half_never_replaces_the_runs_files_the_data_or_a_users_file(finished_run, capsys):
    e, argv, run = finished_run
    xml = e.voc / "Annotations" / "BloodImage_00000.xml"
    mine = e.tmp / "mine.pt"
    mine.write_bytes(b"my model")
    files = {p: p.read_bytes() for p in (run / "model.pt", run / "train_state.pt", xml, mine)}
    _refused(capsys, "train-detector", [*argv, "--half", run / "model.pt", "--overwrite"], "--half", "is the run file")
    _refused(capsys, "train-detector", [*argv, "--half", run / "train_state.pt", "--overwrite"], "--half")
    _refused(capsys, "train-detector", [*argv, "--half", xml, "--overwrite"], "--half", "training data")
    _refused(capsys, "train-detector", [*argv, "--half", mine], "--half", "exists and was not written by")
    assert {p: p.read_bytes() for p in files} == files
    # the run still resumes (its state intact), and --half elsewhere is written
    _ok(capsys, "train-detector", [*argv, "--half", e.tmp / "half.pt"])
    assert (e.tmp / "half.pt").stat().st_size > 0


# ------------------------------------------------------------------ report folders


def test_report_folders_refuse_the_users_files_and_the_data(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    files = ["--ground-truth", e.gt / "Annotations", "--detections", e.gt / "d.json"]
    plots, report = tmp_path / "plots", tmp_path / "report"
    plots.mkdir()
    report.mkdir()
    (plots / "pr_voc.png").write_bytes(b"my figure")
    (report / "analysis.json").write_text("my analysis")
    _refused(capsys, "eval-map", [*files, "--plots", plots], "--plots", "pr_voc.png: exists")
    _refused(capsys, "eval-map", [*files, "--analyze", report], "--analyze", "analysis.json: exists")
    assert (plots / "pr_voc.png").read_bytes() == b"my figure" and (report / "analysis.json").read_text() == "my analysis"
    # the data set's own folder is an input: nothing is written into it
    _refused(capsys, "eval-map", [*files, "--analyze", e.gt / "Annotations", "--overwrite"], "--analyze", "input")
    assert sorted(os.listdir(e.gt / "Annotations")) == ["a.xml"]


@pytest.mark.slow
def test_report_folders_of_our_own_are_replaced(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    files = ["--ground-truth", e.gt / "Annotations", "--detections", e.gt / "d.json"]
    for _ in range(2):  # a folder of its own: written, and replaced by the next run
        _ok(capsys, "eval-map", [*files, "--analyze", tmp_path / "new", "--plots", tmp_path / "new"])
    assert (tmp_path / "new" / "analysis.json").is_file() and (tmp_path / "new" / "pr_voc.png").is_file()


def test_split_outputs_beside_json_refuse_the_users_files(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    split = ["--split", "test", "--model", e.fixture("model"), "--data-root", e.voc, "--cache-dir", tmp_path / "cache",
             "--device", "cpu"]
    out = tmp_path / "out"
    out.mkdir()
    for name in ("detections_test.json", "r.config.yaml"):
        (out / name).write_text("mine")
        _refused(capsys, "eval-map", [*split, "--json", out / "r.json"], name, "exists and was not written by")
        assert (out / name).read_text() == "mine"
        (out / name).unlink()
    (out / "f.ids.json").write_text("mine")
    _refused(capsys, "eval-map", [*split, "--format", "coco", "--save-detections", out / "f.json"], "f.ids.json")
    assert (out / "f.ids.json").read_text() == "mine" and not (out / "f.json").exists()


# ------------------------------------------------------------------ default paths


def test_no_default_output_in_the_working_folder(tmp_path, request, capsys, monkeypatch):
    e = Env(tmp_path, request)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _ok(capsys, "eval-proposals", ["--config", e.proposals_config, "--split", "train", "--max-images", "1",
                                   "--workers", "1", "--cache-dir", tmp_path / "cache"])
    _ok(capsys, "eval-map", ["--split", "test", "--model", e.fixture("model"), "--data-root", e.voc,
                             "--cache-dir", tmp_path / "cache", "--device", "cpu"])
    assert os.listdir(work) == []


# ------------------------------------------------------------------ device nodes


@pytest.mark.parametrize("script", ["propose", "eval-map"])
def test_a_character_device_as_json_is_written_into(script, tmp_path, request, capsys):
    e = Env(tmp_path, request)
    argv = [e.img] if script == "propose" else ["--ground-truth", e.gt / "Annotations", "--detections", e.gt / "d.json"]
    node = device_node(tmp_path / "null")
    with drain(node):
        _ok(capsys, script, [*argv, "--json", node])
    assert is_node(node) and not stat.S_ISREG(os.lstat(node).st_mode)


def test_train_classifier_out_onto_a_users_file_is_refused(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    mine = tmp_path / "mine"
    mine.write_text("mine")
    _refused(capsys, "train-classifier", ["--data-root", e.fixture("folder"), "--out", mine,
                                          *[a for s in TRAIN_SETS for a in ("--set", s)]], "--out")
    assert mine.read_text() == "mine"


def test_nothing_is_written_beside_a_device(tmp_path, request, capsys):
    """--json /dev/stdout: no /dev/detections_test.json, no /dev/stdout.config.yaml, no .ids.json."""
    e = Env(tmp_path, request)
    dev = tmp_path / "dev"
    dev.mkdir()
    node = device_node(dev / "null")
    with drain(node):
        _ok(capsys, "eval-map", ["--split", "test", "--model", e.fixture("model"), "--data-root", e.voc,
                                 "--cache-dir", tmp_path / "cache", "--device", "cpu", "--json", node])
    assert os.listdir(dev) == ["null"] and is_node(node)
    with drain(node):
        _refused(capsys, "detect", [e.img, "--model", e.fixture("model"), "--format", "coco", "--json", node],
                 "ids mapping", "not a device")
    assert os.listdir(dev) == ["null"] and is_node(node)


def test_a_split_files_data_set_is_an_input(tmp_path, request, capsys):
    e = Env(tmp_path, request)
    split = e.voc / "ImageSets" / "Main" / "test.txt"
    (tmp_path / "d.json").write_text("[]")
    _refused(capsys, "eval-map", ["--ground-truth", split, "--detections", tmp_path / "d.json",
                                  "--analyze", e.voc / "Annotations", "--overwrite"], "--analyze", "input")
    _refused(capsys, "eval-map", ["--ground-truth", split, "--detections", tmp_path / "d.json", "--overwrite",
                                  "--json", e.voc / "JPEGImages" / "BloodImage_00001.jpg"], "--json", "input")
    assert sorted(os.listdir(e.voc / "Annotations")) == ["BloodImage_00000.xml", "BloodImage_00001.xml",
                                                         "BloodImage_00338.xml"]
