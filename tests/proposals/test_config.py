"""proposals.config: the proposal and MultiBox settings declared and checked; the method parsed."""

from __future__ import annotations

import pytest

from backbone import NETWORKS
from backbone.config import apply_overrides, check_config, describe, from_dict
from backbone.errors import UserError
from proposals import pipeline
from proposals.config import METHODS, MultiBoxConfig, ProposalConfig
from proposals.selective_search import BACKENDS, PRESETS
from tests.backbone.test_config import declared_fields, uncovered_rules


def _err(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


SCHEMA = [
    "proposals.method: str one of ss|multibox|ss+multibox|trunk",
    "proposals.backend: str one of ours|selectivesearch",
    "proposals.preset: str one of single|fast|quality|opencv_fast",
    "proposals.superpixel_scale: number > 0",
    "proposals.working_width: int in [0, 2000]",
    "proposals.min_box_width: number >= 0",
    "proposals.max_boxes: int in [1, 100000], or null",
    "proposals.multibox_top_k: int in [1, 10000]",
    "proposals.multibox_checkpoint: str or null",
    "proposals.merge_iou: number in [0, 1]",
    "proposals.max_total: int in [1, 100000], or null",
    "proposals.multibox.arch: str one of googlenet|googlenet_bn|inception_v3",
    "proposals.multibox.input_size: int in [1, 1024]",
    "proposals.multibox.num_priors: int in [1, 10000]",
    "proposals.multibox.alpha: number >= 0",
    "proposals.multibox.matching: str one of bipartite|greedy",
    "proposals.multibox.epochs: int >= 1",
    "proposals.multibox.batch_size: int in [1, 4096]",
    "proposals.multibox.optimizer: str one of adam|sgd",
    "proposals.multibox.lr: number > 0",
    "proposals.multibox.momentum: number in [0, 1)",
    "proposals.multibox.weight_decay: number >= 0",
    "proposals.multibox.flip: bool",
    "proposals.multibox.vflip: bool",
    "proposals.multibox.seed: int >= 0",
    "proposals.trunk.num_priors: int in [1, 64]",
    "proposals.trunk.priors: list[list] or null",
    "proposals.trunk.matching: str one of iou|bipartite",
    "proposals.trunk.fg_iou: number in (0, 1]",
    "proposals.trunk.bg_iou: number in [0, 1)",
    "proposals.trunk.batch_size: int in [1, 100000]",
    "proposals.trunk.positive_fraction: number in (0, 1]",
    "proposals.trunk.alpha: number >= 0",
    "proposals.trunk.pre_nms: int in [1, 100000]",
    "proposals.trunk.nms_iou: number in (0, 1]",
    "proposals.trunk.train_nms_iou: number in (0, 1]",
    "proposals.trunk.mix_ss: bool",
    "proposals.trunk.loss_weight: number >= 0",
    "proposals.trunk.ensemble: str one of union|first",
]


def test_schema_declarations():
    """Each key's type and rule. A new setting is declared with backbone.config.setting and
    listed here."""
    assert describe(ProposalConfig, "proposals.") == SCHEMA


def test_every_field_is_declared():
    plain = [key for key, _, rules in declared_fields(ProposalConfig) if rules is None]
    assert not plain, f"declare these with backbone.config.setting: {plain}"


def test_choices_are_the_implementations():
    f = {k: r for k, _, r in declared_fields(ProposalConfig)}
    assert f["method"].choices == METHODS and pipeline.METHODS is METHODS
    assert f["backend"].choices == BACKENDS and f["preset"].choices == tuple(PRESETS)
    assert f["multibox.arch"].choices == tuple(NETWORKS)


# one value breaking each declared rule (the next test checks that every rule has one)
RULES = [
    ('method=nope', "method must be one of ss, multibox, ss+multibox, trunk, got 'nope'"),
    ('backend=nope', "backend must be one of ours, selectivesearch, got 'nope'"),
    ('preset=nope', "preset must be one of single, fast, quality, opencv_fast, got 'nope'"),
    ('superpixel_scale=0.0', 'superpixel_scale must be > 0, got 0.0'),
    ('working_width=-1', 'working_width must be in [0, 2000], got -1'),
    ('working_width=2001', 'working_width must be in [0, 2000], got 2001'),
    ('min_box_width=-0.5', 'min_box_width must be >= 0, got -0.5'),
    ('max_boxes=0', 'max_boxes must be in [1, 100000] or null, got 0'),
    ('max_boxes=100001', 'max_boxes must be in [1, 100000] or null, got 100001'),
    ('multibox_top_k=0', 'multibox_top_k must be in [1, 10000], got 0'),
    ('multibox_top_k=10001', 'multibox_top_k must be in [1, 10000], got 10001'),
    ('merge_iou=-0.5', 'merge_iou must be in [0, 1], got -0.5'),
    ('merge_iou=1.5', 'merge_iou must be in [0, 1], got 1.5'),
    ('max_total=0', 'max_total must be in [1, 100000] or null, got 0'),
    ('max_total=100001', 'max_total must be in [1, 100000] or null, got 100001'),
    ('multibox.arch=nope', "multibox.arch must be one of googlenet, googlenet_bn, inception_v3, got 'nope'"),
    ('multibox.input_size=0', 'multibox.input_size must be in [1, 1024], got 0'),
    ('multibox.input_size=1025', 'multibox.input_size must be in [1, 1024], got 1025'),
    ('multibox.num_priors=0', 'multibox.num_priors must be in [1, 10000], got 0'),
    ('multibox.num_priors=10001', 'multibox.num_priors must be in [1, 10000], got 10001'),
    ('multibox.alpha=-0.5', 'multibox.alpha must be >= 0, got -0.5'),
    ('multibox.matching=nope', "multibox.matching must be one of bipartite, greedy, got 'nope'"),
    ('multibox.epochs=0', 'multibox.epochs must be >= 1, got 0'),
    ('multibox.batch_size=0', 'multibox.batch_size must be in [1, 4096], got 0'),
    ('multibox.batch_size=4097', 'multibox.batch_size must be in [1, 4096], got 4097'),
    ('multibox.optimizer=nope', "multibox.optimizer must be one of adam, sgd, got 'nope'"),
    ('multibox.lr=0.0', 'multibox.lr must be > 0, got 0.0'),
    ('multibox.momentum=-0.5', 'multibox.momentum must be in [0, 1), got -0.5'),
    ('multibox.momentum=1.0', 'multibox.momentum must be in [0, 1), got 1.0'),
    ('multibox.weight_decay=-0.5', 'multibox.weight_decay must be >= 0, got -0.5'),
    ('multibox.seed=-1', 'multibox.seed must be >= 0, got -1'),
    ('trunk.num_priors=0', 'trunk.num_priors must be in [1, 64], got 0'),
    ('trunk.num_priors=65', 'trunk.num_priors must be in [1, 64], got 65'),
    ('trunk.matching=nope', "trunk.matching must be one of iou, bipartite, got 'nope'"),
    ('trunk.fg_iou=0.0', 'trunk.fg_iou must be in (0, 1], got 0.0'),
    ('trunk.fg_iou=1.5', 'trunk.fg_iou must be in (0, 1], got 1.5'),
    ('trunk.bg_iou=-0.5', 'trunk.bg_iou must be in [0, 1), got -0.5'),
    ('trunk.bg_iou=1.0', 'trunk.bg_iou must be in [0, 1), got 1.0'),
    ('trunk.batch_size=0', 'trunk.batch_size must be in [1, 100000], got 0'),
    ('trunk.batch_size=100001', 'trunk.batch_size must be in [1, 100000], got 100001'),
    ('trunk.positive_fraction=0.0', 'trunk.positive_fraction must be in (0, 1], got 0.0'),
    ('trunk.positive_fraction=1.5', 'trunk.positive_fraction must be in (0, 1], got 1.5'),
    ('trunk.alpha=-0.5', 'trunk.alpha must be >= 0, got -0.5'),
    ('trunk.pre_nms=0', 'trunk.pre_nms must be in [1, 100000], got 0'),
    ('trunk.pre_nms=100001', 'trunk.pre_nms must be in [1, 100000], got 100001'),
    ('trunk.nms_iou=0.0', 'trunk.nms_iou must be in (0, 1], got 0.0'),
    ('trunk.nms_iou=1.5', 'trunk.nms_iou must be in (0, 1], got 1.5'),
    ('trunk.train_nms_iou=0.0', 'trunk.train_nms_iou must be in (0, 1], got 0.0'),
    ('trunk.train_nms_iou=1.5', 'trunk.train_nms_iou must be in (0, 1], got 1.5'),
    ('trunk.loss_weight=-0.5', 'trunk.loss_weight must be >= 0, got -0.5'),
    ('trunk.ensemble=nope', "trunk.ensemble must be one of union, first, got 'nope'"),
]


@pytest.mark.parametrize("item,problem", RULES, ids=[r[0] for r in RULES])
def test_each_rule_refuses_a_value_breaking_it(item, problem):
    assert _err(apply_overrides, ProposalConfig(), [item]) == f"--set {item}: {problem}"
    # inside a detector config the keys carry the section
    from detector.config import DetectorConfig

    assert _err(apply_overrides, DetectorConfig(), ["proposals." + item]) == f"--set proposals.{item}: proposals.{problem}"


def test_every_declared_rule_has_a_case():
    assert uncovered_rules(ProposalConfig, [r[0] for r in RULES]) == []


def test_defaults_and_sentinels_pass():
    check_config(ProposalConfig())
    cfg = from_dict(ProposalConfig, {"max_boxes": None, "max_total": None, "working_width": 0, "min_box_width": 0,
                                     "merge_iou": 1, "multibox": {"alpha": 0, "momentum": 0}})
    assert cfg.max_total is None and cfg.merge_iou == 1.0


@pytest.mark.parametrize("method,ss,mb,trunk", [("ss", True, False, False), ("multibox", False, True, False),
                                                ("ss+multibox", True, True, False), ("trunk", False, False, True)])
def test_the_method_parsed(method, ss, mb, trunk):
    cfg = ProposalConfig(method=method)
    assert (cfg.uses_ss, cfg.uses_multibox, cfg.uses_trunk) == (ss, mb, trunk)


def test_multibox_input_size_fits_its_network():
    assert _err(from_dict, MultiBoxConfig, {"input_size": 14}, prefix="proposals.multibox.") == (
        "config: proposals.multibox.input_size 14: proposals.multibox.arch googlenet_bn needs at least 15 px")
    assert "needs at least 31 px" in _err(apply_overrides, ProposalConfig(),
                                          ["multibox.arch=googlenet", "multibox.input_size=30"])
    from_dict(MultiBoxConfig, {"arch": "inception_v3", "input_size": 75})  # no aux head in MultiBox


@pytest.mark.parametrize("changes,expected", [
    ({"method": "edgeboxes"}, "proposals.method must be one of ss, multibox, ss+multibox, trunk, got 'edgeboxes'"),
    ({"max_total": 0}, "proposals.max_total must be in [1, 100000] or null, got 0"),
    ({"max_total": -3}, "proposals.max_total must be in [1, 100000] or null, got -3"),
    ({"max_total": 2.5}, "proposals.max_total must be an integer or null, got 2.5"),
    ({"max_total": "ten"}, "proposals.max_total must be an integer or null, got 'ten'"),
    ({"max_total": True}, "proposals.max_total must be an integer or null, got true"),
    ({"superpixel_scale": 0}, "proposals.superpixel_scale must be > 0, got 0"),
    ({"preset": "slow"}, "proposals.preset must be one of single, fast, quality, opencv_fast, got 'slow'"),
])
def test_pipeline_validate_checks_configs_built_in_code(changes, expected):
    """What ``propose``, the proposal cache and the propose CLI's flags go through."""
    assert _err(pipeline.validate, ProposalConfig(**changes)) == expected
    pipeline.validate(ProposalConfig(max_total=10))
    import numpy as np

    pipeline.validate(ProposalConfig(max_total=np.int64(10)))
