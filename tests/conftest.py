import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
BCCD = SHARED_DATA / "bccd"


def pytest_configure(config):
    """The tests' own cache folder (proposals, annotation and size indexes), never the user's
    ~/.cache: a fresh one per run, as on CI's clean machine (``GOOGLENET_DET_TEST_CACHE=DIR``
    keeps one across runs). Subprocesses inherit it."""
    keep = os.environ.get("GOOGLENET_DET_TEST_CACHE")
    folder = keep or tempfile.mkdtemp(prefix="googlenet-det-tests-")
    os.makedirs(folder, exist_ok=True)
    os.environ["GOOGLENET_DET_CACHE"] = folder
    if not keep:
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


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
