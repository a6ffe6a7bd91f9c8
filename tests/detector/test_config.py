"""detector.config: every detector and classifier setting declared with its type and range, and
checked when a config is loaded (YAML, --set, a checkpoint's config), one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.config import apply_overrides, check_config, describe, from_dict, to_dict
from backbone.errors import UserError
from detector.config import (
    ClassifierConfig, DetectorConfig, load_classifier_config, load_detector_config, validate_config,
)
from tests.backbone.test_config import declared_fields, uncovered_rules

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
BCCD = str(ROOT / "configs" / "bccd.yaml")
BCCD_CLS = str(ROOT / "configs" / "bccd_classifier.yaml")


def _err(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- what loads -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads(path):
    cfg = (load_classifier_config if "classifier" in path.name else load_detector_config)(str(path))
    check_config(cfg)


def test_bundled_checkpoint_config_loads():
    from detector.io.checkpoints import load_detector

    path = ROOT / "detector" / "assets" / "bccd_default.pt"
    cfg = from_dict(DetectorConfig, load_detector(str(path))["config"], source=f"model {path}")
    assert cfg.model.members >= 1 and cfg.test.members == 0


def test_defaults_pass():
    check_config(DetectorConfig())
    check_config(ClassifierConfig())
    validate_config(ClassifierConfig())


def test_zero_and_null_sentinels_load():
    cfg = load_detector_config(BCCD, [
        "test.members=0", "train.val_every=0", "train.val_images=0", "train.clip_grad_norm=0", "train.warmup_steps=0",
        "train.cache_images=0", "train.bg_iou_low=0", "train.lr_steps=[]", "proposals.max_boxes=null",
        "proposals.max_total=null", "proposals.working_width=0", "proposals.min_box_width=0",
        "proposals.multibox_checkpoint=null", "model.rcnn.context_pad=0", "model.transform_input=null", "data.classes=null",
        "test.score_thr=0", "test.nms_iou=1", "proposals.merge_iou=1", "train.fg_fraction=1",
    ])
    assert (cfg.test.members, cfg.train.val_every, cfg.train.val_images, cfg.train.clip_grad_norm,
            cfg.train.warmup_steps, cfg.proposals.max_boxes, cfg.proposals.max_total) == (0, 0, 0, 0.0, 0, None, None)
    cls = load_classifier_config(BCCD_CLS, ["train.val_every=0", "train.workers=0", "train.warmup_epochs=0",
                                            "crops.margin=0", "crops.min_size=0", "model.dropout=0",
                                            "train.max_steps_per_epoch=null", "train.polyak_decay=0",
                                            "data.format=imagefolder", "data.val_split=''"])  # no validation
    assert cls.data.format == "imagefolder" and cls.train.val_every == 0 and cls.data.val_split == ""


# -- hostile input: one line naming the key, before any work ----------------------------------

DETECTOR_BAD = [
    ("train.lr=abc", "train.lr must be a number, got 'abc'"),
    ("train.workers=-1", "train.workers must be >= 0, got -1"),
    ("train.max_steps=-1", "train.max_steps must be >= 0, got -1"),
    ("train.checkpoint_every=-2", "train.checkpoint_every must be >= 0, got -2"),
    ("train.reference_world_size=0", "train.reference_world_size must be >= 1, got 0"),
    ("test.score_thr=abc", "test.score_thr must be a number, got 'abc'"),
    ("model.rcnn.input_size=8", "model.rcnn.input_size 8: model.arch googlenet_bn needs at least 15 px"),
    ("model.arch=inception_v3", "model.rcnn.input_size 64: model.arch inception_v3 needs at least 75 px"),
    ("test.max_per_image=-1", "test.max_per_image must be in [1, 100000], got -1"),
    ("test.max_per_image=0", "test.max_per_image must be in [1, 100000], got 0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("model.members=0", "model.members must be in [1, 100], got 0"),
    ("model.members=-1", "model.members must be in [1, 100], got -1"),
    ("train.batch_size=0", "train.batch_size must be in [1, 4096], got 0"),
    ("test.nms_iou=5", "test.nms_iou must be in [0, 1], got 5"),
    ("train.lr=.nan", "train.lr must be a finite number, got nan"),
    ("train.lr=nan", "train.lr must be a finite number, got 'nan'"),
    ("test.score_thr=.inf", "test.score_thr must be a finite number, got inf"),
    ("train.epochs=true", "train.epochs must be an integer, got true"),
    ("model.members=2.5", "model.members must be an integer, got 2.5"),
    ("test.members=-1", "test.members must be in [0, 100], got -1"),
    ("model.rcnn.context_pad=112", "model.rcnn.context_pad must be in [0, 112), got 112"),
    ("train.lr_steps=[6,3]", "train.lr_steps must be in increasing order, got [6, 3]"),
    ("train.lr_steps=[0]", "train.lr_steps[0] must be >= 1, got 0"),
    ("train.bg_iou_low=0.5", "train.bg_iou_low must be below train.fg_iou (0.5), got 0.5"),
    ("train.fg_iou=0", "train.fg_iou must be in (0, 1], got 0"),
    ("train.momentum=1", "train.momentum must be in [0, 1), got 1"),
    ("test.protocol=pascal", "test.protocol must be one of ilsvrc, voc07, voc, coco, got 'pascal'"),
    ("data.format=darknet", "data.format must be one of auto, voc, ilsvrc, voc_xml, yolo, coco, folder, imagefolder, got 'darknet'"),
    ("data.format=imagefolder",
     "data.format must be one of auto, voc, ilsvrc, voc_xml, yolo, coco, folder for a detector, got 'imagefolder' "
     "(imagefolder is for train-classifier)"),
    ("data.classes=[RBC,RBC]", "data.classes must name each class once, got 'RBC' twice"),
    ("data.classes=[RBC,' ']", "data.classes must not hold an empty name, got ['RBC', ' ']"),
    ("data.classes=[]", "data.classes must not be empty, got []"),
    ("model.aux_logits=maybe", "model.aux_logits must be true or false, got 'maybe'"),
    ("train=5", "train must be a mapping, got 5"),
    ("proposals.method=edgeboxes", "proposals.method must be one of ss, multibox, ss+multibox, trunk, got 'edgeboxes'"),
    ("proposals.multibox.matching=auction",
     "proposals.multibox.matching must be one of bipartite, greedy, got 'auction'"),
]


@pytest.mark.parametrize("item,problem", DETECTOR_BAD, ids=[b[0] for b in DETECTOR_BAD])
def test_bad_detector_settings_are_one_line(item, problem):
    assert _err(load_detector_config, BCCD, [item]) == f"--set {item}: {problem}"


CLASSIFIER_BAD = [
    ("model.input_size=8", "model.input_size 8: model.arch googlenet needs at least 31 px"),
    ("model.arch=inception_v3", "model.input_size 32: model.arch inception_v3 needs at least 75 px"),
    ("train.min_area=0", "train.min_area must be in (0, 1], got 0"),
    ("train.max_area=1.5", "train.max_area must be in (0, 1], got 1.5"),
    ("train.max_area=0.05", "train.min_area must be <= train.max_area (0.05), got 0.08"),
    ("train.min_aspect=2", "train.min_aspect must be <= train.max_aspect (1.3333333333333333), got 2.0"),
    ("train.polyak_decay=1", "train.polyak_decay must be in [0, 1), got 1"),
    ("train.lr=0", "train.lr must be > 0, got 0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.batch_size=0", "train.batch_size must be in [1, 4096], got 0"),
    ("train.hue=0.6", "train.hue must be in [0, 0.5], got 0.6"),
    ("model.conv_init=he", "model.conv_init must be one of default, xavier, kaiming_fan_in, got 'he'"),
    ("model.dropout=1", "model.dropout must be in [0, 1) or null, got 1"),
    ("test.crops=[1,5]", "test.crops[1] must be one of 1, 10, 144, got 5"),
    ("test.crops=[]", "test.crops must not be empty, got []"),
    ("crops.margin=-0.1", "crops.margin must be >= 0, got -0.1"),
    ("data.format=darknet", "data.format must be one of auto, voc, ilsvrc, voc_xml, yolo, coco, folder, imagefolder, got 'darknet'"),
]


@pytest.mark.parametrize("item,problem", CLASSIFIER_BAD, ids=[b[0] for b in CLASSIFIER_BAD])
def test_bad_classifier_settings_are_one_line(item, problem):
    assert _err(load_classifier_config, BCCD_CLS, [item]) == f"--set {item}: {problem}"


def test_a_cross_rule_names_every_override_behind_it():
    assert _err(load_detector_config, BCCD, ["model.rcnn.input_size=20", "model.arch=googlenet", "train.epochs=1"]) == (
        "--set model.rcnn.input_size=20, model.arch=googlenet: model.rcnn.input_size 20: model.arch googlenet needs "
        "at least 31 px")
    assert _err(load_classifier_config, BCCD_CLS, ["model.arch=inception_v3", "model.input_size=224"]) == (
        "--set model.arch=inception_v3, model.input_size=224: model.input_size 224: model.arch inception_v3 with "
        "model.aux_logits needs at least 299 px (its auxiliary head; or set model.aux_logits=false)")


def test_cross_rules_pass_where_they_should():
    load_classifier_config(BCCD_CLS, ["model.arch=inception_v3", "model.aux_logits=false", "model.input_size=75"])
    load_classifier_config(BCCD_CLS, ["model.arch=inception_v3", "model.input_size=299"])
    load_classifier_config(BCCD_CLS, ["train.min_area=1", "train.max_area=1", "train.min_aspect=1", "train.max_aspect=1"])
    load_detector_config(BCCD, ["model.rcnn.input_size=15", "train.lr_steps=[3,3,5]", "train.bg_iou_low=0.49"])


def test_bad_values_in_a_yaml_file_name_the_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("test:\n  nms_iou: 5\n")
    assert _err(load_detector_config, str(p)) == f"config {p}: test.nms_iou must be in [0, 1], got 5"
    p.write_text("model:\n  members: 0\n")
    assert _err(load_detector_config, str(p)) == f"config {p}: model.members must be in [1, 100], got 0"
    p.write_text("train:\n  min_area: 0.9\n  max_area: 0.5\n")
    assert _err(load_classifier_config, str(p)) == f"config {p}: train.min_area must be <= train.max_area (0.5), got 0.9"


def test_checkpoint_configs_are_checked():
    data = to_dict(DetectorConfig())
    data["test"]["nms_iou"] = 7
    assert _err(from_dict, DetectorConfig, data, source="model m.pt") == "model m.pt: test.nms_iou must be in [0, 1], got 7"


def test_configs_changed_in_code_are_checked():
    cfg = load_classifier_config(BCCD_CLS)
    cfg.train.lr = -1.0
    assert _err(validate_config, cfg) == "train.lr must be > 0, got -1.0"
    det = load_detector_config(BCCD)
    det.test.max_per_image = -1
    assert _err(check_config, det, source="--max-per-image") == "--max-per-image: test.max_per_image must be in [1, 100000], got -1"


@pytest.mark.parametrize("argv,expected", [
    (["--set", "train.lr=abc"], "train-detector: error: --set train.lr=abc: train.lr must be a number, got 'abc'"),
    (["--members", "0"], "train-detector: error: --set model.members=0: model.members must be in [1, 100], got 0"),
])
def test_train_detector_cli_refuses_before_any_work(tmp_path, capsys, argv, expected):
    from detector.cli.train_detector import main

    out = tmp_path / "run"
    assert main(["--config", BCCD, "--out", str(out), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [expected] and captured.out == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_train_classifier_cli_refuses_before_any_work(tmp_path, capsys):
    from detector.cli.train_classifier import main

    out = tmp_path / "run"
    assert main(["--config", BCCD_CLS, "--out", str(out), "--set", "train.batch_size=0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "train-classifier: error: --set train.batch_size=0: train.batch_size must be in [1, 4096], got 0"]
    assert list(tmp_path.iterdir()) == []


def test_train_multibox_refuses_bad_settings_before_any_work(tmp_path):
    from detector.engine.train_multibox import train_multibox

    cfg = load_detector_config(BCCD)
    cfg.proposals.multibox.optimizer = "lbfgs"
    out = tmp_path / "mb"
    assert "proposals.multibox.optimizer must be one of adam, sgd" in _err(train_multibox, cfg, str(out))
    assert not out.exists()


# -- every field declared, every declaration enforced -----------------------------------------

DETECTOR_SCHEMA = [
    "data.format: str one of auto|voc|ilsvrc|voc_xml|yolo|coco|folder|imagefolder",
    "data.root: str",
    "data.images: str or null",
    "data.classes: list[str] non-empty, or null",
    "data.classes_file: str or null",
    "data.train_split: str",
    "data.val_split: str",
    "data.test_split: str",
    "data.blacklist: str or null",
    "data.coco_annotations: str",
    "data.coco_images: str",
    "model.kind: str one of rcnn|fast",
    "model.arch: str one of googlenet|googlenet_bn|inception_v3",
    "model.rcnn.input_size: int in [1, 1024]",
    "model.rcnn.context_pad: number in [0, 112)",
    "model.fast.tap: list[str] each one of inception3a|inception3b|inception4a|inception4b|inception4c|inception4d|"
    "inception4e|inception5a|inception5b|Mixed_5b|Mixed_5c|Mixed_5d|Mixed_6a|Mixed_6b|Mixed_6c|Mixed_6d|Mixed_6e|"
    "Mixed_7a|Mixed_7b|Mixed_7c, non-empty",
    "model.fast.roi_size: int in [1, 64]",
    "model.fast.reduce_channels: int in [1, 4096]",
    "model.fast.fc_dim: int in [1, 16384]",
    "model.fast.num_fc: int in [1, 2]",
    "model.fast.fc_rank: int in [0, 4096]",
    "model.fast.norm: str one of bn|gn|none",
    "model.fast.sampling_ratio: int in [0, 16]",
    "model.fast.dropout: number in [0, 1)",
    "model.fast.min_side: int in [1, 2000]",
    "model.fast.max_side: int in [1, 2000]",
    "model.fast.chunk: int in [1, 16384]",
    "model.fast.train_crop: int in [0, 2000]",
    "model.members: int in [1, 100]",
    "model.aux_logits: bool",
    "model.init: str or null",
    "model.init_weights: str or null",
    "model.bbox_reg: bool",
    "model.transform_input: bool or null",
    "train.epochs: int >= 1",
    "train.batch_size: int in [1, 4096]",
    "train.fg_fraction: number in (0, 1]",
    "train.fg_iou: number in (0, 1]",
    "train.bg_iou_low: number in [0, 1)",
    "train.images_per_batch: int in [1, 256]",
    "train.max_proposals: int in [1, 100000]",
    "train.lr: number > 0",
    "train.momentum: number in [0, 1)",
    "train.weight_decay: number >= 0",
    "train.lr_steps: list[int] each >= 1",
    "train.lr_gamma: number in (0, 1]",
    "train.warmup_steps: int >= 0",
    "train.clip_grad_norm: number >= 0",
    "train.aux_weight: number >= 0",
    "train.bbox_weight: number >= 0",
    "train.flip: bool",
    "train.seed: int >= 0",
    "train.val_every: int >= 0",
    "train.val_images: int >= 0",
    "train.cache_images: int >= 0",
    "train.workers: int >= 0",
    "train.max_steps: int >= 0",
    "train.checkpoint_every: int >= 0",
    "train.reference_world_size: int >= 1",
    "test.protocol: str one of ilsvrc|voc07|voc|coco",
    "test.nms_iou: number in [0, 1]",
    "test.score_thr: number in [0, 1]",
    "test.max_per_image: int in [1, 100000]",
    "test.max_proposals: int in [1, 100000], or null",
    "test.batch_size: int in [1, 4096]",
    "test.members: int in [0, 100]",
    "test.bbox_reg: bool",
    "test.scales: list[int] each in [1, 2000], non-empty, or null",
]

CLASSIFIER_SCHEMA = DETECTOR_SCHEMA[:11] + [
    "crops.margin: number >= 0",
    "crops.skip_difficult: bool",
    "crops.min_size: number >= 0",
    "model.arch: str one of googlenet|googlenet_bn|inception_v3",
    "model.input_size: int in [1, 1024]",
    "model.aux_logits: bool",
    "model.dropout: number in [0, 1), or null",
    "model.init: str or null",
    "model.init_weights: str or null",
    "model.conv_init: str one of default|xavier|kaiming_fan_in",
    "train.epochs: int >= 1",
    "train.batch_size: int in [1, 4096]",
    "train.lr: number > 0",
    "train.momentum: number in [0, 1)",
    "train.weight_decay: number >= 0",
    "train.lr_gamma: number in (0, 1]",
    "train.lr_step_epochs: number > 0",
    "train.warmup_epochs: number >= 0",
    "train.aux_weight: number >= 0",
    "train.polyak_decay: number in [0, 1)",
    "train.min_area: number in (0, 1]",
    "train.max_area: number in (0, 1]",
    "train.min_aspect: number > 0",
    "train.max_aspect: number > 0",
    "train.brightness: number >= 0",
    "train.contrast: number >= 0",
    "train.saturation: number >= 0",
    "train.hue: number in [0, 0.5]",
    "train.photometric_p: number in [0, 1]",
    "train.flip: bool",
    "train.vflip: bool",
    "train.seed: int >= 0",
    "train.workers: int >= 0",
    "train.val_every: int >= 0",
    "train.max_steps_per_epoch: int >= 1, or null",
    "train.max_steps: int >= 0",
    "train.checkpoint_every: int >= 0",
    "test.crops: list[int] each one of 1|10|144, non-empty",
    "test.batch_size: int in [1, 4096]",
]


def test_detector_schema_declarations():
    """Each key's type and rule (proposals.*: tests/proposals/test_config.py). A new setting is
    declared with backbone.config.setting and listed here."""
    assert [line for line in describe(DetectorConfig) if not line.startswith("proposals.")] == DETECTOR_SCHEMA


def test_classifier_schema_declarations():
    assert describe(ClassifierConfig) == CLASSIFIER_SCHEMA


@pytest.mark.parametrize("cls", [DetectorConfig, ClassifierConfig], ids=lambda c: c.__name__)
def test_every_field_is_declared(cls):
    plain = [key for key, _, rules in declared_fields(cls) if rules is None]
    assert not plain, f"declare these with backbone.config.setting: {plain}"


# one value breaking each declared rule (the last test checks that every rule has one)
DETECTOR_RULES = [
    ('data.format=nope', "data.format must be one of auto, voc, ilsvrc, voc_xml, yolo, coco, folder, imagefolder, got 'nope'"),
    ('data.classes=[]', 'data.classes must not be empty, got []'),
    ('model.arch=nope', "model.arch must be one of googlenet, googlenet_bn, inception_v3, got 'nope'"),
    ('model.kind=nope', "model.kind must be one of rcnn, fast, got 'nope'"),
    ('model.rcnn.input_size=0', 'model.rcnn.input_size must be in [1, 1024], got 0'),
    ('model.rcnn.input_size=1025', 'model.rcnn.input_size must be in [1, 1024], got 1025'),
    ('model.rcnn.context_pad=-0.5', 'model.rcnn.context_pad must be in [0, 112), got -0.5'),
    ('model.rcnn.context_pad=112.0', 'model.rcnn.context_pad must be in [0, 112), got 112.0'),
    ('model.members=0', 'model.members must be in [1, 100], got 0'),
    ('model.members=101', 'model.members must be in [1, 100], got 101'),
    ('train.epochs=0', 'train.epochs must be >= 1, got 0'),
    ('train.batch_size=0', 'train.batch_size must be in [1, 4096], got 0'),
    ('train.batch_size=4097', 'train.batch_size must be in [1, 4096], got 4097'),
    ('train.fg_fraction=0.0', 'train.fg_fraction must be in (0, 1], got 0.0'),
    ('train.fg_fraction=1.5', 'train.fg_fraction must be in (0, 1], got 1.5'),
    ('train.fg_iou=0.0', 'train.fg_iou must be in (0, 1], got 0.0'),
    ('train.fg_iou=1.5', 'train.fg_iou must be in (0, 1], got 1.5'),
    ('train.bg_iou_low=-0.5', 'train.bg_iou_low must be in [0, 1), got -0.5'),
    ('train.bg_iou_low=1.0', 'train.bg_iou_low must be in [0, 1), got 1.0'),
    ('train.images_per_batch=0', 'train.images_per_batch must be in [1, 256], got 0'),
    ('train.images_per_batch=257', 'train.images_per_batch must be in [1, 256], got 257'),
    ('train.max_proposals=0', 'train.max_proposals must be in [1, 100000], got 0'),
    ('train.max_proposals=100001', 'train.max_proposals must be in [1, 100000], got 100001'),
    ('train.lr=0.0', 'train.lr must be > 0, got 0.0'),
    ('train.momentum=-0.5', 'train.momentum must be in [0, 1), got -0.5'),
    ('train.momentum=1.0', 'train.momentum must be in [0, 1), got 1.0'),
    ('train.weight_decay=-0.5', 'train.weight_decay must be >= 0, got -0.5'),
    ('train.lr_steps=[0]', 'train.lr_steps[0] must be >= 1, got 0'),
    ('train.lr_gamma=0.0', 'train.lr_gamma must be in (0, 1], got 0.0'),
    ('train.lr_gamma=1.5', 'train.lr_gamma must be in (0, 1], got 1.5'),
    ('train.warmup_steps=-1', 'train.warmup_steps must be >= 0, got -1'),
    ('train.clip_grad_norm=-0.5', 'train.clip_grad_norm must be >= 0, got -0.5'),
    ('train.aux_weight=-0.5', 'train.aux_weight must be >= 0, got -0.5'),
    ('train.bbox_weight=-0.5', 'train.bbox_weight must be >= 0, got -0.5'),
    ('train.seed=-1', 'train.seed must be >= 0, got -1'),
    ('train.val_every=-1', 'train.val_every must be >= 0, got -1'),
    ('train.val_images=-1', 'train.val_images must be >= 0, got -1'),
    ('train.cache_images=-1', 'train.cache_images must be >= 0, got -1'),
    ('test.protocol=nope', "test.protocol must be one of ilsvrc, voc07, voc, coco, got 'nope'"),
    ('test.nms_iou=-0.5', 'test.nms_iou must be in [0, 1], got -0.5'),
    ('test.nms_iou=1.5', 'test.nms_iou must be in [0, 1], got 1.5'),
    ('test.score_thr=-0.5', 'test.score_thr must be in [0, 1], got -0.5'),
    ('test.score_thr=1.5', 'test.score_thr must be in [0, 1], got 1.5'),
    ('test.max_per_image=0', 'test.max_per_image must be in [1, 100000], got 0'),
    ('test.max_per_image=100001', 'test.max_per_image must be in [1, 100000], got 100001'),
    ('test.max_proposals=0', 'test.max_proposals must be in [1, 100000] or null, got 0'),
    ('test.max_proposals=100001', 'test.max_proposals must be in [1, 100000] or null, got 100001'),
    ('test.batch_size=0', 'test.batch_size must be in [1, 4096], got 0'),
    ('test.batch_size=4097', 'test.batch_size must be in [1, 4096], got 4097'),
    ('test.members=-1', 'test.members must be in [0, 100], got -1'),
    ('test.members=101', 'test.members must be in [0, 100], got 101'),
    ('test.scales=[]', 'test.scales must not be empty, got []'),
    ('test.scales=[2001]', 'test.scales[0] must be in [1, 2000], got 2001'),
    ('test.scales=[0]', 'test.scales[0] must be in [1, 2000], got 0'),
]

# model.fast.* (on a config of model.kind fast)
FAST_RULES = [
    ('model.fast.tap=[]', 'model.fast.tap must not be empty, got []'),
    ('model.fast.tap=[nope]', "model.fast.tap[0] must be one of inception3a, inception3b, inception4a, inception4b, "
     "inception4c, inception4d, inception4e, inception5a, inception5b, Mixed_5b, Mixed_5c, Mixed_5d, Mixed_6a, Mixed_6b, "
     "Mixed_6c, Mixed_6d, Mixed_6e, Mixed_7a, Mixed_7b, Mixed_7c, got 'nope'"),
    ('model.fast.roi_size=0', 'model.fast.roi_size must be in [1, 64], got 0'),
    ('model.fast.roi_size=65', 'model.fast.roi_size must be in [1, 64], got 65'),
    ('model.fast.reduce_channels=0', 'model.fast.reduce_channels must be in [1, 4096], got 0'),
    ('model.fast.reduce_channels=4097', 'model.fast.reduce_channels must be in [1, 4096], got 4097'),
    ('model.fast.fc_dim=0', 'model.fast.fc_dim must be in [1, 16384], got 0'),
    ('model.fast.fc_dim=16385', 'model.fast.fc_dim must be in [1, 16384], got 16385'),
    ('model.fast.num_fc=0', 'model.fast.num_fc must be in [1, 2], got 0'),
    ('model.fast.num_fc=3', 'model.fast.num_fc must be in [1, 2], got 3'),
    ('model.fast.fc_rank=-1', 'model.fast.fc_rank must be in [0, 4096], got -1'),
    ('model.fast.fc_rank=4097', 'model.fast.fc_rank must be in [0, 4096], got 4097'),
    ('model.fast.norm=nope', "model.fast.norm must be one of bn, gn, none, got 'nope'"),
    ('model.fast.sampling_ratio=-1', 'model.fast.sampling_ratio must be in [0, 16], got -1'),
    ('model.fast.sampling_ratio=17', 'model.fast.sampling_ratio must be in [0, 16], got 17'),
    ('model.fast.dropout=-0.5', 'model.fast.dropout must be in [0, 1), got -0.5'),
    ('model.fast.dropout=1.0', 'model.fast.dropout must be in [0, 1), got 1.0'),
    ('model.fast.min_side=0', 'model.fast.min_side must be in [1, 2000], got 0'),
    ('model.fast.min_side=2001', 'model.fast.min_side must be in [1, 2000], got 2001'),
    ('model.fast.max_side=0', 'model.fast.max_side must be in [1, 2000], got 0'),
    ('model.fast.max_side=2001', 'model.fast.max_side must be in [1, 2000], got 2001'),
    ('model.fast.chunk=0', 'model.fast.chunk must be in [1, 16384], got 0'),
    ('model.fast.chunk=16385', 'model.fast.chunk must be in [1, 16384], got 16385'),
    ('model.fast.train_crop=-1', 'model.fast.train_crop must be in [0, 2000], got -1'),
    ('model.fast.train_crop=2001', 'model.fast.train_crop must be in [0, 2000], got 2001'),
]

CLASSIFIER_RULES = [
    ('data.format=nope', "data.format must be one of auto, voc, ilsvrc, voc_xml, yolo, coco, folder, imagefolder, got 'nope'"),
    ('data.classes=[]', 'data.classes must not be empty, got []'),
    ('crops.margin=-0.5', 'crops.margin must be >= 0, got -0.5'),
    ('crops.min_size=-0.5', 'crops.min_size must be >= 0, got -0.5'),
    ('model.arch=nope', "model.arch must be one of googlenet, googlenet_bn, inception_v3, got 'nope'"),
    ('model.input_size=0', 'model.input_size must be in [1, 1024], got 0'),
    ('model.input_size=1025', 'model.input_size must be in [1, 1024], got 1025'),
    ('model.dropout=-0.5', 'model.dropout must be in [0, 1) or null, got -0.5'),
    ('model.dropout=1.0', 'model.dropout must be in [0, 1) or null, got 1.0'),
    ('model.conv_init=nope', "model.conv_init must be one of default, xavier, kaiming_fan_in, got 'nope'"),
    ('train.epochs=0', 'train.epochs must be >= 1, got 0'),
    ('train.batch_size=0', 'train.batch_size must be in [1, 4096], got 0'),
    ('train.batch_size=4097', 'train.batch_size must be in [1, 4096], got 4097'),
    ('train.lr=0.0', 'train.lr must be > 0, got 0.0'),
    ('train.momentum=-0.5', 'train.momentum must be in [0, 1), got -0.5'),
    ('train.momentum=1.0', 'train.momentum must be in [0, 1), got 1.0'),
    ('train.weight_decay=-0.5', 'train.weight_decay must be >= 0, got -0.5'),
    ('train.lr_gamma=0.0', 'train.lr_gamma must be in (0, 1], got 0.0'),
    ('train.lr_gamma=1.5', 'train.lr_gamma must be in (0, 1], got 1.5'),
    ('train.lr_step_epochs=0.0', 'train.lr_step_epochs must be > 0, got 0.0'),
    ('train.warmup_epochs=-0.5', 'train.warmup_epochs must be >= 0, got -0.5'),
    ('train.aux_weight=-0.5', 'train.aux_weight must be >= 0, got -0.5'),
    ('train.polyak_decay=-0.5', 'train.polyak_decay must be in [0, 1), got -0.5'),
    ('train.polyak_decay=1.0', 'train.polyak_decay must be in [0, 1), got 1.0'),
    ('train.min_area=0.0', 'train.min_area must be in (0, 1], got 0.0'),
    ('train.min_area=1.5', 'train.min_area must be in (0, 1], got 1.5'),
    ('train.max_area=0.0', 'train.max_area must be in (0, 1], got 0.0'),
    ('train.max_area=1.5', 'train.max_area must be in (0, 1], got 1.5'),
    ('train.min_aspect=0.0', 'train.min_aspect must be > 0, got 0.0'),
    ('train.max_aspect=0.0', 'train.max_aspect must be > 0, got 0.0'),
    ('train.brightness=-0.5', 'train.brightness must be >= 0, got -0.5'),
    ('train.contrast=-0.5', 'train.contrast must be >= 0, got -0.5'),
    ('train.saturation=-0.5', 'train.saturation must be >= 0, got -0.5'),
    ('train.hue=-0.5', 'train.hue must be in [0, 0.5], got -0.5'),
    ('train.hue=1.0', 'train.hue must be in [0, 0.5], got 1.0'),
    ('train.photometric_p=-0.5', 'train.photometric_p must be in [0, 1], got -0.5'),
    ('train.photometric_p=1.5', 'train.photometric_p must be in [0, 1], got 1.5'),
    ('train.seed=-1', 'train.seed must be >= 0, got -1'),
    ('train.workers=-1', 'train.workers must be >= 0, got -1'),
    ('train.val_every=-1', 'train.val_every must be >= 0, got -1'),
    ('train.max_steps_per_epoch=0', 'train.max_steps_per_epoch must be >= 1 or null, got 0'),
    ('train.max_steps=-1', 'train.max_steps must be >= 0, got -1'),
    ('train.checkpoint_every=-1', 'train.checkpoint_every must be >= 0, got -1'),
    ('test.crops=[145]', 'test.crops[0] must be one of 1, 10, 144, got 145'),
    ('test.crops=[]', 'test.crops must not be empty, got []'),
    ('test.batch_size=0', 'test.batch_size must be in [1, 4096], got 0'),
    ('test.batch_size=4097', 'test.batch_size must be in [1, 4096], got 4097'),
]


@pytest.mark.parametrize("item,problem", DETECTOR_RULES, ids=[r[0] for r in DETECTOR_RULES])
def test_each_detector_rule_refuses_a_value_breaking_it(item, problem):
    assert _err(load_detector_config, BCCD, [item]) == f"--set {item}: {problem}"


@pytest.mark.parametrize("item,problem", FAST_RULES, ids=[r[0] for r in FAST_RULES])
def test_each_fast_rule_refuses_a_value_breaking_it(item, problem):
    base = load_detector_config(BCCD, ["model.kind=fast", "model.rcnn=null"])
    assert _err(apply_overrides, base, [item]) == f"--set {item}: {problem}"


@pytest.mark.parametrize("item,problem", CLASSIFIER_RULES, ids=[r[0] for r in CLASSIFIER_RULES])
def test_each_classifier_rule_refuses_a_value_breaking_it(item, problem):
    assert _err(load_classifier_config, BCCD_CLS, [item]) == f"--set {item}: {problem}"


def test_every_declared_rule_has_a_case():
    items = [r[0] for r in DETECTOR_RULES + FAST_RULES + DETECTOR_BAD]
    # proposals.*: tests/proposals/test_config.py
    assert [r for r in uncovered_rules(DetectorConfig, items) if not r.startswith("proposals.")] == []
    assert uncovered_rules(ClassifierConfig, [r[0] for r in CLASSIFIER_RULES + CLASSIFIER_BAD]) == []


@pytest.mark.parametrize("override, line", [
    ("proposals.working_width=100000", "proposals.working_width must be in [0, 2000], got 100000"),  # 22 GB
    ("proposals.multibox.num_priors=100000000", "proposals.multibox.num_priors must be in [1, 10000], got 100000000"),
    ("proposals.multibox.input_size=100000", "proposals.multibox.input_size must be in [1, 1024], got 100000"),
    ("model.rcnn.input_size=100000", "model.rcnn.input_size must be in [1, 1024], got 100000"),
    ("test.batch_size=1000000000", "test.batch_size must be in [1, 4096], got 1000000000"),
    ("test.scales=[600,100000]", "test.scales[1] must be in [1, 2000], got 100000"),
    ("model.members=1000000", "model.members must be in [1, 100], got 1000000"),
])
def test_sizes_nobody_checked_have_a_range(override, line):
    """Every size a config (or a checkpoint's config) controls has a range: one line, not an
    allocation of gigabytes."""
    from detector.config import load_detector_config

    with pytest.raises(UserError) as e:
        load_detector_config(None, [override])
    assert str(e.value) == f"--set {override}: {line}"


def test_fast_sizes_have_a_range():
    from detector.config import load_detector_config

    with pytest.raises(UserError, match=r"model.fast.max_side must be in \[1, 2000\], got 100000$"):
        load_detector_config(None, ["model.kind=fast", "model.rcnn=null", "model.fast.max_side=100000"])
    with pytest.raises(UserError, match=r"model.fast.fc_dim must be in \[1, 16384\], got 10000000$"):
        load_detector_config(None, ["model.kind=fast", "model.rcnn=null", "model.fast.fc_dim=10000000"])
