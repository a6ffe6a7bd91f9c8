"""backbone.config: YAML + ``--set`` into dataclasses, every field's type and range checked."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import pytest

from backbone.config import (
    MIN_INPUT_SIZES, apply_overrides, check_config, check_input_size, describe, from_dict, load_config,
    rules_of, save_config, setting,
)
from backbone.errors import UserError


@dataclass
class Inner:
    lr: float = setting(0.01, gt=0)
    steps: list[int] = setting([10, 20], ge=1)
    p: float = setting(0.5, ge=0, le=1)
    gamma: float = setting(0.5, gt=0, lt=1)
    cap: int | None = setting(None, ge=1)
    mode: str = setting("a", choices=("a", "b"))
    kind: str | None = setting(None, choices={"x": 1, "y": 2})   # a mapping: its keys
    crops: list[int] = setting([1], choices=(1, 10), min_len=1)
    names: list[str] | None = setting(None)
    lo: float = setting(0.1, le=5)
    hi: float = setting(0.2, lt=5)


@dataclass
class Outer:
    name: str = setting("x")
    inner: Inner = field(default_factory=Inner)
    flag: bool = setting(False)
    count: int = setting(3, ge=0)

    def cross_check(self, prefix: str) -> None:
        if self.count > 100 and self.flag:
            raise UserError(f"{prefix}count must be <= 100 with {prefix}flag, got {self.count}")


@dataclass
class Top:
    outer: Outer = field(default_factory=Outer)


def _err(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- loading, overrides, unknown keys (the machinery before the checks) -----------------------

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
    assert "unknown config key inner.lrr" in _err(load_config, Outer, p)
    assert "unknown config key inner.nope" in _err(apply_overrides, Outer(), ["inner.nope=3"])
    assert "expected key=value" in _err(apply_overrides, Outer(), ["flag"])


def test_bad_yaml_and_missing(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    assert "bad.yaml: line" in _err(load_config, Outer, p)
    assert "no such file" in _err(load_config, Outer, tmp_path / "missing.yaml")


# -- types ------------------------------------------------------------------------------------

@pytest.mark.parametrize("item,problem", [
    ("inner.lr=abc", "inner.lr must be a number, got 'abc'"),
    ("inner.lr=true", "inner.lr must be a number, got true"),
    ("inner.lr=[1]", "inner.lr must be a number, got [1]"),
    ("inner.lr=", "inner.lr must be a number, got null"),
    ("inner.lr=.nan", "inner.lr must be a finite number, got nan"),
    ("inner.lr=nan", "inner.lr must be a finite number, got 'nan'"),
    ("inner.lr=.inf", "inner.lr must be a finite number, got inf"),
    ("inner.lr=-1e999", "inner.lr must be a finite number, got '-1e999'"),
    ("count=true", "count must be an integer, got true"),
    ("count=2.5", "count must be an integer, got 2.5"),
    ("count=3.0", "count must be an integer, got 3.0"),
    ("count=ten", "count must be an integer, got 'ten'"),
    ("inner.cap=ten", "inner.cap must be an integer or null, got 'ten'"),
    ("flag=maybe", "flag must be true or false, got 'maybe'"),
    ("flag=1", "flag must be true or false, got 1"),
    ("name=[a]", "name must be a string, got ['a']"),
    ("name=true", "name must be a string, got true"),
    ("inner.steps=3", "inner.steps must be a list, got 3"),
    ("inner.steps=[1,x]", "inner.steps[1] must be an integer, got 'x'"),
    ("inner.steps=[1,true]", "inner.steps[1] must be an integer, got true"),
    ("inner.steps=[1,null]", "inner.steps[1] must be an integer, got null"),
    ("inner.names=[a,[b]]", "inner.names[1] must be a string, got ['b']"),
    ("inner=3", "inner must be a mapping, got 3"),
])
def test_wrong_types_name_the_key(item, problem):
    assert _err(apply_overrides, Outer(), [item]) == f"--set {item}: {problem}"


def test_accepted_conversions():
    cfg = apply_overrides(Outer(), ["inner.lr=1e-3", "inner.p=1", "name=2007", "inner.names=[1,b]", "inner.cap=null"])
    assert cfg.inner.lr == 0.001 and isinstance(cfg.inner.p, float) and cfg.name == "2007"
    assert cfg.inner.names == ["1", "b"] and cfg.inner.cap is None
    np = pytest.importorskip("numpy")
    cfg = from_dict(Outer, {"count": np.int64(4), "inner": {"lr": np.float32(0.5), "steps": (np.int32(3),)}})
    assert cfg.count == 4 and type(cfg.count) is int and cfg.inner.lr == 0.5 and cfg.inner.steps == [3]


# -- ranges and choices -----------------------------------------------------------------------

@pytest.mark.parametrize("item,problem", [
    ("inner.lr=0", "inner.lr must be > 0, got 0"),
    ("inner.lr=-0.5", "inner.lr must be > 0, got -0.5"),
    ("count=-1", "count must be >= 0, got -1"),
    ("inner.p=1.5", "inner.p must be in [0, 1], got 1.5"),
    ("inner.p=-0.1", "inner.p must be in [0, 1], got -0.1"),
    ("inner.gamma=1", "inner.gamma must be in (0, 1), got 1"),
    ("inner.gamma=0", "inner.gamma must be in (0, 1), got 0"),
    ("inner.lo=5.5", "inner.lo must be <= 5, got 5.5"),
    ("inner.hi=5", "inner.hi must be < 5, got 5"),
    ("inner.cap=0", "inner.cap must be >= 1 or null, got 0"),
    ("inner.steps=[3,0]", "inner.steps[1] must be >= 1, got 0"),
    ("inner.mode=c", "inner.mode must be one of a, b, got 'c'"),
    ("inner.kind=z", "inner.kind must be one of x, y or null, got 'z'"),
    ("inner.crops=[1,5]", "inner.crops[1] must be one of 1, 10, got 5"),
    ("inner.crops=[]", "inner.crops must not be empty, got []"),
])
def test_out_of_range_names_the_key(item, problem):
    assert _err(apply_overrides, Outer(), [item]) == f"--set {item}: {problem}"


def test_boundaries_and_null_are_accepted():
    cfg = apply_overrides(Outer(), ["count=0", "inner.p=0", "inner.lo=5", "inner.cap=1", "inner.kind=y",
                                    "inner.steps=[]", "inner.crops=[10,1]"])
    assert (cfg.count, cfg.inner.p, cfg.inner.lo, cfg.inner.cap, cfg.inner.kind) == (0, 0.0, 5.0, 1, "y")
    assert apply_overrides(cfg, ["inner.p=1"]).inner.p == 1.0


def test_yaml_file_problems_name_the_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("inner:\n  p: 5\n")
    assert _err(load_config, Outer, p) == f"config {p}: inner.p must be in [0, 1], got 5"
    assert _err(from_dict, Outer, {"inner": {"p": 5}}, source="model m.pt") == "model m.pt: inner.p must be in [0, 1], got 5"


# -- cross-field rules, mutated configs, the override named -----------------------------------

def test_cross_check_gets_the_prefix_and_runs_everywhere(tmp_path):
    assert _err(apply_overrides, Top(), ["outer.count=101", "outer.flag=true"]) == (
        "--set outer.count=101, outer.flag=true: outer.count must be <= 100 with outer.flag, got 101")
    assert _err(from_dict, Outer, {"count": 101, "flag": True}) == "config: count must be <= 100 with flag, got 101"
    p = tmp_path / "t.yaml"
    p.write_text("outer:\n  count: 200\n  flag: true\n")
    assert "t.yaml: outer.count must be <= 100" in _err(load_config, Top, p)
    assert apply_overrides(Top(), ["outer.count=101"]).outer.count == 101  # the rule needs both


def test_check_config_on_configs_changed_in_code():
    cfg = Top()
    check_config(cfg)
    cfg.outer.inner.p = 7
    assert _err(check_config, cfg) == "outer.inner.p must be in [0, 1], got 7"
    assert _err(check_config, cfg.outer.inner, source="--p", prefix="x.") == "--p: x.p must be in [0, 1], got 7"
    cfg.outer.inner.p, cfg.outer.inner.cap = 0.5, "ten"
    assert "outer.inner.cap must be an integer or null, got 'ten'" == _err(check_config, cfg)
    cfg.outer.inner.cap, cfg.outer.count, cfg.outer.flag = None, 101, True
    assert "outer.count must be <= 100" in _err(check_config, cfg)
    cfg.outer.flag = False
    # an instance inside loaded data is checked too, and so are defaults replaced in code
    bad = Inner()
    bad.mode = "zz"
    assert "outer.inner.mode must be one of a, b" in _err(from_dict, Top, {"outer": {"inner": bad}})
    assert "outer.inner.mode must be one of a, b" in _err(apply_overrides, Top(outer=Outer(inner=bad)), ["outer.count=1"])


def test_override_named_is_the_last_setting_the_key():
    assert _err(apply_overrides, Outer(), ["inner.lr=abc", "count=1"]).startswith("--set inner.lr=abc: ")
    assert apply_overrides(Outer(), ["inner.lr=abc", "inner.lr=0.5"]).inner.lr == 0.5
    assert _err(apply_overrides, Outer(), ["inner.lr=1", "inner.lr=-1"]).startswith("--set inner.lr=-1: ")
    # a whole section set at once: the item names the section
    assert _err(apply_overrides, Outer(), ["inner={p: 3}"]) == "--set inner={p: 3}: inner.p must be in [0, 1], got 3"


# -- declarations -----------------------------------------------------------------------------

def test_setting_copies_mutable_defaults_and_keeps_rules():
    a, b = Inner(), Inner()
    a.steps.append(99)
    assert b.steps == [10, 20]
    f = {f.name: f for f in dataclasses.fields(Inner)}
    assert rules_of(f["p"]).ge == 0 and rules_of(f["p"]).le == 1 and rules_of(f["kind"]).choices == ("x", "y")
    assert rules_of({f.name: f for f in dataclasses.fields(Outer)}["inner"]) is None
    assert Outer().inner is not Outer().inner


def test_describe_lists_every_key():
    assert describe(Outer) == [
        "name: str",
        "inner.lr: number > 0", "inner.steps: list[int] each >= 1", "inner.p: number in [0, 1]",
        "inner.gamma: number in (0, 1)", "inner.cap: int >= 1, or null", "inner.mode: str one of a|b",
        "inner.kind: str one of x|y, or null", "inner.crops: list[int] each one of 1|10, non-empty",
        "inner.names: list[str] or null", "inner.lo: number <= 5", "inner.hi: number < 5",
        "flag: bool", "count: int >= 0",
    ]


# -- the networks' minimum input sizes --------------------------------------------------------

def test_check_input_size_messages():
    check_input_size("googlenet", 31)
    check_input_size("inception_v3", 75, aux_logits=False)
    check_input_size("inception_v3", 299, aux_logits=True)
    check_input_size("googlenet_bn", 15, aux_logits=True)
    with pytest.raises(UserError, match=r"^model.input_size 30: model.arch googlenet needs at least 31 px$"):
        check_input_size("googlenet", 30, prefix="model.")
    with pytest.raises(UserError, match="needs at least 15 px"):
        check_input_size("googlenet_bn", 14)
    with pytest.raises(UserError, match="needs at least 75 px"):
        check_input_size("inception_v3", 74)
    with pytest.raises(UserError, match=r"m.input_size 298: m.arch inception_v3 with m.aux_logits needs at least 299 px"
                                        r".*m.aux_logits=false"):
        check_input_size("inception_v3", 298, aux_logits=True, prefix="m.")


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_bn"])
def test_min_input_sizes_are_the_networks(arch):
    """The declared minimum runs (with aux heads, in training), one pixel less does not."""
    import torch

    from backbone import build_backbone

    net = build_backbone(arch, 2, aux_logits=True).train()
    s = MIN_INPUT_SIZES[arch]
    net(torch.zeros(2, 3, s, s))
    with pytest.raises((UserError, RuntimeError), match="too small"):  # ours, or torch's pooling
        net(torch.zeros(2, 3, s - 1, s - 1))


@pytest.mark.slow
def test_inception_v3_min_input_sizes():
    import torch

    from backbone import build_backbone
    from backbone.config import INCEPTION_V3_AUX_MIN

    net = build_backbone("inception_v3", 2, aux_logits=True)
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, 75, 75))
        with pytest.raises((UserError, RuntimeError)):
            net(torch.zeros(1, 3, 74, 74))
    net.train()(torch.zeros(2, 3, INCEPTION_V3_AUX_MIN, INCEPTION_V3_AUX_MIN))
    with pytest.raises((UserError, RuntimeError)):
        net(torch.zeros(2, 3, INCEPTION_V3_AUX_MIN - 1, INCEPTION_V3_AUX_MIN - 1))


# -- helpers the schema tests share -----------------------------------------------------------

def declared_fields(cls: type, prefix: str = ""):
    """(dotted key, annotation, Rules or None) of every leaf field of schema ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if dataclasses.is_dataclass(inner[0]) and isinstance(inner[0], type):
            out += declared_fields(inner[0], prefix + f.name + ".")
        else:
            out.append((prefix + f.name, tp, rules_of(f)))
    return out


def uncovered_rules(cls: type, items, prefix: str = "") -> list[str]:
    """``key.rule`` of each declared bound, choice and ``min_len`` of schema ``cls`` that none of
    the ``key=value`` overrides ``items`` breaks (the schema tests list one for every rule)."""
    import yaml

    broken = set()
    rules = {key: r for key, _, r in declared_fields(cls, prefix) if r is not None}
    for item in items:
        key, raw = item.split("=", 1)
        if key not in rules:
            continue
        r, value = rules[key], yaml.safe_load(raw)
        for v in value if isinstance(value, list) else [value]:
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            checks = {"ge": num and r.ge is not None and v < r.ge, "gt": num and r.gt is not None and v <= r.gt,
                      "le": num and r.le is not None and v > r.le, "lt": num and r.lt is not None and v >= r.lt,
                      "choices": r.choices is not None and v not in r.choices}
            broken |= {f"{key}.{name}" for name, hit in checks.items() if hit}
        if isinstance(value, list) and r.min_len and len(value) < r.min_len:
            broken.add(f"{key}.min_len")
    declared = {f"{key}.{name}" for key, r in rules.items()
                for name in ("ge", "gt", "le", "lt", "choices", "min_len") if getattr(r, name) is not None}
    return sorted(declared - broken)


def test_set_with_a_recursive_alias_or_duplicate_key_is_one_line():
    """``--set 'data.classes=&a [*a]'`` was a RecursionError traceback."""
    import dataclasses

    from backbone.config import apply_overrides, setting

    @dataclasses.dataclass
    class Cfg:
        classes: list[str] | None = setting(None)
        opts: dict | None = None

    with pytest.raises(UserError, match=r"^--set classes=&a \[\*a\]: recursive alias \*a"):
        apply_overrides(Cfg(), ["classes=&a [*a]"])
    with pytest.raises(UserError, match=r"^--set opts=\{a: 1, a: 2\}: key 'a' given twice"):
        apply_overrides(Cfg(), ["opts={a: 1, a: 2}"])
