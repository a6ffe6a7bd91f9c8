"""Peak memory and time of train-detector and eval-map --split at 10k and 100k images (issue 15).

For each N: a synthetic ILSVRC DET layout (``bench/make_synthetic_det.py``) with 200 random
proposals per image written straight into a fresh proposal cache (so no selective search runs),
then, each in a child process timed by ``/usr/bin/time``:

- ``read``: the train split's records read twice (the annotation and image size indexes
  built, then reused: every annotated size is compared with the image's own);
- ``train``: ``train-detector --config configs/ilsvrc2014_det.yaml`` with ``train.max_steps=20``
  and CPU-size overrides (``proposals.method=ss``: the config wants a MultiBox checkpoint; one
  member; 64 px warps; 32 regions per step; no validation);
- ``eval``: ``eval-map --split val500`` (the first 500 of the 1,000 val images: a split file
  and folder links to ``val``).

    python bench/bench_scale.py --images 10000 100000 [--work /work/synth] [--only read]

Peak resident memory is each child's maximum RSS. The data is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from detector.config import load_detector_config  # noqa: E402
from detector.io.datasets import load_dataset  # noqa: E402
from detector.proposal_cache import _save, cache_key, image_key  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "ilsvrc2014_det.yaml")
BIN = os.path.dirname(sys.executable)
DATA = ["--set", "data.classes_file=devkit/data/map_det.txt",
        "--set", "data.blacklist=devkit/data/ILSVRC2015_det_validation_blacklist.txt"]
CPU = ["--set", "proposals.method=ss", "--set", "model.members=1", "--set", "model.rcnn.input_size=64",
       "--set", "train.batch_size=32", "--set", "train.val_every=0"]


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, last stderr line) of ``cmd`` in a child process."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    lines = p.stderr.strip().splitlines()
    rss = next(float(ln.split()[1]) / 1024 for ln in reversed(lines) if ln.startswith("MAXRSS"))
    if p.returncode != 0:
        raise SystemExit(f"bench_scale: {' '.join(cmd[:3])} failed:\n{p.stderr[-2000:]}")
    return dt, rss, (lines[-2] if len(lines) > 1 else "")


def write_proposals(root: str, cache: str, n_boxes: int = 200) -> None:
    cfg = load_detector_config(CONFIG, [a for a in DATA + CPU if a != "--set"], data_root=root)
    folder = os.path.join(cache, "proposals", cache_key(cfg.proposals))
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for rec in load_dataset(cfg.data, split).records:
            xy = rng.uniform(0, [rec.width - 8, rec.height - 8], (n_boxes, 2))
            wh = rng.uniform(4, [rec.width, rec.height], (n_boxes, 2))
            boxes = np.concatenate([xy, np.minimum(xy + wh, [rec.width, rec.height])], 1)
            _save(os.path.join(folder, image_key(rec.path) + ".npz"), boxes, 0.0)


def bench(n: int, work: str, only: str | None = None) -> dict:
    root, cache, out = (os.path.join(work, f"{k}_{n}") for k in ("data", "cache", "run"))
    for d in (root, cache, out):
        shutil.rmtree(d, ignore_errors=True)
    env = dict(os.environ, GOOGLENET_DET_CACHE=cache, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    row: dict = {"images": n}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_synthetic_det.py"), root, "--images", str(n),
                    "--val-images", "1000"], check=True, env=env)
    with open(os.path.join(root, "ImageSets", "DET", "val.txt")) as f, \
            open(os.path.join(root, "ImageSets", "DET", "val500.txt"), "w") as g:
        g.writelines(f.readlines()[:500])
    for top in ("Data", "Annotations"):  # the reader looks in <top>/DET/<split>/
        os.symlink("val", os.path.join(root, top, "DET", "val500"))
    row["generate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_proposals(root, cache)
    row["proposals_s"] = time.perf_counter() - t0
    read = ("import sys, time; sys.path.insert(0, %r)\n"
            "from detector.io.datasets.ilsvrc import read_ilsvrc\n"
            "for s in ('train', 'val'):\n"
            "    t = time.perf_counter(); read_ilsvrc(%r, s); print(s, time.perf_counter() - t, file=sys.stderr)\n"
            ) % (ROOT, root)
    row["read_first_s"], row["read_first_mb"], _ = timed([sys.executable, "-c", read], env)
    row["read_again_s"], row["read_again_mb"], _ = timed([sys.executable, "-c", read], env)
    if only == "read":
        for d in (root, cache, out):
            shutil.rmtree(d, ignore_errors=True)
        return row
    row["train_s"], row["train_mb"], _ = timed(
        [os.path.join(BIN, "train-detector"), "--config", CONFIG, "--data-root", root, *DATA, *CPU,
         "--set", "train.max_steps=20", "--out", out], env)
    row["eval_s"], row["eval_mb"], _ = timed(
        [os.path.join(BIN, "eval-map"), "--split", "val500", "--config", CONFIG, "--data-root", root, *DATA, *CPU,
         "--model", os.path.join(out, "model.pt"), "--json", os.path.join(out, "val500.json")], env)
    for d in (root, cache, out):
        shutil.rmtree(d, ignore_errors=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--work", default="/tmp/bench_scale", help="folder for the synthetic data (deleted after)")
    p.add_argument("--only", choices=["read"], help="read: only the dataset reads (no training, no eval-map)")
    args = p.parse_args()
    rows = [bench(n, args.work, args.only) for n in args.images]
    keys = list(rows[0])
    print(" ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print(" ".join(f"{r[k]:>14.1f}" if isinstance(r[k], float) else f"{r[k]:>14}" for k in keys))
    if len(rows) > 1:
        for k in [k for k in ("train_mb", "eval_mb", "read_again_mb") if k in rows[0]]:
            print(f"{k}: {rows[-1][k] - rows[0][k]:+.0f} MB from {rows[0]['images']} to {rows[-1]['images']} images")


if __name__ == "__main__":
    main()
