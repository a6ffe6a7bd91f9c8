"""The run folder every training command shares (``train-detector``, its MultiBox stage and
``train-classifier``): one layout, one resume rule, one log and progress style.

Files in a run folder (``OUT`` = ``--out``; MultiBox's run is ``OUT/multibox``)::

    run.json        what made the run (:class:`RunRecord`): {"format_version": 1, "command": "train-detector" |
                    "train-classifier", "kind": "rcnn" | "multibox" | "classifier", "config": the settings
                    resumes compare} (and "format": 1, its marker from before format_version)
    config.yaml     the resolved config
    metrics.jsonl   one JSON row per trained epoch ("epoch" counts from 1; "loss", "lr", "seconds",
                    and the validation metric "val_mAP" / "val_top1" when validation ran)
    curves.png      training loss and the validation metric per epoch
    train_state.pt  everything needed to continue (:class:`TrainState`), saved after every epoch (train-detector: also every
                    train.checkpoint_every steps inside one), with the number of metrics.jsonl rows it covers
    model.pt        the final model (MultiBox: multibox.pt), written when training ends
    best.pt         the model (same format as model.pt) at its best validation, when validation runs
    .lock           while a job runs: its lock (:func:`lock_run`), naming its pid, host and start time

The resume rule (:meth:`RunFolder.check`, before anything is written):

- a run found in ``--out`` (its ``run.json``) resumes; ``resume=False`` (``--no-resume``) refuses it;
- the run's config must be the same, except ``test.*``, a larger (or equal) ``train.epochs`` and
  the keys the command declares free (:func:`config_difference`); anything else is refused with
  the first differing key;
- a run of another command or kind is refused, and so is a folder holding run files (``model.pt``,
  ``train_state.pt``, ...) without a ``run.json``: files of unknown origin, or a run folder of an
  older version (those cannot be resumed);
- ``--out`` naming a file or an unwritable folder is one error (:func:`backbone.io.check_writable`).

One job per folder (:func:`lock_run`, in :meth:`RunFolder.check` between the refusals of a
folder that is not this command's and the resume rule): rank 0 holds an ``flock`` (exclusive,
non-blocking) on ``.lock`` while its run object lives, and the kernel drops it when the process
ends, however it ends (even SIGKILL); the other ranks of a ``torchrun`` job share the folder
without locking. A second job gets one line naming the holder's pid and start time, before any
work. The lock creates the folder; at the end of the run the lock file goes, and so does a
folder the lock created when nothing else was written there (a run that failed before its first
write leaves nothing). Where the file system has no working ``flock`` (the call fails), one
warning line says the folder is not locked and the run goes on; docs/DESIGN.md says where
``flock`` succeeds on each machine without excluding the others.

A kill between a ``metrics.jsonl`` row and the state save that follows it leaves one row the
state does not cover: :meth:`RunFolder.start` trims the log to the state's rows, so the epoch
run again is logged once. Every file is written atomically (:mod:`backbone.io`).

Progress: tqdm bars on a terminal only (the loops), one line per epoch on stderr,
``<command>: <message>`` (:meth:`RunFolder.say`, :meth:`RunFolder.log`).
"""

from __future__ import annotations

import datetime
import errno
import functools
import json
import os
import socket
import sys
import weakref
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

import yaml

from backbone.config import save_config, to_dict
from backbone.errors import UserError
from backbone.formats import read_format, record
from backbone.io import (
    atomic_save,
    check_writable,
    json_safe,
    json_text,
    safe_torch_load,
    write_json,
    write_text,
)
from detector.io.figures import write_figure
from eval.figures import new_figure

from .devices import dist_info
from .run_formats import RunRecord, TrainState

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
STATE_FILE = "train_state.pt"
MODEL_FILE = "model.pt"
BEST_FILE = "best.pt"
LOCK_FILE = ".lock"
#: names a run of this version writes, and those of the older layouts (``last.pt``, ``log.jsonl``):
#: found without a run.json, they are files of unknown origin
RUN_FILES = (CONFIG_FILE, LOG_FILE, CURVES_FILE, STATE_FILE, MODEL_FILE, BEST_FILE, "multibox.pt", "last.pt",
             "log.jsonl", "log.png")
#: config keys a resumed run may change: prefixes free to change, and keys that may only grow
FREE_PREFIXES = ("test.",)
MAY_GROW = ("train.epochs",)


# --------------------------------------------------------------------------------- configs


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def _plain(obj: Any) -> Any:
    """A config (dataclass or dict) as plain JSON data (tuples become lists, as they come back)."""
    if not isinstance(obj, dict):
        obj = to_dict(obj)
    return json.loads(json.dumps(obj, default=str))


def config_difference(old: dict, new: dict, free: tuple[str, ...] = ()) -> str | None:
    """``None`` when a run of config ``old`` may resume with ``new`` (they differ only in
    ``test.*``, the keys ``free`` and a larger ``train.epochs``), else the first difference,
    e.g. ``"train.lr 0.01 -> 0.5"``."""
    a, b = _flatten(_plain(old)), _flatten(_plain(new))
    for key in sorted(set(a) | set(b)):
        if key.startswith(FREE_PREFIXES) or key in free:
            continue
        if key not in a or key not in b:
            return f"{key} {'only in the new config' if key in b else 'missing from the new config'}"
        va, vb = a[key], b[key]
        if key in MAY_GROW and isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            if vb < va:
                return f"{key} {vb} is fewer than the run's {va} (it may only grow)"
            continue
        if va != vb:
            return f"{key} {va!r} -> {vb!r}"
    return None


def config_compatible(old: dict, new: dict) -> bool:
    """True when the configs differ only in ``test.*`` and a larger ``train.epochs``."""
    return config_difference(old, new) is None


# --------------------------------------------------------------------------------- the log


def read_log(path: str) -> list[dict]:
    """The rows of a metrics.jsonl file (a line cut by a crash is skipped)."""
    rows = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    return rows


def plot_curves(rows: list[dict], path: str, *, metric: str | None = None, group: str | None = None,
                title: str = "") -> None:
    """Training loss (left) and validation ``metric`` (right) per epoch, one line per value of
    ``group`` (e.g. the ensemble member) -> PNG at ``path``, written atomically."""
    fig = new_figure((10, 3.8))
    a1, a2 = fig.subplots(1, 2)
    keys = sorted({r.get(group) for r in rows}, key=lambda k: (k is None, k)) if group else [None]
    for k in keys:
        rs = [r for r in rows if group is None or r.get(group) == k]
        label = f"{group} {k}" if group else "train"
        pts = [(r["epoch"], r["loss"]) for r in rs if r.get("loss") is not None and "epoch" in r]
        if pts:
            a1.plot(*zip(*pts), marker="o", label=label)
        if metric:
            vs = [(r["epoch"], r[metric]) for r in rs if r.get(metric) is not None and "epoch" in r]
            if vs:
                a2.plot(*zip(*vs), marker="s", label=label if group else "validation")
    a1.set(xlabel="epoch", ylabel="training loss", title=f"{title} loss".strip())
    a2.set(xlabel="epoch", ylabel=metric or "", title=f"validation {metric}" if metric else "no validation")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    write_figure(path, fig, what="curves", dpi=90)


# --------------------------------------------------------------------------------- the job lock


def _rank() -> int:
    """This process's rank in a torchrun job (0 when not distributed)."""
    rank, _ = dist_info()
    if rank:
        return rank
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _holder(fd: int) -> str:
    """``pid N, started ...`` from the lock file the other job wrote (as far as it is readable)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        who = f"pid {int(info['pid'])}"
        if info.get("host") and info["host"] != socket.gethostname():
            who += f" on {info['host']}"
        return f"{who}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "pid unknown"


def _release(folder: str, fd: int, created: bool, owner: int) -> None:
    """Drop a job lock: its file is removed (still locked: a job that opened it meanwhile finds
    it replaced and retries, :func:`lock_run`), and the folder too when the lock created it and
    nothing else was written there (a run refused or failed before its first write). In a forked
    child (a data loader worker) only the child's copy of the descriptor is closed."""
    if os.getpid() != owner:
        os.close(fd)
        return
    path = os.path.join(folder, LOCK_FILE)
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
            os.unlink(path)
            if created and not os.listdir(folder):
                os.rmdir(folder)
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)  # also when a forked worker still shares the descriptor
    except OSError:
        pass
    os.close(fd)


class JobLock:
    """The ``flock`` of one run folder held by this process (:func:`lock_run`), shared by the
    process's :class:`RunFolder` objects of that folder and dropped with the last of them (the
    end of the run), or by the kernel when the process ends, however it ends."""

    def __init__(self, folder: str, fd: int, created: bool):
        self.folder, self.fd = folder, fd
        self._finalizer = weakref.finalize(self, _release, folder, fd, created, os.getpid())

    def holds(self, path: str) -> bool:
        """Whether the lock file at ``path`` is still the file this lock holds."""
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(path, follow_symlinks=False))
        except OSError:
            return False

    def release(self) -> None:
        self._finalizer()


#: the run folders this process holds the lock of (real path -> lock): a process opening its own
#: folder again (a stage, a resume check) does not conflict with itself
_LOCKS: "weakref.WeakValueDictionary[str, JobLock]" = weakref.WeakValueDictionary()
_UNLOCKABLE: set[str] = set()


def release_run_lock(out_dir: str | os.PathLike) -> None:
    """Drop this process's job lock of ``out_dir`` now (the end of its run), not when the
    garbage collector gets to the last :class:`RunFolder` of it: a finished run's folder holds
    no ``.lock`` the moment its trainer returns."""
    lock = _LOCKS.get(os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(out_dir)))))
    if lock is not None:
        lock.release()


def releases_run_lock(trainer):
    """Decorate a trainer ``trainer(cfg, out_dir, ...)``: the job lock of ``out_dir`` is dropped
    when it returns or raises (:func:`release_run_lock`)."""

    @functools.wraps(trainer)
    def wrapper(cfg, out_dir, *args, **kwargs):
        try:
            return trainer(cfg, out_dir, *args, **kwargs)
        finally:
            release_run_lock(out_dir)

    return wrapper


def lock_run(out_dir: str | os.PathLike, command: str) -> JobLock | None:
    """The job lock of the run folder ``out_dir`` (created when missing): an exclusive,
    non-blocking ``flock`` on ``OUT/.lock``, whose text names this process (pid, host, start
    time) for the message another job gets. Held while the returned :class:`JobLock` lives (a
    :class:`RunFolder` keeps it for its run), released by the kernel when the process ends.

    Another job holding it: :class:`UserError`, one line naming its pid and start time. Only
    rank 0 of a torchrun job locks (its ranks share the folder): other ranks get None at once.
    A file system without ``flock``: one warning line on stderr, no lock, None."""
    if fcntl is None or _rank() != 0:
        return None
    out = os.path.abspath(os.path.expanduser(os.fspath(out_dir)))
    path = os.path.join(out, LOCK_FILE)
    real = os.path.realpath(out)
    held = _LOCKS.get(real)
    if held is not None and held.holds(path):
        return held
    for _ in range(10):  # a lock file removed by the job that held it (_release): take the new one
        created = not os.path.isdir(out)
        flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            os.makedirs(out, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | flags, 0o644)
            except PermissionError:  # another user's lock file, left by a killed run: read-only still locks
                fd = os.open(path, os.O_RDONLY | flags)
        except FileNotFoundError:  # the folder removed meanwhile by the job that created it (_release)
            continue
        except OSError as e:
            raise UserError(f"--out {out}: cannot open its job lock {LOCK_FILE} ({e.strerror or e}); "
                            "choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _holder(fd)
                os.close(fd)
                raise UserError(f"{out}: another job is training in this folder ({holder}); "
                                "wait for it or choose another --out") from None
            os.close(fd)
            if real not in _UNLOCKABLE:
                _UNLOCKABLE.add(real)
                print(f"{command}: warning: {out}: cannot lock the run folder ({e.strerror or e}: the file system "
                      "has no flock); a second job in this folder would not be refused", file=sys.stderr, flush=True)
            return None
        lock = JobLock(out, fd, created)
        if lock.holds(path):
            break
        lock.release()
    else:  # pragma: no cover - ten jobs in a row removed the file under this one
        raise UserError(f"--out {out}: its job lock {LOCK_FILE} keeps being replaced; choose another --out")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": command})
    try:  # who holds it, for the other job's message (the lock itself is the flock, not this text)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (info + "\n").encode("utf-8"), 0)
    except OSError:
        pass
    _LOCKS[real] = lock
    return lock


# --------------------------------------------------------------------------------- the folder


def _choose_another(read: Callable[[], Any]) -> Any:
    """``read()``, its one-line refusal ending in what to do."""
    try:
        return read()
    except UserError as e:
        raise UserError(f"{e}; choose another --out") from None


def _legacy(version: int) -> dict:
    """The markers written beside ``format_version`` while the run formats are at version 1."""
    return {"format": version} if version == 1 else {}


def _read_run_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable run record ({e}); choose another --out") from None
    if not isinstance(info, dict) or "command" not in info or "kind" not in info:
        raise UserError(f"{path}: not a run record (no command and kind); choose another --out")
    return record(*_choose_another(lambda: read_format(RunRecord, info, source=path)))


def check_owner(out_dir: str, command: str, kind: str | None = None) -> dict | None:
    """Refuse ``out_dir`` when it holds a run of another command (or ``kind``), or run files
    without a run.json. Returns the run record found (or None). Reads only."""
    out = check_writable(out_dir, what="--out", folder=True)
    if not os.path.isdir(out):
        return None
    record = os.path.join(out, RUN_FILE)
    if os.path.exists(record):
        info = _read_run_json(record)
        if info["command"] != command or (kind is not None and info["kind"] != kind):
            want = f"a {command} run" + (f" of kind {kind!r}" if kind else "")
            raise UserError(f"--out {out}: holds a {info['command']} run of kind {info['kind']!r}, not {want}; "
                            "choose another --out")
        return info
    try:
        present = sorted(n for n in os.listdir(out) if n in RUN_FILES)
    except OSError as e:
        raise UserError(f"--out {out}: cannot read the folder ({e.strerror or e})") from None
    if present:
        raise UserError(f"--out {out}: holds {', '.join(present)} but no {RUN_FILE}: not a {command} run of this "
                        "version (files of unknown origin, or a run folder of an older version, which cannot be "
                        "resumed); choose another --out")
    return None


class RunFolder:
    """One training run's folder (see the module docstring).

    ``config``: what config.yaml holds (a dataclass or dict); ``compare``: the settings run.json
    records and a resume compares (default: all of ``config``). ``model_file``: the final
    model's name. ``metric``/``group``: the row keys :func:`plot_curves` draws. ``write``:
    False on the ranks of a distributed run that do not write (rank 0 does). ``free``: config
    keys a resume may change besides ``test.*`` (settings that do not change the result, such
    as ``train-detector``'s ``train.workers``, ``train.max_steps``, ``train.checkpoint_every``).

    Use: ``check()`` (refusals, before anything is written), ``start()`` (run.json, config.yaml,
    the log trimmed to the state), then per epoch ``log(row, message)`` and ``save_state(...)``,
    and at the end the model through ``model_path`` / ``best_path``."""

    def __init__(self, out_dir: str | os.PathLike, command: str, kind: str, config: Any, *, resume: bool = True,
                 compare: Any = None, model_file: str = MODEL_FILE, metric: str | None = None,
                 group: str | None = None, write: bool = True, free: tuple[str, ...] = ()):
        self.out_dir = os.path.abspath(os.path.expanduser(os.fspath(out_dir)))
        self.command, self.kind = command, kind
        self.config = config
        self.compare = _plain(config if compare is None else compare)
        self.resume = resume
        self.metric, self.group = metric, group
        self.write = write
        self.free = tuple(free)
        self.run_path = os.path.join(self.out_dir, RUN_FILE)
        self.config_path = os.path.join(self.out_dir, CONFIG_FILE)
        self.log_path = os.path.join(self.out_dir, LOG_FILE)
        self.curves_path = os.path.join(self.out_dir, CURVES_FILE)
        self.state_path = os.path.join(self.out_dir, STATE_FILE)
        self.model_path = os.path.join(self.out_dir, model_file)
        self.best_path = os.path.join(self.out_dir, BEST_FILE)
        self.found = False            # a run of this command and kind is in the folder
        self.config_changed = False   # ... and its config differs (test.*, a larger train.epochs)
        self.rows: list[dict] = []
        self._state: dict | None = None
        self._checked = False
        self._lock: JobLock | None = None  # the job lock, held while this run object lives

    # -- before anything is written

    def check(self) -> "RunFolder":
        """Every refusal of the resume rule, reading only, with the job lock taken (rank 0 of a
        writing run, :func:`lock_run`) between the refusals of a folder that is not this
        command's and the others; loads the state to resume from."""
        info = check_owner(self.out_dir, self.command, self.kind)  # not ours: refused before the lock file
        if self.write:
            self._lock = lock_run(self.out_dir, self.command)
        try:
            if self._lock is not None:  # what the folder holds now that no other job can write it
                info = check_owner(self.out_dir, self.command, self.kind)
            self._resume_rule(info)
        except BaseException:
            self._lock = None  # a refused run holds no lock (dropped with its last reference)
            raise
        self._checked = True
        return self

    def _resume_rule(self, info: dict | None) -> None:
        if info is None:
            return
        self.found = True
        if not self.resume:
            raise UserError(f"--out {self.out_dir}: already holds a training run ({self.command}, {RUN_FILE}); "
                            "resume it (drop --no-resume) or choose another --out")
        diff = config_difference(info.get("config") or {}, self.compare, self.free)
        if diff is not None:
            raise UserError(f"--out {self.out_dir}: the run there was started with another config ({diff}); "
                            f"a resumed run may change only test.*{''.join(', ' + k for k in self.free)} and raise "
                            "train.epochs: use another --out to start afresh")
        self.config_changed = _plain(info.get("config") or {}) != self.compare
        if os.path.exists(self.state_path):
            st = safe_torch_load(self.state_path, "training state")
            where = f"training state {self.state_path}"
            if not isinstance(st, dict):
                raise UserError(f"{where}: not the state of this {self.command} run; choose another --out")
            obj, payload = _choose_another(lambda: read_format(TrainState, st, source=where))
            if obj.command != self.command or obj.kind != self.kind:
                raise UserError(f"{where}: not the state of this {self.command} run ({obj.command}, kind "
                                f"{obj.kind!r}); choose another --out")
            self._state = record(obj, payload)

    def load_state(self) -> dict | None:
        """The saved state (what :meth:`save_state` got), or None when there is nothing to resume."""
        return self._state

    # -- writing

    def start(self) -> None:
        """Write run.json and config.yaml; on a resume trim metrics.jsonl to the rows the state
        covers (a kill between a row and the state save would repeat that epoch's row)."""
        if not self._checked:
            self.check()
        keep = self._state["log_rows"] if self._state is not None else 0
        self.rows = read_log(self.log_path)[:keep]
        if not self.write:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        run = RunRecord(command=self.command, kind=self.kind, config=self.compare)
        write_json(self.run_path, {**_legacy(run.format_version), **record(run)}, what="run record")
        if isinstance(self.config, dict):
            write_text(self.config_path, yaml.safe_dump(self.config, sort_keys=False), what="config")
        else:
            save_config(self.config, self.config_path)
        if os.path.exists(self.log_path) or self.rows:
            self._write_log()

    def trim_log(self, n_rows: int) -> list[dict]:
        """Keep the first ``n_rows`` rows of metrics.jsonl (and redraw the curves)."""
        self.rows = read_log(self.log_path)[:n_rows]
        if self.write:
            self._write_log()
        return self.rows

    def _write_log(self) -> None:
        text = "".join(json_text(r, indent=None, nan_as_null=True) for r in self.rows)
        write_text(self.log_path, text, what="log")
        if self.rows:
            plot_curves(self.rows, self.curves_path, metric=self.metric, group=self.group, title=self.kind)
        elif os.path.exists(self.curves_path):
            os.remove(self.curves_path)

    def say(self, message: str) -> None:
        """One line on stderr, ``<command>: message`` (writing ranks only)."""
        if self.write:
            print(f"{self.command}: {message}", file=sys.stderr, flush=True)

    def log(self, row: dict, message: str | None = None) -> None:
        """Append ``row`` to metrics.jsonl (the file rewritten atomically), redraw curves.png,
        print ``message``. Call before :meth:`save_state` of the same epoch."""
        self.rows.append(json_safe(dict(row)))
        if self.write:
            self._write_log()
            if message:
                self.say(message)

    def save_state(self, payload: dict, epochs_done: int | None = None) -> None:
        """Save ``payload`` (tensors and plain data) as the state to resume from, recording the
        log rows it covers."""
        if not self.write:
            return
        fields = TrainState(command=self.command, kind=self.kind, config=self.compare, log_rows=len(self.rows),
                            epochs_done=epochs_done)
        state = {**_legacy(fields.format_version), **record(fields, payload)}
        atomic_save(state, self.state_path, what="training state")
        self._state = record(fields, payload)

    def save_model(self, write: Callable[[str], Any], *, best: bool = False) -> str:
        """``write(path)`` for model.pt (or best.pt) on the writing rank; returns the path."""
        path = self.best_path if best else self.model_path
        if self.write:
            write(path)
        return path

    def save_best(self, write: Callable[[str], Any]) -> str:
        return self.save_model(write, best=True)


__all__ = ["RunFolder", "config_difference", "config_compatible", "check_owner", "lock_run", "release_run_lock", "releases_run_lock", "JobLock", "plot_curves",
           "read_log", "LOCK_FILE", "RUN_FILE", "CONFIG_FILE", "LOG_FILE", "CURVES_FILE", "STATE_FILE", "MODEL_FILE",
           "BEST_FILE"]
