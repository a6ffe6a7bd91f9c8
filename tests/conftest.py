import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
BCCD = SHARED_DATA / "bccd"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"needs {SHARED_DATA} (not in a user's clone)")
    for item in items:
        if "shared" in item.keywords and not BCCD.is_dir():
            item.add_marker(skip)


@pytest.fixture
def bccd_root():
    if not BCCD.is_dir():
        pytest.skip(f"needs {BCCD}")
    return BCCD


@pytest.fixture(scope="session")
def test_data():
    return TEST_DATA
