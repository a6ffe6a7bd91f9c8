"""detector.engine.devices: train-detector and eval-map --split under torchrun with 2 CPU
processes (gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _tail(r) -> str:
    """What a failed torchrun said: our lines, then the last lines of stderr unfiltered (a rank
    that died by a signal says why only there)."""
    ours = [l for l in r.stderr.splitlines() if "rror" in l or "train-detector" in l or "eval-map" in l]
    return "\n".join(ours[-20:] + ["--- last lines of stderr:"] + r.stderr.splitlines()[-40:])


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")
def test_torchrun_two_processes(test_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data:\n  root: {test_data / 'voc-mini'}\n  classes: [Platelets, RBC, WBC]\n  train_split: train\n  val_split: test\n"
        "proposals:\n  method: ss\n  working_width: 160\n  max_boxes: 40\n"
        "model:\n  arch: googlenet_bn\n  input_size: 32\n  members: 1\n"
        "train:\n  epochs: 1\n  batch_size: 16\n  images_per_batch: 1\n  val_every: 0\n  warmup_steps: 0\n"
        "test:\n  protocol: voc\n  score_thr: 0.0\n  max_proposals: 40\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--config", str(cfg), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    train = ["--out", str(tmp_path / "run"), *common]
    evaluate = ["--split", "train", *common, "--model", str(tmp_path / "run" / "model.pt"), "--json", str(tmp_path / "m.json")]
    # one process group runs both commands' main(argv), as their console scripts do (two torchrun
    # launches cost 2 x 4 process start-ups and torch imports, 6 s of this test)
    driver = tmp_path / "driver.py"
    driver.write_text("import json, sys\n"
                      "from detector.cli.train_detector import main as train\n"
                      "from detector.cli.eval_map import main as evaluate\n"
                      "train_args, eval_args = json.loads(sys.argv[1])\n"
                      "rc = train(train_args)\n"
                      "sys.exit(f'train-detector exited {rc}' if rc else evaluate(eval_args))\n")
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(driver),
                        json.dumps([train, evaluate])], capture_output=True, text=True, env=env, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, _tail(r)
    log = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(log) == 1  # one result, written by rank 0
    assert r.stdout.count("mAP") == 1  # printed once, by rank 0
    dets = json.loads((tmp_path / "detections_train.json").read_text())
    assert len(dets) == 2  # both ranks' shards gathered, in order
    assert 0 <= json.loads((tmp_path / "m.json").read_text())["mAP"] <= 1


@pytest.mark.parametrize("name, line", [
    ("mps", "--device mps: not available on this machine or in this PyTorch build (use auto, cpu, cuda, cuda:N)"),
    ("meta", "--device meta: not available on this machine or in this PyTorch build (use auto, cpu, cuda, cuda:N)"),
    ("nope", "--device nope: not a device name (use auto, cpu, cuda, cuda:N)"),
])
def test_an_unavailable_device_is_one_line(name, line, monkeypatch):
    """--device mps on a build without it was a traceback at the first tensor moved there."""
    import torch

    from backbone.errors import UserError
    from detector.engine.devices import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError) as e:
        resolve_device(name)
    assert str(e.value) == line
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_cuda_index_beyond_the_gpus_is_one_line(monkeypatch):
    import torch

    from backbone.errors import UserError
    from detector.engine.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"^--device cuda:3: this machine has 1 CUDA device \(cuda:0\)$"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
