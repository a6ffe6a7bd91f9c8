"""What every console script shares: warnings and errors are one line naming the command."""

import pytest

from detector.cli.gt_stats import main
from tests.conftest import ROOT


def test_warnings_are_one_line_naming_the_command(test_data, capsys):
    rc = main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--data-root", str(test_data / "voc-mini"), "--split", "train"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [ln for ln in lines if ln.startswith("gt-stats: warning: ")] and len(lines) == 1, err
    assert "BloodImage_00338.xml: degenerate box [504 337 504 337] dropped" in lines[0]


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


# One interpreter imports the scripts once and forks a child per case (three subprocesses took 11 s
# of this module); each child ends as the interpreter would: it flushes stdout, and a failed flush
# is Python's "Exception ignored" with exit code 120, which the cases must not show.
_STDOUT_DRIVER = """
import json, os, resource, signal, sys
from detector.cli.common import cli_main
from detector.cli.model_summary import main as model_summary

@cli_main
def lines(argv=None):
    for i in range(200000):
        print('line', i)

def child(case, out_fd, err_w, keep_open):
    for fd in keep_open:  # the parent's ends: a reader left open here would never let the pipe break
        os.close(fd)
    os.dup2(out_fd, 1)
    os.dup2(err_w, 2)
    if case == 'limit':  # SIGXFSZ ignored: the write fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
    sys.argv = ['model-summary']
    try:
        code = (lines if case == 'pipe' else model_summary)()
    except SystemExit as e:
        code = e.code
    try:
        sys.stdout.flush()
    except Exception as e:
        print('Exception ignored', repr(e), file=sys.stderr)
        code = 120
    sys.stderr.flush()
    os._exit(code)

result = {}
for case in ('pipe', 'full', 'limit'):
    err_r, err_w = os.pipe()
    out_r = None
    if case == 'pipe':  # `prog | head -1`: the reader takes one line and leaves
        out_r, out_fd = os.pipe()
    else:
        out_fd = os.open('/dev/full' if case == 'full' else sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    pid = os.fork()
    if pid == 0:
        child(case, out_fd, err_w, [fd for fd in (err_r, out_r) if fd is not None])
    os.close(out_fd)
    os.close(err_w)
    first = ''
    if case == 'pipe':
        with os.fdopen(out_r) as reader:
            first = reader.readline()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    with os.fdopen(err_r) as f:
        result[case] = [code, first, f.read()]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def stdout_cases(tmp_path_factory):
    """{case: [exit code, first stdout line, stderr]} for a console script whose stdout is a pipe
    closed by its reader ("pipe", the lines of a cli_main command), /dev/full ("full") or a file
    over a 40-byte ``ulimit -f`` ("limit"), the last two model-summary."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("stdout") / "out.txt"
    p = subprocess.run([sys.executable, "-c", _STDOUT_DRIVER, str(out)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def test_a_closed_stdout_pipe_stops_quietly(stdout_cases):
    """`prog ... | head`: the reader left; no traceback, the exit code of SIGPIPE (141)."""
    code, first, err = stdout_cases["pipe"]
    assert (code, first) == (141, "line 0\n") and "Traceback" not in err and "Exception" not in err, err


def test_a_full_stdout_is_one_line(stdout_cases):
    """`model-summary > /dev/full` was a traceback (or Python's "Exception ignored" at exit,
    code 120); a full disk is one line now, exit code 2."""
    code, _, err = stdout_cases["full"]
    assert code == 2 and err.splitlines() == [
        "model-summary: error: standard output: cannot write (No space left on device)"], err


def test_stdout_over_the_file_size_limit_is_one_line(stdout_cases):
    code, _, err = stdout_cases["limit"]
    assert code == 2 and err.splitlines() == [
        "model-summary: error: standard output: cannot write (File too large)"], err


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
