"""Every output option of every console script follows the output rule (detector/io/outputs.py).

The options are enumerated from each script's ``build_parser()`` (the console scripts of
pyproject.toml) and the ``output_kind`` tag :func:`detector.io.outputs.add_output_arg` puts on
them; each has a :data:`CASES` entry (a new output without one fails
:func:`test_every_output_option_has_a_case`). For each, three checks:

- a user's file is not replaced without --overwrite (exit 2 before any work, file intact);
- an input of the same run is never replaced, with or without --overwrite;
- a device node stays a device node: a file output writes INTO it (a full run of the script,
  with the cheapest inputs), a folder or run-folder output refuses it.
"""

from __future__ import annotations

import importlib
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from detector.io.outputs import output_actions
from tests.conftest import ROOT
from tests.detector.cli.output_env import Env, device_node, drain, is_node
from tests.detector.conftest import TRAIN_SETS


def console_scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def script_module(name: str):
    return importlib.import_module(console_scripts()[name].split(":")[0])


def declared_outputs() -> list[tuple[str, str, str]]:
    """(script, flag, kind) of every tagged output option of every console script."""
    out = []
    for name in console_scripts():
        for action in output_actions(script_module(name).build_parser()):
            out.append((name, action.option_strings[0], action.output_kind))
    return out


@dataclass
class Case:
    base: Callable[[Env], list[str]]            # the argv of a run, without the output option
    inputs: Callable[[Env], list[str]]          # inputs of that run, each given as the output in turn
    ours: str = "user.json"                     # file kind: the user's file; folder/run: a name written there
    slow: bool = False                          # the full run (device case) is slow: marked
    device_refused: bool = False                # a file written beside it (a sidecar): a device is refused
    extra: list[str] = field(default_factory=list)


def _eval_map_files(e: Env) -> list[str]:
    return ["--ground-truth", str(e.gt / "Annotations"), "--detections", str(e.gt / "d.json")]


def _eval_map_split(e: Env) -> list[str]:
    return ["--split", "test", "--model", e.fixture("model"), "--data-root", str(e.voc), "--cache-dir",
            str(e.tmp / "cache"), "--device", "cpu"]


def _classify(e: Env) -> list[str]:
    return [e.img, "--model", str(e.fixture("trained") / "model.pt"), "--device", "cpu"]


def _eval_classifier(e: Env) -> list[str]:
    return ["--model", str(e.fixture("trained") / "model.pt"), "--data-root", str(e.fixture("folder")),
            "--split", "test", "--crops", "1", "--every", "12", "--device", "cpu"]


def _eval_proposals(e: Env) -> list[str]:
    return ["--config", e.proposals_config, "--split", "train", "--max-images", "1", "--workers", "1",
            "--cache-dir", str(e.tmp / "cache")]


def _detect(e: Env) -> list[str]:
    return [e.img, "--model", e.fixture("model"), "--device", "cpu"]


def _train_detector(e: Env) -> list[str]:
    return ["--config", e.train_config, "--device", "cpu", "--cache-dir", str(e.tmp / "cache")]


def _run_files(e: Env) -> list[str]:
    """A finished run's model.pt and train_state.pt (names the run writes; stand-in bytes)."""
    run = e.tmp / "run"
    run.mkdir(exist_ok=True)
    for n in ("model.pt", "train_state.pt", "best.pt"):
        (run / n).write_bytes(b"run file " + n.encode())
    return [str(run / "model.pt"), str(run / "train_state.pt"), str(run / "best.pt")]


CASES: dict[tuple[str, str], Case] = {
    ("detect", "--json"): Case(_detect, lambda e: [e.img, e.fixture("model")]),
    ("detect", "--out"): Case(_detect, lambda e: [e.img, e.fixture("model")], ours="n.png"),
    ("eval-map", "--json"): Case(_eval_map_files, lambda e: [str(e.gt / "Annotations" / "a.xml"), str(e.gt / "d.json")]),
    ("eval-map", "--plots"): Case(_eval_map_files, lambda e: [str(e.gt / "Annotations"), str(e.gt / "d.json")],
                                  ours="pr_voc.png"),
    ("eval-map", "--analyze"): Case(_eval_map_files, lambda e: [str(e.gt / "Annotations"), str(e.gt / "d.json")],
                                    ours="analysis.json"),
    ("eval-map", "--save-detections"): Case(_eval_map_split, lambda e: [
        e.fixture("model"), str(e.voc / "Annotations" / "BloodImage_00001.xml")]),
    ("propose", "--json"): Case(lambda e: [e.img], lambda e: [e.img]),
    ("eval-proposals", "--json"): Case(_eval_proposals, lambda e: [
        e.proposals_config, str(e.voc / "Annotations" / "BloodImage_00000.xml")]),
    ("eval-proposals", "--plot"): Case(_eval_proposals, lambda e: [
        e.proposals_config, str(e.voc / "JPEGImages" / "BloodImage_00000.jpg")], ours="user.png"),
    ("classify", "--json"): Case(_classify, lambda e: [e.img, str(e.fixture("trained") / "model.pt")]),
    ("eval-classifier", "--json"): Case(_eval_classifier, lambda e: [
        str(e.fixture("trained") / "model.pt"),
        str(next((e.fixture("folder") / "test").rglob("*.png")))]),
    ("model-summary", "--json"): Case(lambda e: ["--size", "96"], lambda e: []),
    ("export-model", "--out"): Case(lambda e: ["--model", e.fixture("model")], lambda e: [e.fixture("model")],
                                    ours="user.onnx", device_refused=True),
    ("train-detector", "--half"): Case(lambda e: [*_train_detector(e), "--out", str(e.tmp / "run")], lambda e: [
        *_run_files(e), e.train_config, str(e.voc / "Annotations" / "BloodImage_00000.xml")],
        ours="user.pt"),
    ("train-detector", "--out"): Case(_train_detector, lambda e: [
        e.train_config, str(e.voc), str(e.voc / "Annotations")], ours="model.pt"),
    ("train-classifier", "--out"): Case(
        lambda e: ["--data-root", str(e.colours), "--device", "cpu", *[a for s in TRAIN_SETS for a in ("--set", s)]],
        lambda e: [str(next((e.colours / "test").rglob("*.png"))), str(e.colours), str(e.colours / "train")],
        ours="model.pt"),
}

OUTPUTS = declared_outputs()
KIND = {(s, f): k for s, f, k in OUTPUTS}


def test_every_output_option_has_a_case():
    assert {(s, f) for s, f, _ in OUTPUTS} == set(CASES)
    for name in console_scripts():   # every script builds its parser without running
        assert callable(script_module(name).build_parser)


def _run(script: str, argv: list[str]):
    t0 = time.monotonic()
    rc = script_module(script).main([str(a) for a in argv])
    return rc, time.monotonic() - t0


def _has_overwrite(script: str) -> bool:
    return any("--overwrite" in a.option_strings for a in script_module(script).build_parser()._actions)


def _snapshot(path: str):
    p = Path(path)
    if p.is_dir():
        return sorted((q.relative_to(p), q.read_bytes()) for q in p.rglob("*") if q.is_file())
    return p.read_bytes()


@pytest.mark.parametrize("script, flag", sorted(CASES))
def test_a_users_file_is_not_replaced(script, flag, tmp_path, request, capsys):
    env, case, kind = Env(tmp_path, request), CASES[(script, flag)], KIND[(script, flag)]
    argv = case.base(env)
    out = tmp_path / "out"
    out.mkdir()
    (out / case.ours).write_bytes(b"the user's own file")
    target = out / case.ours if kind == "file" else out
    rc, seconds = _run(script, [*argv, flag, target])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert (out / case.ours).read_bytes() == b"the user's own file"
    assert f"{script}: error: {flag} " in err and "Traceback" not in err
    assert seconds < 20, f"refused after {seconds:.1f} s: not before the work"


@pytest.mark.parametrize("script, flag", sorted(CASES))
def test_an_input_of_the_run_is_never_replaced(script, flag, tmp_path, request, capsys):
    env, case = Env(tmp_path, request), CASES[(script, flag)]
    argv = case.base(env)
    inputs = case.inputs(env)
    if not inputs:
        pytest.skip(f"{script} reads no input files")
    for inp in inputs:
        before = _snapshot(inp)
        for extra in ([], ["--overwrite"]) if _has_overwrite(script) else ([],):
            rc, seconds = _run(script, [*argv, flag, inp, *extra])
            err = capsys.readouterr().err
            assert rc == 2 and f"{script}: error: {flag} " in err, (inp, extra, err)
            assert _snapshot(inp) == before, (inp, extra)
            assert "Traceback" not in err and seconds < 20


@pytest.mark.parametrize("script, flag", [pytest.param(s, f, marks=[pytest.mark.slow] if CASES[(s, f)].slow else [])
                                          for s, f in sorted(CASES)])
def test_a_device_node_stays_a_device_node(script, flag, tmp_path, request, capsys):
    env, case, kind = Env(tmp_path, request), CASES[(script, flag)], KIND[(script, flag)]
    argv = case.base(env)
    node = device_node(tmp_path / "null")
    with drain(node) as fifo:
        rc, _ = _run(script, [*argv, flag, node])
    err = capsys.readouterr().err
    assert is_node(node)
    if case.device_refused:  # a sidecar goes beside the file: a device is one error line, before any work
        assert rc == 2 and f"{script}: error: {flag} " in err, err
    elif kind == "file":   # written into: the full run succeeds (a FIFO's reader got the output)
        assert rc == 0, err
        assert fifo.thread is None or fifo.data
    else:                # a folder or a run folder cannot be a device: refused
        assert rc == 2 and "expected a folder" in err, err
