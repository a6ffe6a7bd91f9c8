"""The output rule (detector/io/outputs.py): inputs are never written, a file we did not write is
replaced only with --overwrite, a device or FIFO is written into and stays what it is."""

import json
import os
import socket
import stat

import pytest

from backbone.errors import UserError
from detector.io.outputs import MANIFEST, Manifest, Outputs, add_output_arg, output_actions, write_into
from tests.detector.cli.output_env import device_node, drain, is_node


def test_a_users_file_is_replaced_only_with_overwrite(tmp_path):
    mine = tmp_path / "r.json"
    mine.write_text("mine")
    with pytest.raises(UserError, match=r"--json .*r.json: exists and was not written by eval-map .*--overwrite"):
        Outputs(prog="eval-map").check(str(mine), "--json")
    out = Outputs(overwrite=True)
    out.write(out.check(str(mine), "--json"), "ours\n")
    assert mine.read_text() == "ours\n"
    # from then on it is ours: replaced without --overwrite, until the user edits it
    fresh = Outputs()
    fresh.write(fresh.check(str(mine), "--json"), "again\n")
    assert mine.read_text() == "again\n"
    mine.write_text("edited")
    with pytest.raises(UserError, match="exists and was not written"):
        Outputs().check(str(mine), "--json")


def test_detects_old_manifest_still_counts(tmp_path):
    (tmp_path / "d.json").write_text("[]\n")
    import hashlib

    digest = hashlib.sha256(b"[]\n").hexdigest()
    (tmp_path / ".detect-manifest.json").write_text(json.dumps({"written_by": "detect", "files": {"d.json": digest}}))
    assert Manifest(str(tmp_path)).owns(str(tmp_path / "d.json"))
    out = Outputs()
    out.write(out.check(str(tmp_path / "d.json"), "--json"), "[1]\n")
    assert json.loads((tmp_path / MANIFEST).read_text())["files"]["d.json"]
    with pytest.raises(UserError, match="own record"):
        Outputs().check(str(tmp_path / ".detect-manifest.json"), "--json")


def test_an_input_is_never_written_by_path_link_or_inode(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.xml").write_text("<annotation/>")
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    os.link(model, tmp_path / "hard.pt")
    os.symlink(model, tmp_path / "soft.pt")
    out = Outputs([str(model), str(data)], overwrite=True)
    for path, why in [(model, "is the input"), (tmp_path / "hard.pt", "the same file"), (tmp_path / "soft.pt", "is the input"),
                      (data / "a.xml", "inside the input folder"), (data / "new.json", "inside the input folder"),
                      (data, "is the input")]:
        with pytest.raises(UserError, match=why):
            out.check(str(path), "--json") if path != data else out.check_folder(str(path), "--plots")
    assert model.read_bytes() == b"weights"
    # an input found later refuses what was planned before it
    late = Outputs()
    late.check(str(tmp_path / "x" / "r.json"), "--json")
    late.add_input(str(tmp_path / "x"))
    (tmp_path / "x").mkdir()
    late.add_input(str(tmp_path / "x"))
    with pytest.raises(UserError, match="inside the input folder"):
        late.recheck()


def test_a_device_is_written_into_and_stays_a_device(tmp_path):
    node = device_node(tmp_path / "null")
    for overwrite in (False, True):
        out = Outputs(overwrite=overwrite)
        path = out.check(node, "--json")
        with drain(node) as d:
            out.write(path, "[1, 2]\n")
        assert is_node(node)
        if d.thread is not None:
            assert d.data == b"[1, 2]\n"
    # staged files (figures, reports) are written into it too
    out = Outputs()
    path = out.check(node, "--plots")
    with drain(node):
        with out.staged(os.path.dirname(path), "--plots") as tmp:
            with open(os.path.join(tmp, os.path.basename(path)), "w") as f:
                f.write("png")
    assert is_node(node) and not (tmp_path / MANIFEST).exists()


def test_what_is_not_a_regular_file_is_refused_or_kept(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(UserError, match="a socket; only regular files are replaced"):
            Outputs(overwrite=True).check(str(tmp_path / "s"), "--json")
    finally:
        sock.close()
    if os.geteuid() == 0:  # a block device (a disk!) is never written, not even with --overwrite
        os.mknod(str(tmp_path / "blk"), 0o600 | stat.S_IFBLK, os.makedev(7, 0))
        with pytest.raises(UserError, match="a block device"):
            Outputs(overwrite=True).check(str(tmp_path / "blk"), "--json")
        assert stat.S_ISBLK(os.lstat(tmp_path / "blk").st_mode)
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(UserError, match="dangling symbolic link"):
        Outputs(overwrite=True).check(str(tmp_path / "dangling"), "--json")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        Outputs(overwrite=True).check(str(tmp_path / "dir"), "--json")
    node = device_node(tmp_path / "null")
    with pytest.raises(UserError, match="expected a folder"):
        Outputs(overwrite=True).check_folder(node, "--plots")
    assert is_node(node)
    # a link to a regular file stays a link: its target is replaced (with --overwrite)
    (tmp_path / "target.json").write_text("mine")
    os.symlink(tmp_path / "target.json", tmp_path / "link.json")
    out = Outputs(overwrite=True)
    out.write(out.check(str(tmp_path / "link.json"), "--json"), "ours")
    assert os.path.islink(tmp_path / "link.json") and (tmp_path / "target.json").read_text() == "ours"


def test_a_report_folder_refuses_the_users_files_of_its_names(tmp_path):
    import re

    (tmp_path / "analysis.json").write_text("mine")
    (tmp_path / "notes.txt").write_text("mine")
    names = re.compile(r"analysis\.json|summary\.txt")
    with pytest.raises(UserError, match="analysis.json: exists and was not written"):
        Outputs().check_folder(str(tmp_path), "--analyze", names=names)
    (tmp_path / "analysis.json").unlink()
    out = Outputs()
    out.check_folder(str(tmp_path), "--analyze", names=names)   # notes.txt is no name of ours
    with out.staged(str(tmp_path), "--analyze") as tmp:
        with open(os.path.join(tmp, "analysis.json"), "w") as f:
            f.write("{}")
    assert (tmp_path / "analysis.json").read_text() == "{}" and (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(json.loads((tmp_path / MANIFEST).read_text())["files"]) == ["analysis.json"]
    assert [n for n in os.listdir(tmp_path) if n.startswith(".") and n != MANIFEST] == []   # no staging left


def test_planned_twice_and_stream_paths(tmp_path):
    out = Outputs()
    out.check(str(tmp_path / "a.json"), "--json")
    with pytest.raises(UserError, match="written twice by this run"):
        out.check(str(tmp_path / "a.json"), "--save-detections")
    assert out.check("/dev/stdout", "--json") in out.streams   # written into, whatever stdout is


def test_write_into_never_creates(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_into(str(tmp_path / "none"), b"x")
    assert not (tmp_path / "none").exists()


def test_output_args_are_tagged():
    import argparse

    p = argparse.ArgumentParser()
    add_output_arg(p, "--json")
    add_output_arg(p, "--plots", kind="folder")
    p.add_argument("--other")
    assert [(a.option_strings[0], a.output_kind) for a in output_actions(p)] == [("--json", "file"), ("--plots", "folder")]
