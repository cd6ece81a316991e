"""Where an own-scheme signature travels with an image, inserted without re-encoding a pixel.

- PNG: an iTXt chunk with keyword `moderate-signature`, placed before IEND.
- JPEG: a COM segment starting `moderate-signature:`, placed after the leading APPn segments
  (JFIF and Exif readers expect those first).
- Anything else, or on request: a detached `IMAGE.sig.json` beside the image.
Signing again replaces an earlier signature instead of stacking them.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ..errors import MediaError
from .digests import jpeg_segments

KEYWORD = b"moderate-signature"
JPEG_PREFIX = KEYWORD + b":"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kind_of(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    return None


def embed(data: bytes, envelope: bytes, name: str) -> bytes:
    """`data` with the envelope embedded (replacing an earlier one)."""
    kind = kind_of(data)
    if kind == "png":
        chunks = [c for c in _png_chunks(data, name) if not _is_ours(c)]
        itxt = KEYWORD + b"\x00\x00\x00\x00\x00" + envelope  # keyword, NUL, uncompressed, no language or translation
        ours = struct.pack(">I", len(itxt)) + b"iTXt" + itxt + struct.pack(">I", zlib.crc32(b"iTXt" + itxt))
        return PNG_MAGIC + b"".join(c for c in chunks[:-1]) + ours + chunks[-1]
    if kind == "jpeg":
        segments = [s for s in jpeg_segments(data, name) if not _is_our_comment(s)]
        body = JPEG_PREFIX + envelope
        if len(body) + 2 > 0xFFFF:
            raise MediaError(name, "too_large", "signature does not fit in one JPEG COM segment")
        comment = b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body
        at = 1
        while at < len(segments) and 0xE0 <= segments[at][1] <= 0xEF:
            at += 1
        return b"".join(segments[:at]) + comment + b"".join(segments[at:])
    raise MediaError(name, "unsupported_format", "only PNG and JPEG carry an embedded signature; use --detached")


def extract(data: bytes, name: str) -> bytes | None:
    """The embedded envelope, or None."""
    kind = kind_of(data)
    if kind == "png":
        for chunk in _png_chunks(data, name):
            if _is_ours(chunk):
                body = chunk[8:-4]
                return body[len(KEYWORD) + 5:]
    elif kind == "jpeg":
        for segment in jpeg_segments(data, name):
            if _is_our_comment(segment):
                return segment[4 + len(JPEG_PREFIX):]
    return None


def detached_path(image: Path) -> Path:
    return image.with_name(image.name + ".sig.json")


def _png_chunks(data: bytes, name: str) -> list[bytes]:
    """Raw chunks (length, type, body, CRC), IEND last."""
    chunks = []
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        end = pos + 12 + length
        if end > len(data):
            raise MediaError(name, "truncated", f"PNG chunk at byte {pos} runs past the end")
        chunks.append(data[pos:end])
        if data[pos + 4:pos + 8] == b"IEND":
            return chunks
        pos = end
    raise MediaError(name, "truncated", "PNG has no IEND chunk")


def _is_ours(chunk: bytes) -> bool:
    return chunk[4:8] == b"iTXt" and chunk[8:].startswith(KEYWORD + b"\x00")


def _is_our_comment(segment: bytes) -> bool:
    return segment[1] == 0xFE and segment[4:].startswith(JPEG_PREFIX)
