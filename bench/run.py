"""make bench: run every bench/bench_*.py in turn; each prints ratios measured in the same run."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
rc = 0
for script in sorted(here.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    rc |= subprocess.call([sys.executable, str(script)] + sys.argv[1:])
sys.exit(rc)
