"""read_images: decoded ahead in worker processes, in order, the same arrays, warnings and
errors as load_image in the loop (or told to an ImageReads)."""

import warnings

import numpy as np
import pytest

from detector.io.image_stream import read_images
from detector.io.images import ImageReads, TruncatedImageWarning, UnreadableImageWarning, load_image
from tests.conftest import TEST_DATA

JPEGS = sorted((TEST_DATA / "voc-mini" / "JPEGImages").glob("*.jpg"))


@pytest.fixture
def files(tmp_path):
    data = JPEGS[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not a png")
    return [str(JPEGS[0]), str(tmp_path / "junk.png"), str(tmp_path / "cut.jpg"), str(JPEGS[1])]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_in_order_same_arrays_errors_and_warnings(files, workers):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(read_images(files, workers=workers))
    assert [r.index for r in got] == [0, 1, 2, 3] and [r.path for r in got] == files
    for r in got[:1] + got[2:]:
        assert r.error is None and np.array_equal(r.image, load_image(r.path)) and r.seconds >= 0
    assert got[1].image is None and got[1].error.startswith(f"image {files[1]}: not an image file")
    told = [w for w in caught if issubclass(w.category, TruncatedImageWarning)]
    assert len(told) == 1 and str(told[0].message).startswith(f"image {files[2]}: truncated JPEG")


@pytest.mark.parametrize("workers", [0, 1])
def test_told_to_image_reads_one_counted_warning_each(files, workers):
    reads = ImageReads("run", "left out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = list(read_images(files, workers=workers, reads=reads))
        assert not caught  # nothing until the report
        reads.report()
    assert got[1].image is None and got[2].image is not None
    assert [w.category for w in caught] == [TruncatedImageWarning, UnreadableImageWarning]
    assert "run: 1 truncated JPEG" in str(caught[0].message) and "run: 1 image(s) that cannot" in str(caught[1].message)


def test_strict_filter_of_the_main_process_decides(files):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedImageWarning)
        with pytest.raises(TruncatedImageWarning, match="cut.jpg"):
            list(read_images(files, workers=1))


def test_stopping_early_stops_the_workers(files):
    stream = read_images(files * 3, workers=2)
    assert next(stream).index == 0
    stream.close()  # no hang, no leftover
