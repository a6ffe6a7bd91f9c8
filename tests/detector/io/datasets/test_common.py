"""detector.io.datasets.common: class files (one name a line, or ILSVRC's map_det.txt)."""

import pytest

from backbone.errors import UserError
from detector.io.datasets import read_class_file


def test_class_file_formats(tmp_path, test_data):
    f = tmp_path / "dup.txt"
    f.write_text("a\nb\na\n")
    with pytest.raises(UserError, match=r"dup\.txt line 3: class 'a' already on line 1"):
        read_class_file(str(f))
    f.write_text("n02691156 2 airplane\nn02672831 1 accordion\n")
    cl = read_class_file(str(f))
    assert cl.names == ["n02672831", "n02691156"] and cl.display == ["accordion", "airplane"] and cl.ids == [1, 2]
    with pytest.raises(UserError, match="no such file|cannot read"):
        read_class_file(str(tmp_path / "none.txt"))
