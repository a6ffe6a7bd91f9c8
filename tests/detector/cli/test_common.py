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
