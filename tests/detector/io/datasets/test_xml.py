"""detector.io.datasets._xml: line numbers, and no DTD or entity is ever expanded."""

import pytest

from backbone.errors import UserError
from detector.io.datasets._xml import parse_xml


def test_lines_are_kept(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text("<annotation>\n  <object>\n    <name>RBC</name>\n  </object>\n</annotation>\n")
    root = parse_xml(str(p))
    assert root.find("object").line == 2 and root.find("object/name").text == "RBC"


@pytest.mark.parametrize("doc", [
    '<!DOCTYPE a [<!ENTITY x "hello">]>\n<annotation><object><name>&x;</name></object></annotation>',
    '<!DOCTYPE a [<!ENTITY a "1234567890"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<annotation>&b;</annotation>',
    '<!DOCTYPE a SYSTEM "http://example.com/a.dtd">\n<annotation><filename>&ext;</filename></annotation>',
    '<!DOCTYPE a [<!ENTITY ext SYSTEM "file:///etc/passwd">]>\n<annotation>&ext;</annotation>',
])
def test_dtd_and_entities_are_refused_with_one_line(tmp_path, doc):
    p = tmp_path / "bad.xml"
    p.write_text('<?xml version="1.0"?>\n' + doc + "\n")
    with pytest.raises(UserError, match=r"bad\.xml line 2: holds a DTD .* refused") as e:
        parse_xml(str(p))
    assert "\n" not in str(e.value)
