"""The job lock of a run folder (detector.engine.run): one job per folder, held by rank 0 for
the life of the process, tested with two processes. The other job is a small child process
holding ``RUN/.lock`` as a run does (an exclusive flock, its pid and start time in the file;
one slow test runs the real lock_run in the child): this process is refused, and a killed
child releases the folder."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from backbone.errors import UserError
from detector.cli.train_detector import main as train_main
from detector.engine.run import LOCK_FILE, RunFolder

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="flock is POSIX")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STARTED = "2026-01-02 03:04:05 UTC"

#: another job: holds the lock of the folder argv[1] as lock_run does, says "ready", sleeps
RAW_HOLDER = textwrap.dedent(f"""
    import fcntl, json, os, sys, time
    os.makedirs(sys.argv[1], exist_ok=True)
    fd = os.open(os.path.join(sys.argv[1], {LOCK_FILE!r}), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({{"pid": os.getpid(), "started": {STARTED!r}}}).encode())
    print("ready", flush=True)
    time.sleep(120)
""")
#: the real thing: the run folder opened as a training does (slow: imports torch)
REAL_HOLDER = textwrap.dedent("""
    import sys, time
    from detector.engine.run import RunFolder
    rf = RunFolder(sys.argv[1], "train-detector", "rcnn", {}).check()  # held while the run object lives
    print("ready", flush=True)
    time.sleep(120)
""")
#: exit 0 when the folder argv[1] is free (the lock taken and dropped), 1 when it is held
PROBE = textwrap.dedent(f"""
    import fcntl, os, sys
    fd = os.open(os.path.join(sys.argv[1], {LOCK_FILE!r}), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
""")


def _env():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RANK", None)
    return env


def _holder(out, code=RAW_HOLDER):
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(), cwd=REPO)
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        raise AssertionError(f"the holder did not start: {line!r} {child.stderr.read()}")
    return child


def _kill(child):
    child.send_signal(signal.SIGKILL)  # the kernel drops the flock of a killed process
    child.wait(timeout=30)
    child.stdout.close()
    child.stderr.close()


def _free(out) -> bool:
    return subprocess.run([sys.executable, "-c", PROBE, str(out)], env=_env(), timeout=60).returncode == 0


def _refused(out, pid, started=STARTED):
    with pytest.raises(UserError) as e:
        RunFolder(out, "train-detector", "rcnn", {}).check()
    assert str(e.value) == (f"{out}: another job is training in this folder (pid {pid}, started {started}); "
                            "wait for it or choose another --out")


def test_a_second_job_is_refused_and_a_killed_one_releases_the_folder(tmp_path):
    out = tmp_path / "run"
    child = _holder(out)
    try:
        _refused(out, child.pid)
        assert sorted(os.listdir(out)) == [LOCK_FILE]  # the refused job wrote nothing
    finally:
        _kill(child)
    assert _free(out)
    rf = RunFolder(out, "train-detector", "rcnn", {}).check()  # released: this job runs, and holds the folder
    rf.start()
    info = json.loads((out / LOCK_FILE).read_text())
    assert info["pid"] == os.getpid() and info["started"].endswith(" UTC")
    assert not _free(out)  # another process cannot take it now
    RunFolder(out, "train-detector", "rcnn", {}).check()  # this process again (a stage, a resume): no conflict
    assert not _free(out)
    del rf  # the end of the run (its last reference) releases the folder, and removes the lock file
    assert not (out / LOCK_FILE).exists() and (out / "run.json").exists()


def test_a_refused_or_failed_fresh_run_leaves_no_folder(tmp_path):
    out = tmp_path / "new"
    rf = RunFolder(out, "train-detector", "rcnn", {}).check()
    assert sorted(os.listdir(out)) == [LOCK_FILE]  # held before any work
    del rf  # e.g. the data failed to load after check(): nothing is left behind
    assert not out.exists()


def test_other_ranks_of_the_job_do_not_lock(tmp_path, monkeypatch):
    out = tmp_path / "run"
    child = _holder(out)
    try:
        monkeypatch.setenv("RANK", "1")  # torchrun's rank 1 shares rank 0's folder (multibox_run checks on every rank)
        RunFolder(out, "train-detector", "rcnn", {}).check()
        monkeypatch.setenv("RANK", "0")
        _refused(out, child.pid)
    finally:
        _kill(child)


def test_train_detector_refuses_a_folder_another_job_trains_in(test_data, tmp_path, capsys):
    out = tmp_path / "run"
    child = _holder(out)
    try:
        rc = train_main(["--data", str(test_data / "voc-mini"), "--out", str(out), "--set", "train.epochs=1",
                         "--set", "train.max_steps=1", "--set", "proposals.max_boxes=20", "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
    finally:
        _kill(child)
    assert rc == 2
    assert err[-1] == (f"train-detector: error: {out}: another job is training in this folder (pid {child.pid}, "
                       f"started {STARTED}); wait for it or choose another --out")
    assert sorted(os.listdir(out)) == [LOCK_FILE]


@pytest.mark.slow
def test_the_lock_of_a_real_run_folder_in_another_process(tmp_path):
    out = tmp_path / "run"
    child = _holder(out, REAL_HOLDER)
    try:
        with pytest.raises(UserError, match=rf"another job is training in this folder \(pid {child.pid}, started "):
            RunFolder(out, "train-classifier", "classifier", {}).check()
    finally:
        _kill(child)
    assert _free(out)
    RunFolder(out, "train-classifier", "classifier", {}).check()


def test_a_file_system_without_flock_is_one_warning_and_no_lock(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)  # NFS without lockd
    out = tmp_path / "run"
    rf = RunFolder(out, "train-detector", "rcnn", {}).check()
    RunFolder(out, "train-detector", "rcnn", {}).check()  # warned once per folder
    assert capsys.readouterr().err.splitlines() == [
        f"train-detector: warning: {out}: cannot lock the run folder (No locks available: the file system has no "
        "flock); a second job in this folder would not be refused"]
    rf.start()
