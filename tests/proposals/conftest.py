from pathlib import Path

import cv2
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent.parent / "data" / "proposals"


@pytest.fixture(scope="session")
def blood_image() -> np.ndarray:
    """A BCCD image (640x480 RGB), MIT license (tests/data/proposals/LICENSE)."""
    return cv2.cvtColor(cv2.imread(str(HERE / "BloodImage_00000.jpg")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def blood_small(blood_image) -> np.ndarray:
    return cv2.resize(blood_image, (160, 120), interpolation=cv2.INTER_AREA)
