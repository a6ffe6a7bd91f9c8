"""What every console script shares: warnings and errors are one line naming the command."""

from detector.cli.gt_stats import main
from tests.conftest import ROOT


def test_warnings_are_one_line_naming_the_command(test_data, capsys):
    rc = main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--data-root", str(test_data / "voc-mini"), "--split", "train"])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [ln for ln in lines if ln.startswith("gt-stats: warning: ")] and len(lines) == 1, err
    assert "BloodImage_00338.xml: degenerate box [504 337 504 337] dropped" in lines[0]


def test_a_closed_stdout_pipe_stops_quietly():
    """`prog ... | head`: the reader left; no traceback, the exit code of SIGPIPE (141)."""
    import subprocess
    import sys

    code = ("import sys\nfrom detector.cli.common import cli_main\n"
            "@cli_main\ndef main(argv=None):\n    for i in range(200000):\n        print('line', i)\n"
            "sys.exit(main())\n")
    p = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout == "line 0\n" and "Traceback" not in p.stderr and "Error" not in p.stderr


def test_cache_dir_moves_the_annotation_index_too(test_data, tmp_path, monkeypatch, capsys):
    """--cache-dir D: the annotation index is written in D (was: in the default cache, only the
    proposals moved), and the default is back when the command ends."""
    import os
    import shutil

    from backbone.io import cache_dir
    from detector.io.datasets.index import DISABLE_ENV, index_path

    default = tmp_path / "default"
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(default))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    voc = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", voc)
    mine = tmp_path / "mine"
    rc = main(["--config", str(ROOT / "configs" / "bccd.yaml"), "--data-root", str(voc), "--split", "train",
               "--cache-dir", str(mine)])
    assert rc == 0, capsys.readouterr().err
    ann = str(voc / "Annotations")
    assert os.path.isfile(index_path(ann, str(mine)))
    assert not os.path.exists(index_path(ann, str(default)))
    assert cache_dir() == str(default)
