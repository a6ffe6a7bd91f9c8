"""detector.proposal_cache under torchrun-like process groups (2 gloo processes): every image
computed exactly once across ranks, a dead rank named in one error within the (short) stale
time with its files whole, a full disk, settings sharing a cache folder, the lazy sequence."""

import errno
import json
import os
import pickle
import socket
import time

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from backbone.errors import UserError
from detector.engine.devices import rank_sync
from detector.proposal_cache import CachedProposals
from proposals.config import ProposalConfig

import detector.proposal_cache as runner

N = 7


class _Rec:
    def __init__(self, path):
        self.path = path


class _Set:
    def __init__(self, folder):
        self.root = ""
        self.records = [_Rec(os.path.join(folder, f"im{i}.png")) for i in range(N)]


def _images(folder):
    os.makedirs(folder, exist_ok=True)
    for i in range(N):
        Image.fromarray(np.full((8 + i, 10, 3), 20 * i, np.uint8)).save(os.path.join(folder, f"im{i}.png"))
    return _Set(folder)


def fake_boxes(image, superpixel_scale=1.0, **_):
    """Cheap, deterministic: depends on the image (height) and the settings."""
    h = image.shape[0]
    return np.array([[0, 0, h, h * superpixel_scale], [1, 1, 2, 2]], np.float32)


def _cfg(**kw):
    kw.setdefault("superpixel_scale", 1.0)
    return ProposalConfig(method="ss", working_width=0, **kw)


def _worker(rank, world, port, folder, cache, log, die_at, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    done = []

    def ss(image, **kw):
        if rank == die_at and done:
            os._exit(3)  # killed mid-way, after one whole file
        done.append(1)
        with open(log, "a") as f:
            f.write(f"{rank} {image.shape[0]}\n")
        time.sleep(0.05)
        return fake_boxes(image, **kw)

    runner.selective_search = ss
    result = {"rank": rank}
    try:
        props = runner.ensure_proposals(_Set(folder), _cfg(), cache_dir=cache, workers=1,
                                        sync=rank_sync("test", beat=0.3), stale_after=3.0)
        result["boxes"] = [props[i].tolist() for i in range(len(props))]
    except UserError as e:
        result["error"] = str(e)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    os._exit(0)  # no teardown of a group whose peer may be gone


def _run(tmp_path, die_at=-1):
    folder, cache, log = str(tmp_path / "img"), str(tmp_path / "cache"), str(tmp_path / "log")
    _images(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # the modules are imported already: no ~2.5 s import per rank
    procs = [ctx.Process(target=_worker, args=(r, 2, port, folder, cache, log, die_at, str(tmp_path)))
             for r in range(2)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode is not None for p in procs), "a rank hung"
    res = {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)
           if (tmp_path / f"rank{r}.json").exists()}
    lines = open(log).read().split() if os.path.exists(log) else []
    return res, list(zip(lines[::2], lines[1::2])), time.monotonic() - t0, cache


def test_two_ranks_compute_every_image_once(tmp_path):
    res, log, _, cache = _run(tmp_path)
    assert sorted(int(h) for _, h in log) == [8 + i for i in range(N)]     # each image once ...
    assert {r for r, _ in log} == {"0", "1"}                                # ... shared by both ranks
    files = [f for d in os.listdir(os.path.join(cache, "proposals")) for f in os.listdir(os.path.join(cache, "proposals", d))]
    assert sum(f.endswith(".npz") for f in files) == N and not any(f.endswith(".tmp") for f in files)
    want = [fake_boxes(np.zeros((8 + i, 10, 3))).tolist() for i in range(N)]
    assert res[0]["boxes"] == want and res[1]["boxes"] == want               # both ranks read all of them


def test_a_dead_rank_is_named_and_its_files_are_whole(tmp_path):
    res, log, seconds, cache = _run(tmp_path, die_at=1)
    assert 1 not in res and "rank 1 stopped" in res[0]["error"] and "\n" not in res[0]["error"]
    assert seconds < 30
    folder = os.path.join(cache, "proposals", os.listdir(os.path.join(cache, "proposals"))[0])
    npz = [f for f in os.listdir(folder) if f.endswith(".npz")]
    assert len(npz) == len(log) < N and not any(f.endswith(".tmp") for f in os.listdir(folder))
    for f in npz:  # whole: they load, and a second run (one process) keeps them and does the rest
        assert np.load(os.path.join(folder, f))["boxes"].shape == (2, 4)
    before = {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in npz}
    calls = []
    runner_ss, runner.selective_search = runner.selective_search, lambda im, **k: calls.append(1) or fake_boxes(im, **k)
    try:
        props = runner.ensure_proposals(_Set(str(tmp_path / "img")), _cfg(), cache_dir=cache, workers=1)
    finally:
        runner.selective_search = runner_ss
    assert len(calls) == N - len(npz) and len(props) == N
    assert all(os.stat(os.path.join(folder, f)).st_mtime_ns == t for f, t in before.items())


def test_full_disk_is_one_error_and_no_half_file(tmp_path, monkeypatch):
    ds = _images(str(tmp_path / "img"))
    monkeypatch.setattr(runner, "selective_search", fake_boxes)
    real = np.savez

    def full(f, **arrays):
        f.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner.np, "savez", full)
    with pytest.raises(UserError, match="No space left on device") as e:
        runner.ensure_proposals(ds, _cfg(), cache_dir=str(tmp_path / "c"), workers=1)
    assert "\n" not in str(e.value)
    left = [f for _, _, fs in os.walk(tmp_path / "c" / "proposals") for f in fs if f != "settings.json"]
    assert left == []  # nothing half-written, nothing taken for a result
    monkeypatch.setattr(runner.np, "savez", real)  # space again: computed, not read from a stub
    assert len(runner.ensure_proposals(ds, _cfg(), cache_dir=str(tmp_path / "c"), workers=1)) == N


def test_settings_sharing_a_cache_folder_do_not_mix(tmp_path, monkeypatch):
    ds = _images(str(tmp_path / "img"))
    monkeypatch.setattr(runner, "selective_search", fake_boxes)
    a = runner.ensure_proposals(ds, _cfg(superpixel_scale=1.0), cache_dir=str(tmp_path / "c"), workers=1)
    b = runner.ensure_proposals(ds, _cfg(superpixel_scale=2.0), cache_dir=str(tmp_path / "c"), workers=1)
    assert len(os.listdir(tmp_path / "c" / "proposals")) == 2 and len({p.paths[0].split(os.sep)[-2] for p in (a, b)}) == 2
    assert a[0][0, 3] * 2 == b[0][0, 3]


def test_lazy_sequence_equals_the_eager_list(tmp_path, monkeypatch):
    ds = _images(str(tmp_path / "img"))
    monkeypatch.setattr(runner, "selective_search", fake_boxes)
    props, secs = runner.ensure_proposals(ds, _cfg(), cache_dir=str(tmp_path / "c"), workers=1, with_seconds=True)
    eager = [fake_boxes(np.zeros((8 + i, 10, 3))) for i in range(N)]
    assert isinstance(props, CachedProposals) and len(props) == len(secs) == N
    assert all(np.array_equal(p, e) and p.dtype == np.float32 for p, e in zip(props, eager))
    assert np.array_equal(props[-1], eager[-1]) and len(props[2:4]) == 2 and all(s >= 0 for s in secs)
    props[0][:] = -1  # a copy: the cached boxes are not changed by a caller
    assert np.array_equal(props[0], eager[0])
    again = pickle.loads(pickle.dumps(props))
    assert again.paths == props.paths and np.array_equal(again[3], eager[3])
    with pytest.raises(IndexError):
        props[N]
    os.remove(props.paths[1])
    with pytest.raises(UserError, match="missing or damaged"):
        again[1]
    assert len(props._lru) <= props.keep
