from dataclasses import dataclass, field

import pytest

from backbone.errors import UserError
from detector.config import apply_overrides, load_config, save_config


@dataclass
class Inner:
    lr: float = 0.01
    steps: list[int] = field(default_factory=lambda: [10, 20])


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_load_override_and_save(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: y\ninner:\n  lr: 1\n")
    cfg = load_config(Outer, p, ["inner.steps=[1,2,3]", "flag=true"])
    assert cfg.name == "y" and cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.steps == [1, 2, 3] and cfg.flag is True
    save_config(cfg, tmp_path / "out" / "resolved.yaml")
    assert load_config(Outer, tmp_path / "out" / "resolved.yaml") == cfg


def test_unknown_keys_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("inner:\n  lrr: 1\n")
    with pytest.raises(UserError, match="unknown config key inner.lrr"):
        load_config(Outer, p)
    with pytest.raises(UserError, match="unknown config key inner.nope"):
        apply_overrides(Outer(), ["inner.nope=3"])
    with pytest.raises(UserError, match="must be bool"):
        apply_overrides(Outer(), ["flag=maybe"])


def test_bad_yaml_and_missing(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="bad.yaml: line"):
        load_config(Outer, p)
    with pytest.raises(UserError, match="no such file"):
        load_config(Outer, tmp_path / "missing.yaml")
