"""Detection over a whole dataset split with cached proposals (``eval-map --split``), sharded
over the ranks under ``torchrun``."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from backbone.errors import UserError

from ..config import DetectorConfig
from ..io.datasets import load_dataset
from ..io.image_stream import READ_WORKERS, read_images
from ..io.images import ImageReads
from ..model import DETECT_BATCH, Detector
from ..proposal_cache import ensure_proposals
from .devices import (
    all_gather_list,
    dist_info,
    init_distributed,
    rank_sync,
    resolve_device,
)


def detect_split(cfg: DetectorConfig, split: str, model_path: str | None = None, cache_dir: str | None = None,
                 device: str = "auto", detector: Detector | None = None, progress: bool = True,
                 proposals_from_config: bool = False, timing: dict | None = None, batch: int = DETECT_BATCH,
                 read_workers: int = READ_WORKERS):
    """Run detection over ``split`` of ``cfg.data`` with cached proposals.

    The model's own proposal / network settings come from its checkpoint; ``cfg`` gives the
    data and the test settings (NMS, threshold, ``test.members``). The ``detector`` given is
    left unchanged (a configured copy sharing its networks runs). Under ``torchrun`` each rank
    takes a shard of the images and every rank gets the gathered result.
    ``proposals_from_config``: use ``cfg.proposals`` (and its MultiBox checkpoint) instead of
    the checkpoint's. ``timing``: a dict filled with mean seconds per image and stage (load,
    proposals, the kind's stages, postprocess; ``proposals`` = the time the cached proposals
    took when they were computed; under torchrun, rank 0's shard). ``batch``: images per
    :meth:`Detector.detect_batch` call; ``read_workers``: decoding processes
    (:func:`detector.io.image_stream.read_images`). Returns (dataset,
    detections JSON list, one object per record, in order, ``image`` = record path).
    """
    if detector is None:
        dev = resolve_device(device)
        init_distributed(dev)
        detector = Detector.from_checkpoint(model_path, dev)
    detector = detector.configured(test=cfg.test, members=cfg.test.members,
                                   **({"proposals": cfg.proposals, "multibox": None} if proposals_from_config else {}))
    dataset = load_dataset(cfg.data, split)
    if dataset.classes != detector.classes:
        missing = [c for c in dataset.classes if c not in detector.classes]
        if missing or len(dataset.classes) != len(detector.classes):
            raise UserError(f"model classes {detector.classes} do not match the data's classes {dataset.classes}")
    rank, world = dist_info()
    # an image that cannot be decoded is scored as the devkit scores an image without detections:
    # its objects count as missed (one counted warning); a truncated JPEG is decoded (one warning)
    reads = ImageReads(f"dataset {dataset.root} split {split}",
                       "scored without detections (their objects count as missed)")
    # every rank computes its share of the missing proposals; read per image afterwards
    if detector.cfg.proposals.uses_trunk:  # the members propose, image by image, in the detector's pass
        props, prop_secs = [None] * len(dataset), None
    else:
        props, prop_secs = ensure_proposals(dataset, detector.cfg.proposals, cache_dir=cache_dir,
                                            device=str(detector.device), multibox=detector.multibox,
                                            with_seconds=True, sync=rank_sync("proposals"), reads=reads)
    mine = list(range(rank, len(dataset), world))
    out = {}
    bar = tqdm(total=len(mine), desc=f"detect {split}", disable=not progress or rank != 0 or not sys.stderr.isatty())
    pending = []

    def finish():
        dets = detector.detect_batch([image for _, image, _ in pending], [props[i] for i, _, _ in pending])
        for (i, _, t_load), d in zip(pending, dets):
            if timing is not None:
                d.seconds.update(load=t_load, **({} if prop_secs is None else {"proposals": float(prop_secs[i])}))
                for k, v in d.seconds.items():
                    timing[k] = timing.get(k, 0.0) + v / len(mine)
            out[i] = d.to_json(dataset.records[i].path)  # labels by name: the dataset's order may differ
        bar.update(len(pending))
        pending.clear()

    stream = read_images([dataset.records[i].path for i in mine], workers=read_workers, reads=reads)
    while True:
        t0 = time.perf_counter()
        r = next(stream, None)
        if r is None:
            break
        i = mine[r.index]
        if r.image is None:
            out[i] = {"image": dataset.records[i].path, "detections": []}
            bar.update(1)
            continue
        pending.append((i, r.image, time.perf_counter() - t0))  # load: the time waited for the image
        if len(pending) >= max(1, batch):
            finish()
    if pending:
        finish()
    bar.close()
    reads.report()
    result = dict(all_gather_list(list(out.items())))
    return dataset, [result[i] for i in range(len(dataset))]
