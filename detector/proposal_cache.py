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
import operator
import os
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np
from tqdm import tqdm

from backbone.errors import UserError
from backbone.io import atomic_write, write_json
from backbone.io import cache_dir as _default_cache_dir
from detector.io.images import ImageReads, read_noted
from proposals.config import ProposalConfig
from proposals.multibox import predict
from proposals.pipeline import combine, get_multibox, validate
from proposals.selective_search import selective_search, strategies

#: bump when the engine's output changes, so older cache entries are not read
ENGINE_VERSION = 1

#: waiting for the other ranks (torchrun): at least this long (seconds) ...
MIN_TIMEOUT = 600.0
#: ... or this many times the expected time of the slowest shard
TIMEOUT_FACTOR = 10.0
#: seconds per image assumed by a rank that computed none itself
PER_IMAGE_GUESS = 10.0
#: a rank whose heartbeat stopped this long (seconds) is taken for dead
STALE_AFTER = 120.0


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


class ProposalCacheWarning(UserWarning):
    """A file of our own proposal cache was damaged (NaN boxes, truncated, not an ``.npz``, ...)
    and is recomputed. Not an :class:`~backbone.errors.InputWarning`: the cache is no input of
    the user's, so ``--strict`` recomputes it all the same."""


def _read(path: str) -> tuple[tuple[np.ndarray, float] | None, str | None]:
    """``((boxes, seconds), None)`` of cache file ``path``; ``(None, None)`` when it is missing;
    ``(None, problem)`` when it is damaged: not an npz, truncated, ``boxes`` not an (N, 4) array
    of finite numbers, ``seconds`` not one finite number."""
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, "rb") as f, np.load(f) as z:  # our own handle: closed on a damaged zip too
            boxes, seconds = z["boxes"], z["seconds"]
    # the file is np.load's only input, and its zip and npy parsers raise whatever type they hit
    # in damaged bytes (BadZipFile, EOFError, ValueError, OSError, KeyError, zlib.error, ...)
    except Exception as e:  # noqa: BLE001
        return None, f"unreadable ({type(e).__name__})"
    if boxes.dtype.kind not in "fiu" or boxes.ndim != 2 or boxes.shape[1] != 4:
        return None, f"boxes of shape {boxes.shape} and type {boxes.dtype}, expected (N, 4) numbers"
    with np.errstate(all="ignore"):  # a float64 beyond float32's range becomes inf, refused below
        boxes = boxes.astype(np.float32)
    if not np.isfinite(boxes).all():
        return None, "NaN or infinite boxes"
    if seconds.dtype.kind not in "fiu" or seconds.size != 1 or not np.isfinite(seconds).all():
        return None, "no finite seconds"
    return (boxes, float(seconds.reshape(()))), None


def _load(path: str, damaged: dict | None = None) -> tuple[np.ndarray, float] | None:
    """(boxes, seconds) of cache file ``path``, or None when it is missing or damaged (a disk
    that filled up, a killed copy, an edit): recomputed; ``damaged`` gets ``path: problem``."""
    got, problem = _read(path)
    if problem is not None and damaged is not None:
        damaged.setdefault(path, problem)
    return got


def _report_damaged(damaged: dict) -> None:
    if damaged:
        n = len(damaged)
        examples = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in list(damaged.items())[:3])
        warnings.warn(f"proposal cache: {n} damaged file{'s' if n != 1 else ''} recomputed "
                      f"({os.path.dirname(next(iter(damaged)))}); e.g. {examples}", ProposalCacheWarning, stacklevel=3)


def _ss_task(args) -> list[tuple[str, str]]:
    """Selective search of one image into its cache file; returns the notes of a truncated or
    undecodable image (:func:`detector.io.images.read_noted`: the main process counts them).
    An image that cannot be decoded gets no proposals (an empty file: its key changes with the
    file, so a repaired image is computed again)."""
    image_path, out, kwargs = args
    notes: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    image = read_noted(image_path, notes)
    boxes = selective_search(image, **kwargs) if image is not None else np.zeros((0, 4), np.float32)
    dt = time.perf_counter() - t0
    _save(out, boxes, dt)
    return notes


class CachedProposals(Sequence):
    """The proposals of a split, read per image from the cache: ``proposals[i]`` is image i's
    (N, 4) float32 boxes, loaded from its ``.npz`` on access (a copy; the last ``keep`` images
    are kept), :attr:`seconds` the times they took, read lazily too. Nothing holds a whole
    split's boxes; pickles as its file list (DataLoader workers)."""

    def __init__(self, paths, keep: int = 8):
        self.paths = list(paths)
        self.keep = keep
        self._lru: OrderedDict[int, tuple[np.ndarray, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i) -> tuple[np.ndarray, float]:
        """(boxes, seconds) of image ``i``."""
        i = operator.index(i)
        if i < 0:
            i += len(self.paths)
        if not 0 <= i < len(self.paths):
            raise IndexError(f"proposal index {i} out of range ({len(self.paths)} images)")
        got = self._lru.pop(i, None)
        if got is None:
            got = _load(self.paths[i])
            if got is None:
                raise UserError(f"proposal cache file {self.paths[i]}: missing or damaged (removed meanwhile?); "
                                "run again to compute it")
        self._lru[i] = got
        while len(self._lru) > self.keep:
            self._lru.popitem(last=False)
        return got

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.load(i)[0].copy()

    @property
    def seconds(self) -> _Seconds:
        return _Seconds(self)

    def __getstate__(self):
        return {"paths": self.paths, "keep": self.keep}

    def __setstate__(self, state):
        self.__init__(state["paths"], state["keep"])


class _Seconds(Sequence):
    def __init__(self, props: CachedProposals):
        self._props = props

    def __len__(self) -> int:
        return len(self._props)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._props.load(i)[1]


def _check_cache_dir(cache_dir: str, dataset) -> None:
    root = os.path.abspath(getattr(dataset, "root", "") or "")
    cd = os.path.abspath(cache_dir)
    if root and (cd == root or cd.startswith(root.rstrip(os.sep) + os.sep)):
        raise UserError(f"--cache-dir {cache_dir}: is inside the dataset folder {root}; use a folder outside it")


def ensure_proposals(dataset, cfg: ProposalConfig, cache_dir: str | None = None, workers: int = 2,
                     device="cpu", multibox=None, with_seconds: bool = False, sync=None,
                     min_timeout: float = MIN_TIMEOUT, stale_after: float = STALE_AFTER,
                     reads: ImageReads | None = None) -> CachedProposals:
    """Proposals for every record of ``dataset`` (aligned with ``dataset.records``), computing
    and caching the missing ones; returns a :class:`CachedProposals` (read per image).
    ``multibox``: an already loaded network (else ``cfg.multibox_checkpoint`` is loaded when the
    method needs it). With ``with_seconds`` returns ``(boxes, seconds)``, seconds per image
    being the time its proposals took.

    ``sync``: a :class:`detector.engine.devices.RankSync` under torchrun (every rank calls this
    with the same arguments): rank r computes images r, r + world, ... (the ones missing from
    the cache) in its ``workers`` processes, then waits until every rank is done, showing the
    files of all ranks on rank 0's progress bar. The cache folder must be on a filesystem all
    ranks share. A rank that failed or whose heartbeat stopped for ``stale_after`` s is named
    in one :class:`UserError`; so is a wait longer than ``max(min_timeout, TIMEOUT_FACTOR x
    seconds per image x missing images of the slowest shard / workers)``.

    ``reads``: the :class:`detector.io.images.ImageReads` of the run (its truncated and
    undecodable images told once, here and in the pass that follows), else one of this call."""
    validate(cfg)
    if cfg.uses_trunk:  # nothing to compute or cache ahead: the detector proposes in its own pass
        raise UserError("proposals.method trunk: the proposals come from a detector's own trunk, image by image; "
                        "give the detector (propose / eval-proposals --model CHECKPOINT), or choose ss, multibox "
                        "or ss+multibox")
    strategies(cfg.preset, cfg.superpixel_scale)
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or _default_cache_dir()))
    _check_cache_dir(cache_dir, dataset)
    records = list(dataset.records)
    names = [image_key(r.path) + ".npz" for r in records]
    rank, world = (sync.rank, sync.world) if sync is not None else (0, 1)

    mb_hash = None
    if cfg.uses_multibox:
        if multibox is None:
            if not cfg.multibox_checkpoint:
                get_multibox(cfg)  # raises the clear error
            mb_hash = file_hash(cfg.multibox_checkpoint)
            multibox = get_multibox(cfg, device)
        else:
            mb_hash = model_hash(multibox)
    final_dir = os.path.join(cache_dir, "proposals", cache_key(cfg, mb_hash))
    # the folder of method ss with these settings, uncapped: shared by every MultiBox
    # checkpoint and max_total
    ss_dir = os.path.join(cache_dir, "proposals", cache_key(replace(cfg, method="ss", max_total=None)))
    os.makedirs(final_dir, exist_ok=True)
    write_json(os.path.join(final_dir, "settings.json"),
               json.loads(json.dumps({"proposals": asdict(cfg), "multibox_hash": mb_hash}, default=str)),
               what="proposal cache settings")
    present = set(os.listdir(final_dir))
    slowest = max((sum(names[i] not in present for i in range(r, len(names), world)) for r in range(world)),
                  default=0)
    mine = range(rank, len(records), world)
    try:
        damaged: dict[str, str] = {}
        todo = [i for i in mine if _load(os.path.join(final_dir, names[i]), damaged) is None]
        spent = _compute(records, names, todo, cfg, final_dir, ss_dir, workers, multibox,
                         sync.start_heartbeat if sync is not None else lambda: None,
                         reads or ImageReads(f"proposals of dataset {getattr(dataset, 'root', '')} split "
                                             f"{getattr(dataset, 'split', '')}", "given no proposals"), damaged)
        _report_damaged(damaged)
        if sync is not None:
            sync.set_state("done")
            per_image = spent / len(todo) if todo else PER_IMAGE_GUESS
            timeout = max(min_timeout, TIMEOUT_FACTOR * per_image * slowest / max(1, workers))
            expected = set(names)
            bar = tqdm(total=len(names), desc="proposals, all ranks", unit="img",
                       disable=rank != 0 or not sys.stderr.isatty())

            def progress():
                bar.n = len(expected.intersection(os.listdir(final_dir)))
                bar.refresh()

            try:
                sync.wait("proposals", timeout, stale_after, on_poll=progress)
            except UserError as e:
                e.from_wait = True  # about another rank: this one did its share
                raise
            finally:
                bar.close()
    except BaseException as e:
        if sync is not None and not getattr(e, "from_wait", False):
            try:
                sync.set_state(f"failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            except UserError:
                pass  # the store is gone too: the others notice the missing heartbeat
        raise
    finally:
        if sync is not None:
            sync.stop_heartbeat()
    boxes = CachedProposals(os.path.join(final_dir, n) for n in names)
    if with_seconds:
        return boxes, boxes.seconds
    return boxes


def _compute(records, names, todo, cfg, final_dir, ss_dir, workers, multibox, started,
             reads: ImageReads, damaged: dict | None = None) -> float:
    """Compute and save the proposals of images ``todo``; returns the seconds spent. Calls
    ``started()`` once the worker processes are forked (and before MultiBox). Damaged
    selective search files found are recomputed and noted in ``damaged``."""
    t0 = time.perf_counter()
    if todo and cfg.uses_ss:
        os.makedirs(ss_dir, exist_ok=True)
        kwargs = {"preset": cfg.preset, "superpixel_scale": cfg.superpixel_scale, "working_width": cfg.working_width,
                      "min_box_width": cfg.min_box_width, "backend": cfg.backend, "max_boxes": cfg.max_boxes}
        missing = [i for i in todo if _load(os.path.join(ss_dir, names[i]), damaged) is None]
        tasks = [(records[i].path, os.path.join(ss_dir, names[i]), kwargs) for i in missing]
        bar = tqdm(total=len(tasks), desc="selective search", unit="img", disable=not sys.stderr.isatty())
        try:
            if workers > 1 and len(tasks) > 1:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                with ctx.Pool(min(workers, len(tasks))) as pool:
                    started()
                    for notes in pool.imap_unordered(_ss_task, tasks):
                        for kind, text in notes:
                            reads.note(kind, text)
                        bar.update()
            else:
                started()
                for t in tasks:
                    for kind, text in _ss_task(t):
                        reads.note(kind, text)
                    bar.update()
        finally:
            bar.close()
        if not cfg.uses_multibox and final_dir != ss_dir:  # capped: kept in the folder of these settings too
            for i in todo:
                boxes, secs = _read_back(ss_dir, names[i], records[i])
                _save(os.path.join(final_dir, names[i]), combine(boxes, None, cfg), secs)
    started()
    if todo and cfg.uses_multibox:  # multibox or ss+multibox, batched in this process
        bar = tqdm(total=len(todo), desc="multibox", unit="img", disable=not sys.stderr.isatty())
        for s in range(0, len(todo), 16):
            chunk = todo[s:s + 16]
            n_chunk = len(chunk)
            images = [reads.load(records[i].path) for i in chunk]
            for i, im in zip(chunk, images):
                if im is None:  # cannot be decoded: no proposals
                    _save(os.path.join(final_dir, names[i]), np.zeros((0, 4), np.float32), 0.0)
            chunk = [i for i, im in zip(chunk, images) if im is not None]
            images = [im for im in images if im is not None]
            if not chunk:
                bar.update(n_chunk)
                continue
            t1 = time.perf_counter()
            preds = predict(multibox, images, top_k=cfg.multibox_top_k)
            dt = (time.perf_counter() - t1) / len(chunk)
            for i, (mb_boxes, _) in zip(chunk, preds):
                t2 = time.perf_counter()
                ss, ss_secs = _read_back(ss_dir, names[i], records[i]) if cfg.uses_ss else (None, 0.0)
                boxes = combine(ss, mb_boxes, cfg)
                _save(os.path.join(final_dir, names[i]), boxes, ss_secs + dt + (time.perf_counter() - t2))
            bar.update(n_chunk)
        bar.close()
    if cfg.uses_ss and not cfg.uses_multibox and final_dir == ss_dir:
        for i in todo:
            _read_back(ss_dir, names[i], records[i])
    reads.report()
    return time.perf_counter() - t0


def _read_back(folder: str, name: str, record) -> tuple[np.ndarray, float]:
    got = _load(os.path.join(folder, name))
    if got is None:
        raise UserError(f"proposal cache {folder}: cannot read back the boxes of {record.path}")
    return got
