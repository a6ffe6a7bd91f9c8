"""Proposals for a whole dataset split, cached on disk: :func:`ensure_proposals`.

Cache layout (under ``cache_dir``, default :func:`backbone.io.cache_dir`; never inside the
dataset folder)::

    proposals/ss-<hash of the selective search settings>/<image key>.npz
    proposals/ss_multibox-<hash of every setting + the MultiBox weights' hash>/<image key>.npz

Selective search boxes always live in the uncapped ``ss-`` folder of their settings, shared by
every MultiBox checkpoint and every ``max_total``; a method's own folder (its key includes
``max_total`` when set) holds the final, merged and capped boxes.

Each ``.npz`` holds ``boxes`` (N, 4) float32 in image pixels and ``seconds`` (time to compute
them); it is written to a temp file and renamed, so a killed run leaves only whole files and
the next run continues where it stopped. Selective search (the slow part) runs in ``workers``
processes; MultiBox runs batched in this process and is merged afterwards, so a new MultiBox
checkpoint reuses the cached selective search boxes. The image key is a hash of the image's
absolute path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, replace

import numpy as np
from tqdm import tqdm

from backbone.errors import UserError
from backbone.io import atomic_write, write_json
from backbone.io import cache_dir as _default_cache_dir
from detector.io.images import load_image
from proposals.config import ProposalConfig
from proposals.multibox import predict
from proposals.pipeline import combine, get_multibox, validate
from proposals.selective_search import selective_search, strategies

#: bump when the engine's output changes, so older cache entries are not read
ENGINE_VERSION = 1


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def model_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def ss_settings(cfg: ProposalConfig) -> dict:
    return {"engine": ENGINE_VERSION, "backend": cfg.backend, "preset": cfg.preset,
            "superpixel_scale": cfg.superpixel_scale, "working_width": cfg.working_width,
            "min_box_width": cfg.min_box_width, "max_boxes": cfg.max_boxes}


def cache_key(cfg: ProposalConfig, multibox_hash: str | None = None) -> str:
    """Folder name for ``cfg``'s proposals: method + hash of every setting that shapes them."""
    settings: dict = {"method": cfg.method}
    if cfg.uses_ss:
        settings["ss"] = ss_settings(cfg)
    if cfg.uses_multibox:
        settings.update(multibox=multibox_hash, top_k=cfg.multibox_top_k,
                        input_size=cfg.multibox.input_size)
        if cfg.uses_ss:  # merged with selective search
            settings["merge_iou"] = cfg.merge_iou
    if cfg.max_total is not None:  # only when set: the uncapped keys stay as they were
        settings["max_total"] = int(cfg.max_total)
    return f"{cfg.method.replace('+', '_')}-{_hash(settings)}"


def image_key(path: str) -> str:
    ap = os.path.abspath(path)
    try:
        st = os.stat(ap)
        sig = f"{ap}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        sig = ap
    stem = os.path.splitext(os.path.basename(ap))[0][:40]
    return f"{stem}-{hashlib.sha1(sig.encode()).hexdigest()[:12]}"


def _save(path: str, boxes: np.ndarray, seconds: float) -> None:
    atomic_write(path, lambda f: np.savez(f, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                                          seconds=np.float64(seconds)), what="proposal cache file")


def _load(path: str) -> tuple[np.ndarray, float] | None:
    try:
        with np.load(path) as z:
            return z["boxes"].astype(np.float32).reshape(-1, 4), float(z["seconds"])
    except (OSError, ValueError, KeyError, EOFError):
        return None  # missing or damaged (e.g. a disk filled up): recomputed


def _ss_task(args) -> float:
    image_path, out, kwargs = args
    t0 = time.perf_counter()
    boxes = selective_search(load_image(image_path), **kwargs)
    dt = time.perf_counter() - t0
    _save(out, boxes, dt)
    return dt


def _check_cache_dir(cache_dir: str, dataset) -> None:
    root = os.path.abspath(getattr(dataset, "root", "") or "")
    cd = os.path.abspath(cache_dir)
    if root and (cd == root or cd.startswith(root.rstrip(os.sep) + os.sep)):
        raise UserError(f"--cache-dir {cache_dir}: is inside the dataset folder {root}; use a folder outside it")


def ensure_proposals(dataset, cfg: ProposalConfig, cache_dir: str | None = None, workers: int = 2,
                     device="cpu", multibox=None, with_seconds: bool = False):
    """Proposals for every record of ``dataset`` (aligned with ``dataset.records``), computing
    and caching the missing ones. ``multibox``: an already loaded network (else
    ``cfg.multibox_checkpoint`` is loaded when the method needs it). With ``with_seconds``
    returns ``(boxes, seconds)``, seconds per image being the time its proposals took."""
    validate(cfg)
    strategies(cfg.preset, cfg.superpixel_scale)
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or _default_cache_dir()))
    _check_cache_dir(cache_dir, dataset)
    records = list(dataset.records)
    keys = [image_key(r.path) for r in records]
    results: list = [None] * len(records)
    ss_times = [0.0] * len(records)

    use_ss, use_mb = cfg.uses_ss, cfg.uses_multibox
    mb_hash = None
    if use_mb:
        if multibox is None:

            if not cfg.multibox_checkpoint:
                get_multibox(cfg)  # raises the clear error
            mb_hash = file_hash(cfg.multibox_checkpoint)
            multibox = get_multibox(cfg, device)
        else:
            mb_hash = model_hash(multibox)
    final_dir = os.path.join(cache_dir, "proposals", cache_key(cfg, mb_hash))
    os.makedirs(final_dir, exist_ok=True)
    write_json(os.path.join(final_dir, "settings.json"),
               json.loads(json.dumps({"proposals": asdict(cfg), "multibox_hash": mb_hash}, default=str)),
               what="proposal cache settings")

    todo = []
    ss_boxes: dict[int, np.ndarray] = {}
    for i, k in enumerate(keys):
        got = _load(os.path.join(final_dir, k + ".npz"))
        if got is not None:
            results[i] = got
        else:
            todo.append(i)
    if todo and use_ss:
        # the folder of method ss with these settings, uncapped: shared by every MultiBox
        # checkpoint and max_total
        ss_dir = os.path.join(cache_dir, "proposals", cache_key(replace(cfg, method="ss", max_total=None)))
        os.makedirs(ss_dir, exist_ok=True)
        kwargs = dict(preset=cfg.preset, superpixel_scale=cfg.superpixel_scale, working_width=cfg.working_width,
                      min_box_width=cfg.min_box_width, backend=cfg.backend, max_boxes=cfg.max_boxes)
        missing = [i for i in todo if _load(os.path.join(ss_dir, keys[i] + ".npz")) is None]
        tasks = [(records[i].path, os.path.join(ss_dir, keys[i] + ".npz"), kwargs) for i in missing]
        bar = tqdm(total=len(tasks), desc="selective search", unit="img", disable=not sys.stderr.isatty())
        if workers > 1 and len(tasks) > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(min(workers, len(tasks))) as pool:
                for _ in pool.imap_unordered(_ss_task, tasks):
                    bar.update()
        else:
            for t in tasks:
                _ss_task(t)
                bar.update()
        bar.close()
        for i in todo:
            got = _load(os.path.join(ss_dir, keys[i] + ".npz"))
            if got is None:
                raise UserError(f"proposal cache {ss_dir}: cannot read back the boxes of {records[i].path}")
            ss_boxes[i], ss_times[i] = got
        if not use_mb:
            for i in todo:
                results[i] = (combine(ss_boxes[i], None, cfg), ss_times[i])
                if final_dir != ss_dir:  # capped: kept in the folder of these settings too
                    _save(os.path.join(final_dir, keys[i] + ".npz"), *results[i])
            todo = []
    if todo:  # multibox or ss+multibox

        bar = tqdm(total=len(todo), desc="multibox", unit="img", disable=not sys.stderr.isatty())
        for s in range(0, len(todo), 16):
            chunk = todo[s:s + 16]
            images = [load_image(records[i].path) for i in chunk]
            t0 = time.perf_counter()
            preds = predict(multibox, images, top_k=cfg.multibox_top_k)
            dt = (time.perf_counter() - t0) / len(chunk)
            for i, (mb_boxes, _) in zip(chunk, preds):
                t1 = time.perf_counter()
                boxes = combine(ss_boxes.get(i), mb_boxes, cfg)
                secs = ss_times[i] + dt + (time.perf_counter() - t1)
                _save(os.path.join(final_dir, keys[i] + ".npz"), boxes, secs)
                results[i] = (boxes, secs)
            bar.update(len(chunk))
        bar.close()
    boxes = [r[0] for r in results]
    if with_seconds:
        return boxes, [r[1] for r in results]
    return boxes
