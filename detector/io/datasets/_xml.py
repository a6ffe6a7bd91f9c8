"""A small XML reader that remembers the line of every element, so errors can name it.

``xml.etree`` drops line numbers; a malformed annotation is much easier to fix when the
message says ``Annotations/x.xml line 17: <xmin> is not a number``. We drive expat (C) with an
ElementTree ``TreeBuilder`` and attach ``elem.line`` at each start tag.

Annotations never need a DTD: any document type or entity declaration is refused with one
line (as defusedxml does for expat, which we drive directly for the line numbers), so no
entity is expanded (no "billion laughs", small or large) and no external file is read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat

from backbone.errors import UserError


class _Refused(Exception):
    def __init__(self, what: str, line: int):
        self.what, self.line = what, line


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

    def refuse(what):
        def handler(*args):
            raise _Refused(what, parser.CurrentLineNumber)
        return handler

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse("a DTD (<!DOCTYPE ...>)")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
        root = builder.close()
    except _Refused as e:
        raise UserError(f"{path} line {e.line}: holds {e.what}; annotations with DTD or entity "
                        "declarations are refused (they are never expanded)") from None
    except RecursionError:
        raise UserError(f"{path}: malformed XML (nested too deeply)") from None
    except expat.ExpatError as e:
        raise UserError(f"{path} line {e.lineno}: malformed XML ({expat.ErrorString(e.code)})") from None
    except AssertionError:  # TreeBuilder: no root element
        raise UserError(f"{path} line 1: malformed XML (no element found)") from None
    return root
