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
