"""Content digests that a signature binds to.

- `pixels-v1`: SHA-256 over every frame's mode, size and decoded pixels. Palette images are
  expanded and a fully opaque alpha channel is dropped, so metadata edits and lossless re-saves
  (PNG <-> TIFF <-> BMP, another PNG compressor) keep it, while any pixel change breaks it.
- `jpeg-scan-v1`: SHA-256 over a JPEG's segments other than metadata (APP0-APP15, COM) and
  without anything after EOI: no decode needed, so it costs a hash over the bytes, but it breaks
  on any re-encode. It is also blind to the signature's own COM segment.
- `pixels-v2`, `jpeg-scan-v2`: the v1 digest plus the presentation record (`presentation`): the
  metadata that decides what a viewer shows from those pixels (EXIF orientation, ICC profile, PNG
  gAMA/cHRM/sRGB/tRNS, the JPEG Adobe colour transform). v1 digests stay verifiable, but a v1
  signature survives a turned, mirrored or re-coloured presentation (`WEAK_BINDING`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from PIL import Image

from ..errors import MediaError
from ..media import Budgets, frames_of, opened

DIGEST_TYPES = ("pixels-v2", "jpeg-scan-v2", "pixels-v1", "jpeg-scan-v1")
PRESENTATION_BOUND = frozenset({"pixels-v2", "jpeg-scan-v2"})
WEAK_BINDING = "digest.presentationUnbound"  # the Provenance code for a v1 digest
ORIENTATION = 0x0112  # EXIF tag


@dataclass(frozen=True)
class Digest:
    type: str
    hex: str
    width: int
    height: int
    mode: str


def compute(digest_type: str, data: bytes, budgets: Budgets = Budgets(), name: str = "<bytes>") -> Digest:
    """One digest of `data`. Raises ValueError for an unknown type, MediaError for undecodable data
    (or jpeg-scan-* of a non-JPEG)."""
    return Content(data, budgets, name).digest(digest_type)


def compute_all(data: bytes, budgets: Budgets = Budgets(), name: str = "<bytes>") -> dict[str, Digest]:
    """Every digest type `data` has (jpeg-scan-* only for JPEGs); {} if undecodable."""
    return Content(data, budgets, name).all()


class Content:
    """One input's digests, each family computed at most once (a check asks for them when it
    verifies a signature, looks the registry up and compares each registered original it matched).

    Given to `moderate.media.decode` (`whole=`), it takes the header facts and the pixels of the
    frames decoded at full resolution from the check's own decode; a family decodes the input
    itself only for what that decode did not show (a DCT-scaled JPEG, a PDF)."""

    def __init__(self, data: bytes, budgets: Budgets = Budgets(), name: str = "<bytes>"):
        self.data, self.budgets, self.name = data, budgets, name
        self._header: tuple | None = None  # (format, width, height, mode, presentation record)
        self._pixels: _PixelHash | None = _PixelHash()  # None once a frame was decoded reduced
        self._families: dict = {}  # family -> its digests, or the MediaError it raised

    def begin(self, image: Image.Image) -> None:
        self._header = (image.format, image.width, image.height, image.mode, presentation(image))

    def frame(self, image: Image.Image, whole: bool) -> None:
        if self._pixels is not None and whole:
            self._pixels.add(image)
        else:
            self._pixels = None

    def digest(self, digest_type: str) -> Digest:
        family = _FAMILIES.get(digest_type)
        if family is None:
            raise ValueError(f"unknown digest type {digest_type!r} (expected one of {', '.join(DIGEST_TYPES)})")
        return self._family(family)[digest_type]

    def all(self) -> dict[str, Digest]:
        found: dict[str, Digest] = {}
        for family in dict.fromkeys(_FAMILIES.values()):
            try:
                found.update(self._family(family))
            except MediaError:
                continue
        return found

    def _family(self, family) -> dict[str, Digest]:
        if family not in self._families:
            try:
                self._families[family] = family(self)
            except MediaError as exc:
                self._families[family] = exc
        found = self._families[family]
        if isinstance(found, MediaError):
            raise found
        return found

    def header(self) -> tuple:
        """The opened image's header facts, opening it only if decoding did not."""
        if self._header is None:
            with opened(self.data, self.budgets, self.name) as image:
                self.begin(image)
        return self._header

    def pixels(self) -> "_PixelHash":
        """The hash of every frame at full resolution, decoding the input only if the check's own
        decode did not see them all whole."""
        if self._pixels is None or not self._pixels.frames:
            hashed = _PixelHash()
            with opened(self.data, self.budgets, self.name) as image:
                self.begin(image)  # before seeking: later frames may carry other header facts
                for _ in frames_of(image, self.budgets, self.name):
                    hashed.add(image)
            self._pixels = hashed
        return self._pixels


class _PixelHash:
    """pixels-v1's SHA-256 over every frame's canonical mode, size and pixels, one frame at a time."""

    def __init__(self):
        self.sha = hashlib.sha256(b"moderate/pixels-v1\n")
        self.frames = 0
        self.first: tuple[int, int, str] | None = None  # width, height, mode of the first frame

    def add(self, image: Image.Image) -> None:
        frame = _canonical(image)
        self.first = self.first or (frame.width, frame.height, frame.mode)
        self.frames += 1
        self.sha.update(f"{frame.mode} {frame.width} {frame.height}\n".encode())
        self.sha.update(frame.tobytes())


def presentation(image: Image.Image) -> bytes:
    """A canonical record of the header facts that decide how decoded pixels are displayed.

    Read from an opened (not yet decoded) Pillow image, so it is the same for every format that
    carries the same facts: a lossless re-save that keeps them keeps the record.
    """
    info = image.info
    try:
        orientation = image.getexif().get(ORIENTATION, 1)  # absent means 1 (as shot)
    except Exception:  # an unreadable EXIF block is bound as such rather than as "as shot"
        orientation = "unreadable"
    icc = info.get("icc_profile")
    transparency = info.get("transparency")
    facts = {
        "orientation": orientation if isinstance(orientation, int) else repr(orientation),
        "icc_sha256": hashlib.sha256(icc).hexdigest() if icc else None,
        "gamma": info.get("gamma"), "chromaticity": info.get("chromaticity"), "srgb": info.get("srgb"),
        "transparency": transparency.hex() if isinstance(transparency, bytes) else transparency,
        "adobe_transform": info.get("adobe_transform") if "adobe" in info else None,
    }
    return json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()


def _with_presentation(v1: Digest, shown: bytes) -> dict[str, Digest]:
    """The v1 digest and its v2 counterpart, which adds the presentation record."""
    v2_type = v1.type.replace("-v1", "-v2")
    v2 = hashlib.sha256(f"moderate/{v2_type}\n{v1.hex}\n".encode() + shown).hexdigest()
    return {v1.type: v1, v2_type: Digest(v2_type, v2, v1.width, v1.height, v1.mode)}


def _pixels(content: Content) -> dict[str, Digest]:
    hashed = content.pixels()
    *_, shown = content.header()
    return _with_presentation(Digest("pixels-v1", hashed.sha.hexdigest(), *hashed.first), shown)


def _canonical(image: Image.Image) -> Image.Image:
    image.load()
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    return image


def _jpeg_scan(content: Content) -> dict[str, Digest]:
    image_format, width, height, mode, shown = content.header()
    if image_format != "JPEG":
        raise MediaError(content.name, "unsupported_format", f"jpeg-scan digests need a JPEG, this is {image_format}")
    digest = hashlib.sha256(b"moderate/jpeg-scan-v1\n")
    for segment in jpeg_segments(content.data, content.name):
        marker = segment[1]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            continue
        digest.update(segment)
    return _with_presentation(Digest("jpeg-scan-v1", digest.hexdigest(), width, height, mode), shown)


_FAMILIES = {"pixels-v1": _pixels, "pixels-v2": _pixels, "jpeg-scan-v1": _jpeg_scan, "jpeg-scan-v2": _jpeg_scan}


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
