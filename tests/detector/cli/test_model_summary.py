"""model-summary: the parameter counts of the networks as JSON."""

import json

from detector.cli.model_summary import main


def test_model_summary_json(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["--json", str(out), "--size", "96"]) == 0
    rows = {r["network"]: r for r in json.loads(out.read_text())}
    assert rows["googlenet"]["params"] == 6_998_552
    assert rows["googlenet"]["params_with_aux"] == 13_378_280
    assert "googlenet_bn" in capsys.readouterr().out


def test_model_summary_sizes_out_of_range_are_one_line(capsys):
    """--num-classes 100000000 and --size 100000 asked for hundreds of gigabytes."""
    for argv, line in ((["--num-classes", "100000000"], "--num-classes 100000000: must be in [1, 100000]"),
                       (["--num-classes", "0"], "--num-classes 0: must be in [1, 100000]"),
                       (["--size", "100000"], "--size 100000: at most 1024 px")):
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"model-summary: error: {line}"]
