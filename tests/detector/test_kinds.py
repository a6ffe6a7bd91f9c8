"""Conformance: every detector kind of ``detector.kinds.KINDS`` meets the
:class:`detector.kinds.DetectorKind` contract, and is run through it (build, batch, forward,
loss, parameter groups, proposals, scoring); the ensemble's two-phase form gives the one-pass
average."""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest
import torch

from backbone.config import apply_overrides
from detector.batching import BatcherBase
from detector.ensemble import Ensemble
from detector.io.datasets import load_dataset
from detector.kinds import KINDS, Batcher, DetectorKind, kind_of
from detector.transforms import to_tensor_image
from tests.detector.fast.test_kind import FAST
from tests.detector.helpers import jittered_proposals, tiny_config

C = 3
#: the contract's members (what the engine and Detector call as ``kind.X``)
MEMBERS = ["RegionBatcher", "build_member", "forward", "region_loss", "param_groups", "propose", "score_regions"]


@pytest.fixture(scope="module")
def mini(test_data):
    return test_data / "voc-mini"


def _config(kind: str, root):
    cfg = tiny_config(root)
    return apply_overrides(cfg, FAST) if kind == "fast" else cfg


def _protocol_params(name: str) -> list[str]:
    return [p for p in inspect.signature(getattr(DetectorKind, name)).parameters if p != "self"]


def test_the_protocol_names_what_the_engine_and_detector_call():
    declared = {n for n in dir(DetectorKind) if not n.startswith("_")} | set(DetectorKind.__annotations__)
    assert declared == set(MEMBERS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_meets_the_protocol(name):
    kind = KINDS[name]
    assert isinstance(kind, DetectorKind)
    assert issubclass(kind.RegionBatcher, BatcherBase)  # one shared batcher base
    for member in MEMBERS:
        if member == "RegionBatcher":
            continue
        params = inspect.signature(getattr(kind, member)).parameters
        want = _protocol_params(member)
        got = list(params)
        assert got[:len(want)] == want, f"{name}.{member}{got}: not the contract's parameters {want}"
        extra = [p for p in got[len(want):] if params[p].default is inspect.Parameter.empty]
        assert not extra, f"{name}.{member}: parameters beyond the contract's without a default: {extra}"


def test_a_kind_missing_a_name_does_not_meet_the_protocol():
    partial = types.SimpleNamespace(**{m: getattr(KINDS["rcnn"], m) for m in MEMBERS if m != "propose"})
    assert not isinstance(partial, DetectorKind)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_runs_through_the_protocol(name, mini):
    cfg = _config(name, mini)
    kind: DetectorKind = kind_of(cfg)
    assert kind is KINDS[name]
    a, b = kind.build_member(cfg, C, 3), kind.build_member(cfg, C, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    train = load_dataset(cfg.data, "train")
    props = jittered_proposals(train)
    batcher = kind.RegionBatcher(cfg, train, props, torch.device("cpu"))
    assert isinstance(batcher, Batcher) and batcher.notes == []
    batch = batcher.batch([0, 1], torch.Generator().manual_seed(0))
    batch = batch.pin_memory().to("cpu") if torch.cuda.is_available() else batch.to("cpu")
    a.train()
    out = kind.forward(a, batch)
    loss, parts = kind.region_loss(out, batch, cfg)
    assert loss.dim() == 0 and torch.isfinite(loss) and "cls" in parts
    loss.backward()
    groups = kind.param_groups(a, cfg)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in a.parameters() if p.requires_grad) and len(set(ids)) == len(ids)

    members = [kind.build_member(cfg, C, s, inference=True).eval() for s in (1, 2)]
    ensemble = Ensemble(members).eval()
    image = np.asarray(batcher.image(0))
    assert kind.propose(ensemble, cfg, image, torch.device("cpu")) is None  # the configured proposals are used
    boxes = torch.as_tensor(props[0][:7])
    times = {}
    probs, deltas = kind.score_regions(ensemble, cfg, image, boxes, torch.device("cpu"), times)
    assert probs.shape == (7, C + 1) and torch.allclose(probs.sum(1), torch.ones(7))
    assert deltas is None or deltas.shape == (7, C, 4)
    assert times and all(v >= 0 for v in times.values())
    assert kind.score_regions(ensemble, cfg, image, torch.zeros((0, 4)), torch.device("cpu")) == (None, None)


def test_the_two_phase_ensemble_is_the_one_pass_average(mini):
    cfg = _config("fast", mini)
    kind = kind_of(cfg)
    ensemble = Ensemble([kind.build_member(cfg, C, s).eval() for s in (1, 2)]).eval()
    image = to_tensor_image(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))[None]
    boxes = [torch.tensor([[4.0, 5.0, 60.0, 70.0], [10.0, 0.0, 119.0, 89.0], [0.0, 0.0, 8.0, 8.0]])]
    one_p, one_d = ensemble(image, boxes)
    two_p, two_d = ensemble.head(ensemble.features(image), boxes)
    assert torch.equal(one_p, two_p) and torch.equal(one_d, two_d)
    assert torch.allclose(two_p.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="1 feature sets for 2 members"):
        ensemble.head(ensemble.features(image)[:1], boxes)
