"""What every console script shares: warnings and errors are one line naming the command."""

from detector.cli.gt_stats import main
from tests.conftest import ROOT


def test_warnings_are_one_line_naming_the_command(test_data, capsys):
    rc = main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--data-root", str(test_data / "voc-mini"), "--split", "train"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [ln for ln in lines if ln.startswith("gt-stats: warning: ")] and len(lines) == 1, err
    assert "BloodImage_00338.xml: degenerate box [504 337 504 337] dropped" in lines[0]


def test_a_closed_stdout_pipe_stops_quietly():
    """`prog ... | head`: the reader left; no traceback, the exit code of SIGPIPE (141)."""
    import subprocess
    import sys

    code = ("import sys\nfrom detector.cli.common import cli_main\n"
            "@cli_main\ndef main(argv=None):\n    for i in range(200000):\n        print('line', i)\n"
            "sys.exit(main())\n")
    p = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout == "line 0\n" and "Traceback" not in p.stderr and "Error" not in p.stderr


def test_cache_dir_moves_the_annotation_index_too(test_data, tmp_path, monkeypatch, capsys):
    """--cache-dir D: the annotation index is written in D (was: in the default cache, only the
    proposals moved), and the default is back when the command ends."""
    import os
    import shutil

    from backbone.io import cache_dir
    from detector.io.datasets.index import DISABLE_ENV, index_path

    default = tmp_path / "default"
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(default))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    voc = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", voc)
    mine = tmp_path / "mine"
    rc = main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--data-root", str(voc), "--split", "train",
               "--cache-dir", str(mine)])
    assert rc == 0, capsys.readouterr().err
    ann = str(voc / "Annotations")
    assert os.path.isfile(index_path(ann, str(mine)))
    assert not os.path.exists(index_path(ann, str(default)))
    assert cache_dir() == str(default)


def test_an_unwritable_cache_dir_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """--cache-dir that cannot be written was found after the data summary, at the first
    proposal saved; every command taking it refuses it first now (cli.common)."""
    import detector.cli.train_detector as td

    def no_work(*a, **k):
        raise AssertionError("the config was read before --cache-dir was checked")

    monkeypatch.setattr(td, "load_detector_config", no_work)
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "cache"
    assert td.main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--out", str(tmp_path / "run"),
                    "--cache-dir", str(bad)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"train-detector: error: --cache-dir {bad}: {tmp_path / 'file'} "
                                                     "is a file, not a folder"]


def test_a_read_only_cache_dir_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import os

    import pytest

    import detector.cli.train_detector as td

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    monkeypatch.setattr(td, "load_detector_config", lambda *a, **k: pytest.fail("the config was read first"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert td.main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--out", str(tmp_path / "run"),
                        "--cache-dir", str(ro)]) == 2
        assert capsys.readouterr().err.splitlines() == [f"train-detector: error: --cache-dir {ro}: folder {ro} is not writable"]
    finally:
        ro.chmod(0o700)


def _model_summary(stdout, limit=None):
    """model-summary in a subprocess, its output to ``stdout`` (a file-size limit ``limit``)."""
    import os
    import subprocess
    import sys

    pre = ""
    if limit is not None:  # SIGXFSZ ignored: the write fails with EFBIG instead of killing the process
        pre = (f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); ")
    code = pre + "import sys; from detector.cli.model_summary import main; sys.argv = ['model-summary']; main()"
    return subprocess.run([sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def test_a_full_stdout_is_one_line():
    """`model-summary > /dev/full` was a traceback (or Python's "Exception ignored" at exit,
    code 120); a full disk is one line now, exit code 2."""
    with open("/dev/full", "w") as full:
        p = _model_summary(full)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "model-summary: error: standard output: cannot write (No space left on device)"], p.stderr


def test_stdout_over_the_file_size_limit_is_one_line(tmp_path):
    with open(tmp_path / "out.txt", "w") as out:
        p = _model_summary(out, limit=40)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        "model-summary: error: standard output: cannot write (File too large)"], p.stderr


def test_no_console_script_imports_another():
    """What scripts share lives in detector/cli/common.py (or the library), never in another
    script's module (issue 22: classify imported eval_classifier, eval-proposals imported propose)."""
    import ast

    cli = ROOT / "detector" / "cli"
    bad = []
    for f in sorted(cli.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            bad += [f"{f.name}: {n}" for n in names
                    if n.startswith("detector.cli.") and n != "detector.cli.common"]
    assert not bad


def test_threads_below_one_is_one_line_in_every_script(tmp_path, capsys):
    """--threads is one flag of detector/cli/common.py: 0 is refused alike by every script."""
    from detector.cli import classify, eval_classifier, train_classifier

    for mod, argv in ((classify, ["x.jpg"]), (eval_classifier, ["--model", "m.pt"]),
                      (train_classifier, ["--out", str(tmp_path / "run")])):
        assert mod.main([*argv, "--threads", "0"]) == 2, mod.__name__
        assert "--threads 0: must be >= 1" in capsys.readouterr().err, mod.__name__
