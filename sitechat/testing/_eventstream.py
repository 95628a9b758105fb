"""Encode AWS event-stream messages, the binary framing Bedrock's ``converse-stream`` uses.

The local Bedrock server writes these frames so that botocore's real decoder (prelude CRC,
header parsing, message CRC) runs in tests exactly as it does against AWS. Layout of one
message, all integers big-endian::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers: name length (u8) | name | type 7 = string (u8) | value length (u16) | value
    payload
    message CRC32 (u32) over everything before it
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["encode_event", "encode_exception", "encode_message"]

_STRING_HEADER = 7
_PRELUDE_LENGTH = 12
_CRC_LENGTH = 4


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    parts = []
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        parts.append(
            struct.pack(">B", len(raw_name))
            + raw_name
            + struct.pack(">BH", _STRING_HEADER, len(raw_value))
            + raw_value
        )
    return b"".join(parts)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One complete event-stream message with both CRCs."""
    raw_headers = _encode_headers(headers)
    total = _PRELUDE_LENGTH + len(raw_headers) + len(payload) + _CRC_LENGTH
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def encode_event(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """A normal event such as ``contentBlockDelta`` with a JSON payload."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(payload, separators=(",", ":")).encode("utf-8"),
    )


def encode_exception(exception_type: str, message: str) -> bytes:
    """An exception event (``throttlingException``…); botocore raises ``EventStreamError``."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode("utf-8"),
    )
