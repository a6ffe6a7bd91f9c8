"""backbone.io: atomic writes, safe torch loading, the cache folder."""

import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from backbone.errors import UserError
from backbone.io import (
    atomic_save,
    atomic_write,
    cache_dir,
    check_writable,
    json_safe,
    json_text,
    safe_torch_load,
    write_json,
)


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, path)

    def broken(obj, f, *a, **k):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(UserError, match="cannot write .No space left on device"):
        atomic_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["a"].tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temp file left behind


def test_atomic_write_removes_temp_file_on_any_exception(tmp_path):
    def boom(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.bin", boom)
    assert os.listdir(tmp_path) == []


def test_atomic_write_text_bytes_and_mode(tmp_path):
    p = atomic_write(tmp_path / "sub" / "a.txt", "hé")
    assert open(p, encoding="utf-8").read() == "hé"
    atomic_write(p, b"\x00\x01")
    assert open(p, "rb").read() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_write_json_refuses_a_folder_and_nan(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        write_json(tmp_path, {"a": 1})
    with pytest.raises(ValueError):
        write_json(tmp_path / "n.json", {"a": float("nan")})


def test_nan_as_null_the_one_json_rule(tmp_path):
    obj = {"AP": [0.5, float("nan"), 1], "mAP": np.float32("nan"), "inf": float("-inf"), "n": np.int64(3),
           "ok": np.bool_(True), "arr": np.array([[1.0, np.nan]]), "t": (1, float("inf")), 2: "int key"}
    safe = json_safe(obj)
    assert safe == {"AP": [0.5, None, 1], "mAP": None, "inf": None, "n": 3, "ok": True, "arr": [[1.0, None]],
                    "t": [1, None], 2: "int key"}
    assert type(safe["n"]) is int and type(safe["ok"]) is bool
    assert json_text(obj, indent=None, nan_as_null=True) == (
        '{"AP": [0.5, null, 1], "mAP": null, "inf": null, "n": 3, "ok": true, "arr": [[1.0, null]], '
        '"t": [1, null], "2": "int key"}\n')
    write_json(tmp_path / "a.json", {"a": float("nan")}, nan_as_null=True)
    assert (tmp_path / "a.json").read_text() == '{\n "a": null\n}\n'
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_text({"a": [float("nan")]})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot write|not writable"):
            atomic_write(ro / "a.txt", "x")
        with pytest.raises(UserError, match="not writable"):
            check_writable(ro / "a.txt")
    finally:
        ro.chmod(0o700)


def test_check_writable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file, expected a folder"):
        check_writable(f, folder=True)
    with pytest.raises(UserError, match="is a folder, expected a file"):
        check_writable(tmp_path)
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable(f / "below" / "x.json")
    assert check_writable(tmp_path / "new" / "deeper" / "x.json").endswith("x.json")
    assert not (tmp_path / "new").exists()  # creates nothing


def test_safe_torch_load_errors(tmp_path):
    with pytest.raises(UserError, match="model .*: no such file"):
        safe_torch_load(tmp_path / "nope.pt", "model")
    with pytest.raises(UserError, match="is a folder"):
        safe_torch_load(tmp_path, "model")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserError, match="empty file"):
        safe_torch_load(tmp_path / "empty.pt", "model")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(UserError, match="not a readable PyTorch file") as e:
        safe_torch_load(tmp_path / "junk.pt", "model")
    assert "\n" not in str(e.value)


def test_safe_torch_load_checks_crcs(tmp_path):
    p = tmp_path / "ck.pt"
    torch.save({"w": torch.arange(4096, dtype=torch.float32)}, p)
    raw = bytearray(p.read_bytes())
    data = raw.find(b"\x00\x00\x80\x3f")  # the float 1.0 inside the tensor bytes
    raw[data + 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"corrupt \(bad CRC"):
        safe_torch_load(p, "model")


# the fuzz test's finds (tests/test_fuzz_readers.py), as fixed bytes
ZIP64_SPANNING_DISKS = (b"PK\x06\x07" + bytes(12) + b"\x02\x00\x00\x00"   # zip64 locator: 2 disks
                        + b"PK\x05\x06" + bytes(18))                         # end of central directory


def _zip_with_method(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ck/data.pkl", b"x" * 10)
    raw = bytearray(buf.getvalue())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):   # local header, central directory
        raw[raw.find(sig) + at] = method
    return bytes(raw)


@pytest.mark.parametrize("content, match", [
    (ZIP64_SPANNING_DISKS, r"corrupt \(zipfiles that span multiple disks"),   # is_zipfile raised BadZipFile
    (_zip_with_method(99), r"corrupt \(That compression method"),            # testzip: NotImplementedError
    (b"\x80\x02J\x01", "not a readable PyTorch file"),   # legacy pickle, BININT cut short: struct.error
    (b"\x80\x02M\x01", "not a readable PyTorch file"),   # BININT2 cut short
], ids=["zip64-disks", "zip-method", "binint", "binint2"])
def test_safe_torch_load_damage_is_one_user_error(tmp_path, content, match):
    p = tmp_path / "ck.pt"
    p.write_bytes(content)
    with pytest.raises(UserError, match=match) as e:
        safe_torch_load(p, "model")
    assert str(e.value).startswith(f"model {p}: ") and "\n" not in str(e.value)


def test_safe_torch_load_damaged_zip64_locator_of_a_real_checkpoint(tmp_path):
    p = tmp_path / "ck.pt"
    torch.save({"w": torch.zeros(3)}, p)
    raw = bytearray(p.read_bytes())
    raw[raw.rfind(b"PK\x06\x07") + 16] = 2            # torch writes a zip64 locator: say 2 disks
    p.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="model .*ck.pt: corrupt"):
        safe_torch_load(p, "model")


class _Thing:
    pass


def test_safe_torch_load_refuses_pickled_objects(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"obj": _Thing()}, p)  # an instance of a class: refused by weights_only
    with pytest.raises(UserError, match="holds Python objects other than tensors") as e:
        safe_torch_load(p, "model")
    assert "weights_only=False" not in str(e.value) and "\n" not in str(e.value)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLENET_DET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "googlenet-det")
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "own"))
    assert cache_dir() == str(tmp_path / "own")
    monkeypatch.delenv("GOOGLENET_DET_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "googlenet-det")


def test_read_yaml_one_line_errors(tmp_path):
    """One reader of YAML files (configs, YOLO data.yaml, --class-groups): each problem one line."""
    import pytest

    from backbone.errors import UserError
    from backbone.io import read_yaml

    good = tmp_path / "a.yaml"
    good.write_text("names: [a, b]\n")
    assert read_yaml(good, "data.yaml a") == {"names": ["a", "b"]}
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml", "x") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(UserError, match=r"^config bad: line \d+ is not valid YAML"):
        read_yaml(bad, "config bad")  # the caller's name, then the line
    with pytest.raises(UserError, match="no such file"):
        read_yaml(tmp_path / "missing.yaml", "config m")
    with pytest.raises(UserError, match="not a regular file"):
        read_yaml(tmp_path, "config d")
    (tmp_path / "latin.yaml").write_bytes(b"a: \xe9\xff\n")
    with pytest.raises(UserError, match="cannot read"):
        read_yaml(tmp_path / "latin.yaml", "config l")


def test_read_yaml_refuses_duplicate_keys_and_recursive_aliases(tmp_path):
    """The last of two equal keys won silently (format: voc, then format: yolo); a recursive
    alias was a RecursionError in every check walking the data."""
    from backbone.io import read_yaml

    p = tmp_path / "c.yaml"
    p.write_text("data:\n  format: voc\n  root: x\n  format: yolo\n")
    with pytest.raises(UserError, match=r"^config c: line 4 is not valid YAML \(key 'format' given twice, on line 2 "
                                        r"and line 4; the last one would win\)$"):
        read_yaml(p, "config c")
    p.write_text("data:\n  classes: &a [*a]\n")
    with pytest.raises(UserError, match=r"^config c: line 2 is not valid YAML \(recursive alias \*a"):
        read_yaml(p, "config c")
    # what YAML means stays: a merge key overridden, an alias used twice
    p.write_text("base: &b {lr: 1, epochs: 2}\ntrain:\n  <<: *b\n  lr: 3\nx: [*b, *b]\n")
    assert read_yaml(p, "config c")["train"] == {"lr": 3, "epochs": 2}


def test_atomic_save_over_the_file_size_limit_is_one_error_and_keeps_the_old_file(tmp_path):
    """torch.save's RuntimeError ("unexpected pos ...", the OSError only its context) was a
    traceback; a full disk or ``ulimit -f`` is one line now, the previous file kept."""
    import subprocess
    import sys

    target = tmp_path / "train_state.pt"
    target.write_bytes(b"old state")
    code = f"""
import resource, signal, sys, torch
from backbone.errors import UserError
from backbone.io import atomic_save
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # else the kernel kills the process instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
try:
    atomic_save({{"w": torch.zeros(100000)}}, {str(target)!r})
except UserError as e:
    print(e)
    sys.exit(3)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert p.returncode == 3, p.stderr
    assert p.stdout == f"checkpoint {target}: cannot write (File too large)\n"
    assert target.read_bytes() == b"old state" and os.listdir(tmp_path) == ["train_state.pt"]


def test_a_peer_yaml_with_a_key_twice_is_read_as_ultralytics_reads_it(tmp_path):
    """A YOLO data.yaml is ultralytics' file (yaml.safe_load: the last key wins): read the same
    way, with one counted InputWarning; --strict's filter makes it the error. Our own configs
    keep refusing it (tests of read_yaml above)."""
    import warnings

    from backbone.errors import InputWarning
    from backbone.io import read_yaml

    p = tmp_path / "data.yaml"
    p.write_text("path: .\nnames: [a, b]\ntrain: x\nnames: [c]\n")
    with pytest.warns(InputWarning, match=r"data.yaml .*: 1 key\(s\) given twice.*'names' given twice, on line 2 and line 4"):
        assert read_yaml(p, f"data.yaml {p}", peer=True)["names"] == ["c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(InputWarning, match="'names' given twice"):
            read_yaml(p, f"data.yaml {p}", peer=True)
    with pytest.raises(UserError, match="'names' given twice, on line 2 and line 4; the last one would win"):
        read_yaml(p, f"config {p}")


def test_a_control_character_in_yaml_is_one_line(tmp_path):
    from backbone.io import read_yaml

    p = tmp_path / "c.yaml"
    p.write_bytes(b"a: 1\nb: \x00\n")
    with pytest.raises(UserError) as e:
        read_yaml(p, f"config {p}")
    assert "\n" not in str(e.value) and "not valid YAML" in str(e.value)
