"""Character set labels and the fallback decoding, as browsers do them.

Two rules of the WHATWG Encoding Standard that Python's codecs do not follow by themselves:

* the labels ``iso-8859-1``, ``latin1``, ``us-ascii`` and their aliases mean
  windows-1252, the superset every browser decodes them with (pages labelled Latin-1 use
  its curly quotes, dashes and euro sign, which Latin-1 would turn into control codes);
* bytes with no label are UTF-8 when they are valid UTF-8, else windows-1252 (the legacy
  default), rather than UTF-8 with replacement characters: ``café`` saved by an old editor
  stays ``café``, not ``caf�``.
"""

from __future__ import annotations

import codecs

__all__ = ["codec_for", "decode_bom", "decode_unlabelled"]

# A byte-order mark decides the encoding before any label (WHATWG "BOM sniff").
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_WINDOWS_1252 = frozenset(
    {
        "ansi_x3.4-1968",
        "ascii",
        "cp1252",
        "cp819",
        "csisolatin1",
        "ibm819",
        "iso-8859-1",
        "iso-ir-100",
        "iso8859-1",
        "iso88591",
        "iso_8859-1",
        "iso_8859-1:1987",
        "l1",
        "latin1",
        "latin-1",
        "us-ascii",
        "windows-1252",
        "x-cp1252",
    }
)


def codec_for(label: str) -> str | None:
    """The Python codec for a charset ``label`` (``"ISO-8859-1"`` → ``"cp1252"``), or None
    when Python knows no such codec."""
    name = label.strip().strip("\"'").lower()
    if name in _WINDOWS_1252:
        return "cp1252"
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_unlabelled(data: bytes) -> str:
    """Bytes that name no charset: UTF-8 if they are valid UTF-8, else windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decode_bom(data: bytes) -> str | None:
    """``data`` decoded by its byte-order mark (UTF-8, UTF-16 LE or BE), without the mark;
    None when it starts with none."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(name, errors="replace")
    return None
