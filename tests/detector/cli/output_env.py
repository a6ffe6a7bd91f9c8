"""What the output-rule tests share: device nodes (or FIFOs) and the cheapest inputs of each
console script (test_output_rule.py, test_output_cases.py, tests/detector/io/test_outputs.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT


def device_node(path) -> str:
    """A character device (1, 3: the null device) as root, else a FIFO (its reader: :func:`drain`)."""
    path = str(path)
    if os.geteuid() == 0:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        os.mkfifo(path)
    return path


def is_node(path) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


class drain:
    """Read a FIFO in a thread while the block runs (a character device needs no reader)."""

    def __init__(self, path, timeout=60):
        self.path, self.timeout, self.data = str(path), timeout, b""

    def __enter__(self):
        if stat.S_ISFIFO(os.lstat(self.path).st_mode):
            def read():
                with open(self.path, "rb") as f:
                    self.data = f.read()
            self.thread = threading.Thread(target=read, daemon=True)
            self.thread.start()
        else:
            self.thread = None
        return self

    def __exit__(self, *exc):
        if self.thread is not None:
            deadline = time.monotonic() + self.timeout
            while self.thread.is_alive() and time.monotonic() < deadline:  # nobody wrote: open it once so
                try:                                                       # the reader ends
                    os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
                    break
                except OSError:  # ENXIO: the reader has not opened it yet
                    time.sleep(0.01)
            self.thread.join(self.timeout)
            assert not self.thread.is_alive(), "the FIFO's reader hung"



class Env:
    """The cheapest inputs, made on demand in ``tmp``; the session fixtures when needed."""

    def __init__(self, tmp: Path, request):
        self.tmp, self.request = tmp, request

    def fixture(self, name):
        return self.request.getfixturevalue(name)

    @property
    def img(self) -> str:
        p = self.tmp / "in" / "n.png"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(p)
        return str(p)

    @property
    def voc(self) -> Path:
        """A copy of tests/data/voc-mini (the rule's failure must not touch tests/data)."""
        p = self.tmp / "voc"
        if not p.exists():
            shutil.copytree(ROOT / "tests" / "data" / "voc-mini", p)
        return p

    @property
    def colours(self) -> Path:
        """A copy of the session's image-folder classification set (fixture ``folder``)."""
        p = self.tmp / "colours"
        if not p.exists():
            shutil.copytree(self.fixture("folder"), p)
        return p

    @property
    def gt(self) -> Path:
        """A ground-truth folder of one VOC XML (image id ``a``) and detections for it."""
        p = self.tmp / "gt"
        if not p.exists():
            (p / "Annotations").mkdir(parents=True)
            shutil.copy(ROOT / "tests" / "data" / "voc-mini" / "Annotations" / "BloodImage_00000.xml",
                        p / "Annotations" / "a.xml")
            (p / "d.json").write_text(json.dumps([{"image": "a", "detections": [
                {"box": [10, 10, 60, 60], "score": 0.9, "label": "RBC"}]}]))
        return p

    @property
    def proposals_config(self) -> str:
        p = self.tmp / "c.yaml"
        p.write_text(f"data:\n  format: voc\n  root: {self.voc}\n  classes: [Platelets, RBC, WBC]\n"
                     "proposals:\n  method: ss\n  superpixel_scale: 1.0\n  working_width: 120\n")
        return str(p)

    @property
    def train_config(self) -> str:
        p = self.tmp / "t.yaml"
        p.write_text(f"data:\n  format: voc\n  root: {self.voc}\n  classes: [Platelets, RBC, WBC]\n"
                     "  train_split: train\n  val_split: test\n  test_split: test\n"
                     "proposals:\n  method: ss\n  working_width: 120\n  max_boxes: 30\n"
                     "model:\n  arch: googlenet\n  members: 1\n  rcnn:\n    input_size: 32\n"
                     "train:\n  epochs: 1\n  batch_size: 8\n  images_per_batch: 2\n  val_every: 0\n  warmup_steps: 0\n"
                     "  max_steps: 1\n")
        return str(p)
