"""A small XML reader that remembers the line of every element, so errors can name it.

``xml.etree`` drops line numbers; a malformed annotation is much easier to fix when the
message says ``Annotations/x.xml line 17: <xmin> is not a number``. We drive expat (C) with an
ElementTree ``TreeBuilder`` and attach ``elem.line`` at each start tag.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat

from backbone.errors import UserError


class LineElement(ET.Element):
    """An Element with the 1-based source line of its start tag."""

    line: int = 0


def parse_xml(path: str) -> LineElement:
    """Parse ``path`` into an element tree whose elements carry ``.line``.

    Raises :class:`UserError` naming the file and line for unreadable or malformed XML.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    builder = ET.TreeBuilder(element_factory=LineElement)
    parser = expat.ParserCreate()

    def start(tag, attrs):
        elem = builder.start(tag, attrs)
        elem.line = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as e:
        raise UserError(f"{path} line {e.lineno}: malformed XML ({expat.ErrorString(e.code)})") from None
    except AssertionError:  # TreeBuilder: no root element
        raise UserError(f"{path} line 1: malformed XML (no element found)") from None
    return root
