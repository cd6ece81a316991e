"""Content digests that a signature binds to.

- `pixels-v1`: SHA-256 over every frame's mode, size and decoded pixels. Palette images are
  expanded and a fully opaque alpha channel is dropped, so metadata edits and lossless re-saves
  (PNG <-> TIFF <-> BMP, another PNG compressor) keep it, while any pixel change breaks it.
- `jpeg-scan-v1`: SHA-256 over a JPEG's segments other than metadata (APP0-APP15, COM) and
  without anything after EOI: no decode needed, so it costs a hash over the bytes, but it breaks
  on any re-encode. It is also blind to the signature's own COM segment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

from ..errors import MediaError
from ..media import Budgets, frames_of, opened

DIGEST_TYPES = ("pixels-v1", "jpeg-scan-v1")


@dataclass(frozen=True)
class Digest:
    type: str
    hex: str
    width: int
    height: int
    mode: str


def compute(digest_type: str, data: bytes, budgets: Budgets = Budgets(), name: str = "<bytes>") -> Digest:
    if digest_type == "pixels-v1":
        return pixels_v1(data, budgets, name)
    if digest_type == "jpeg-scan-v1":
        return jpeg_scan_v1(data, budgets, name)
    raise ValueError(f"unknown digest type {digest_type!r} (expected one of {', '.join(DIGEST_TYPES)})")


def pixels_v1(data: bytes, budgets: Budgets, name: str) -> Digest:
    digest = hashlib.sha256(b"moderate/pixels-v1\n")
    first: Image.Image | None = None
    with opened(data, budgets, name) as image:
        for _ in frames_of(image, budgets, name):
            frame = _canonical(image)
            first = first or frame
            digest.update(f"{frame.mode} {frame.width} {frame.height}\n".encode())
            digest.update(frame.tobytes())
        assert first is not None
        return Digest("pixels-v1", digest.hexdigest(), first.width, first.height, first.mode)


def _canonical(image: Image.Image) -> Image.Image:
    image.load()
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    return image


def jpeg_scan_v1(data: bytes, budgets: Budgets, name: str) -> Digest:
    with opened(data, budgets, name) as image:
        if image.format != "JPEG":
            raise MediaError(name, "unsupported_format", f"jpeg-scan-v1 needs a JPEG, this is {image.format}")
        width, height, mode = image.width, image.height, image.mode
    digest = hashlib.sha256(b"moderate/jpeg-scan-v1\n")
    for segment in jpeg_segments(data, name):
        marker = segment[1]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            continue
        digest.update(segment)
    return Digest("jpeg-scan-v1", digest.hexdigest(), width, height, mode)


def jpeg_segments(data: bytes, name: str) -> list[bytes]:
    """Split a JPEG into its marker segments; entropy-coded data stays with the SOS before it.

    Ends at EOI: trailing bytes are not part of the picture.
    """
    if data[:2] != b"\xff\xd8":
        raise MediaError(name, "corrupt", "not a JPEG (no SOI marker)")
    segments = [data[:2]]
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise MediaError(name, "corrupt", f"JPEG marker expected at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        start = pos - 1
        pos += 1
        if marker == 0xD9:  # EOI
            segments.append(data[start:pos])
            return segments
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            segments.append(data[start:pos])
            continue
        if pos + 2 > len(data):
            raise MediaError(name, "truncated", "JPEG segment header cut off")
        length = int.from_bytes(data[pos:pos + 2], "big")
        end = pos + length
        if length < 2 or end > len(data):
            raise MediaError(name, "truncated", f"JPEG segment at byte {start} runs past the end")
        if marker == 0xDA:  # SOS: entropy-coded data runs to the next marker that is not RST or stuffing
            scan = end
            while True:
                scan = data.find(b"\xff", scan)
                if scan < 0 or scan + 1 >= len(data):
                    raise MediaError(name, "truncated", "JPEG scan data has no end marker")
                following = data[scan + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    scan += 1 if following == 0xFF else 2
                    continue
                break
            end = scan
        segments.append(data[start:end])
        pos = end
    raise MediaError(name, "truncated", "JPEG has no EOI marker")
