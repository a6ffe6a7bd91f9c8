"""Devices and torch.distributed glue: ``--device auto``, and the same commands on one process
or under ``torchrun`` (gloo on CPUs, NCCL on GPUs)."""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid

import torch
import torch.distributed as dist

from backbone.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (use auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UserError(f"--device {name}: this machine has {n} CUDA device{'s' if n != 1 else ''} "
                            f"({', '.join(f'cuda:{i}' for i in range(n))})")
        return dev
    # mps, xpu, ...: the backend's own is_available (meta and the like have none: no device to run on)
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        raise UserError(f"--device {name}: not available on this machine or in this PyTorch build "
                        "(use auto, cpu, cuda, cuda:N)")
    return dev


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Initialise the process group when launched by torchrun; return (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist_info()


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return dist_info()[0] == 0


def barrier() -> None:
    if dist_info()[1] > 1:
        dist.barrier()


def all_gather_list(items: list) -> list:
    """Concatenate every rank's list (picklable objects) on every rank."""
    _rank, world = dist_info()
    if world == 1:
        return list(items)
    parts = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def broadcast_object(obj, src: int = 0):
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class RankSync:
    """Ranks agreeing on the end of a long job that each does its share of, without one long
    barrier: every rank sets its state (``done`` or ``failed: message``) in a key-value store
    and a heartbeat counter (a thread adds to it every ``beat`` seconds); a waiting rank polls
    them (:meth:`wait`), so a rank that failed, died or hung is named in one clear error
    instead of a collective waiting until the process group's timeout (30 min with gloo).

    The store is a public :class:`torch.distributed.TCPStore` client of the store torchrun
    (or ``init_process_group(init_method="env://")``) serves at ``MASTER_ADDR:MASTER_PORT``,
    under a prefix rank 0 broadcasts, so runs and restarts never read each other's keys. A
    collective (``all_reduce`` of counts) could not notice a dead rank before the process
    group's timeout, ``monitored_barrier`` is gloo-only and the process group's own store is
    private (``_get_default_store``). Made by :func:`rank_sync`."""

    def __init__(self, store_factory, rank: int, world: int, beat: float = 2.0):
        self.rank, self.world, self.beat = rank, world, beat
        self._factory = store_factory
        self._store = self._call(store_factory)
        self._stop = threading.Event()
        self._thread = None

    def _call(self, fn, *a):
        try:
            return fn(*a)
        except (RuntimeError, OSError) as e:  # torch.distributed.DistError is a RuntimeError
            raise UserError(f"rank {self.rank}: lost the process group's store ({str(e).splitlines()[0]}); "
                            "another process of this run stopped") from None

    def start_heartbeat(self) -> None:
        """Start the heartbeat thread (after forking worker processes: a fork copies no thread)."""
        if self._thread is not None:
            return
        own = self._call(self._factory)  # a client of its own: the thread never shares one

        def run():
            while not self._stop.is_set():
                try:
                    own.add(f"beat/{self.rank}", 1)
                except (RuntimeError, OSError):
                    return  # the store is gone: wait() reports it
                self._stop.wait(self.beat)

        self._thread = threading.Thread(target=run, name="rank-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def set_state(self, state: str) -> None:
        """``done``, or ``failed: <message>``."""
        self._call(self._store.set, f"state/{self.rank}", state)

    def states(self) -> dict[int, str]:
        keys = [f"state/{r}" for r in range(self.world)]
        return {r: self._call(self._store.get, k).decode() for r, k in enumerate(keys)
                if self._call(self._store.check, [k])}

    def beats(self) -> list[int]:
        return [self._call(self._store.add, f"beat/{r}", 0) for r in range(self.world)]

    def wait(self, what: str, timeout: float, stale_after: float, poll: float = 1.0, on_poll=None) -> None:
        """Until every rank set ``done``. :class:`UserError` naming the rank when one failed,
        its heartbeat stopped for ``stale_after`` seconds, or ``timeout`` seconds passed.
        ``on_poll()`` is called every ``poll`` seconds (e.g. to update a progress bar)."""
        t0 = time.monotonic()
        last = self.beats()
        seen = [t0] * self.world
        while True:
            states = self.states()
            for r, s in sorted(states.items()):
                if s.startswith("failed"):
                    raise UserError(f"{what}: rank {r} {s}")
            if len(states) == self.world:
                # rank 0 may host the store (init_method env://): it leaves last
                seen = self._call(self._store.add, "seen", 1)
                while self.rank == 0 and seen < self.world and time.monotonic() - t0 <= timeout:
                    time.sleep(min(poll, 0.2))
                    seen = self._call(self._store.add, "seen", 0)
                return
            now = time.monotonic()
            for r, b in enumerate(self.beats()):
                if b != last[r]:
                    last[r], seen[r] = b, now
                elif r not in states and now - seen[r] > stale_after:
                    raise UserError(f"{what}: rank {r} stopped (no heartbeat for {now - seen[r]:.0f} s); "
                                    "the files written so far are whole and kept: run again to resume")
            if now - t0 > timeout:
                late = [r for r in range(self.world) if r not in states]
                raise UserError(f"{what}: rank(s) {', '.join(map(str, late))} not done after {timeout:.0f} s")
            if on_poll is not None:
                on_poll()
            time.sleep(poll)


def rank_sync(name: str, beat: float = 2.0) -> RankSync | None:
    """A :class:`RankSync` of every rank (a collective: every rank calls it, in the same order),
    or None on one process."""
    rank, world = dist_info()
    if world == 1:
        return None
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port:
        raise UserError("torch.distributed without MASTER_ADDR / MASTER_PORT: launch with torchrun")
    prefix = broadcast_object(f"{name}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{uuid.uuid4().hex}/")

    def factory():
        client = dist.TCPStore(host, int(port), world_size=None, is_master=False,
                               timeout=datetime.timedelta(seconds=60))
        return dist.PrefixStore(prefix, client)

    return RankSync(factory, rank, world, beat)
