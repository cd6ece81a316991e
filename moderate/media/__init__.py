"""Decoding inputs into frames, within budgets.

Uploads are hostile: a 40 kB PNG can declare a gigapixel canvas, a small GIF can hold thousands of
frames. Every input goes through `decode`, which reads at most `max_bytes`, lets Pillow open only
the formats on the allow-list (never EPS or other formats that shell out), checks the declared size
before any pixel is decoded, and stops at the frame and total-pixel budgets. Anything refused raises
`MediaError` with a stable code; the caller applies the policy's `on_error` verdict.

Signals do not need full resolution, so frames are decoded at a working size: JPEGs use DCT-domain
scaling (Pillow's `draft`) to at least half of it, which skips most of the decoding work, and
anything larger is then resized to fit the working size.
"""

from __future__ import annotations

import functools
import hashlib
import io
import errno
import os
import stat
import struct
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Protocol, Union

import numpy as np
from PIL import Image, ImageOps

from ..errors import MediaError
from .pixels import Budgets, Frame, fitted_rgb, nearest, stretched  # Budgets, Frame: re-exported

# Formats Pillow may open (never EPS, which runs Ghostscript). HEIF needs the optional pillow-heif.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "AVIF", "HEIF")
RASTER_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")

Source = Union[str, os.PathLike, bytes, BinaryIO]


@dataclass(frozen=True, eq=False)
class Media:
    """A decoded input: where it came from, what it is, and its frames."""

    source: str
    format: str
    width: int
    height: int
    sha256: str
    size_bytes: int
    frames: tuple[Frame, ...]
    data: bytes = field(repr=False)


def describe(source: Source) -> str:
    """The name an input goes by in verdicts and error messages."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        return "<stdin>" if name == "-" else name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return getattr(source, "name", None) or "<stream>"


def read_file(path: str | os.PathLike, limit: int = 1 << 20) -> bytes:
    """A small file a command names (a key, a certificate, a policy): a regular file only, at most
    `limit` bytes. MediaError (`not_a_file`, `too_large`, `not_found`, ...) otherwise, never a hang."""
    return read_bytes(path, Budgets(max_bytes=limit), os.fspath(path))


def read_bytes(source: Source, budgets: Budgets, name: str | None = None) -> bytes:
    """Read a source's bytes, refusing anything larger than `max_bytes` without reading it all."""
    name = name or describe(source)
    limit = budgets.max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)) and os.fspath(source) == "-":
        data = sys.stdin.buffer.read(limit + 1)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_regular_file(source, limit, name)
    else:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise MediaError(name, "too_large", f"input is over the max_bytes budget of {limit} bytes")
    if not data:
        raise MediaError(name, "empty", "input is empty")
    return data


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _read_regular_file(path: str | os.PathLike, limit: int, name: str) -> bytes:
    """Read a regular file, never anything else: opening a FIFO blocks until a writer comes, a
    device (/dev/zero) never ends, a socket cannot be opened. The path is checked before it is
    opened, and the opened file again (O_NONBLOCK: a path swapped for a FIFO in between must not
    block the open), so every path problem is this input's error, never a hang."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            _refuse_not_regular(mode, name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                _refuse_not_regular(status.st_mode, name)
            if status.st_size > limit:
                raise MediaError(name, "too_large", f"file is {status.st_size} bytes, over the max_bytes budget of {limit}")
            os.set_blocking(fd, True)
            return fh.read(limit + 1)
    except OSError as exc:
        raise path_error(name, exc) from None
    except ValueError:  # a NUL character in the path
        raise MediaError(name, "bad_path", "the path contains a NUL character") from None


def _refuse_not_regular(mode: int, name: str) -> None:
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
    hint = " (use --recursive or name the files)" if stat.S_ISDIR(mode) else ""
    raise MediaError(name, "not_a_file", f"is {kind}, not a regular file{hint}")


def path_error(name: str, exc: OSError) -> MediaError:
    """The input error for a path that cannot be opened or read."""
    code, detail = {
        errno.ENOENT: ("not_found", "no such file"),
        errno.ENOTDIR: ("not_found", "a part of the path is not a folder"),
        errno.EACCES: ("unreadable", "permission denied"),
        errno.EPERM: ("unreadable", "permission denied"),
        errno.ELOOP: ("bad_path", "too many levels of symbolic links (a symlink loop)"),
        errno.ENAMETOOLONG: ("bad_path", "file name too long"),
        errno.EISDIR: ("not_a_file", "is a directory, not a regular file"),
        errno.ENXIO: ("not_a_file", "is not a regular file (no such device or address)"),
    }.get(exc.errno, ("unreadable", f"cannot read: {exc.strerror or exc}"))
    return MediaError(name, code, detail)


def is_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder; a path that cannot even be looked at is not (reading it then
    reports why, as that input's error)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


class WholeFrames(Protocol):
    """What `decode` shows the pixels it decodes: `begin` the opened image (header facts, nothing
    decoded yet), then `frame` each frame once decoded, `whole` telling whether at full resolution
    (a JPEG over twice the working size is decoded DCT-scaled)."""

    def begin(self, image: Image.Image) -> None: ...

    def frame(self, image: Image.Image, whole: bool) -> None: ...


def decode(source: Source, budgets: Budgets = Budgets(), working_size: int = 1024, name: str | None = None,
           whole: WholeFrames | None = None) -> Media:
    """Read and decode `source` into frames whose longest side is at most `working_size`.

    Routing is by content (magic bytes), never by file name: a PDF named .jpg is a PDF. `whole`
    is shown each raster frame as decoded, before it is reduced, so that what needs full-resolution
    pixels (provenance's pixel digests) does not decode the input again."""
    name = name or describe(source)
    data = read_bytes(source, budgets, name)
    deadline = time.monotonic() + budgets.max_seconds
    kind = sniff(data)
    if kind == "pdf":
        from .documents import pdf_frames

        return _media(name, "PDF", data, pdf_frames(data, budgets, working_size, name, deadline))
    if kind in ("wmf", "emf"):
        from .documents import metafile_frames

        return _media(name, kind.upper(), data, metafile_frames(data, kind, budgets, working_size, name, deadline))
    if kind == "heif" and not _heif_available():
        raise MediaError(name, "unsupported_format", "HEIC/HEIF input needs the optional extra: pip install 'moderate[heif]'")
    with opened(data, budgets, name) as image:
        if whole is not None:
            whole.begin(image)
        frames = [_working_frame(image, index, working_size, data, whole)
                  for index in frames_of(image, budgets, name, deadline)]
        return _media(name, image.format or "UNKNOWN", data, frames)


def sniff(data: bytes) -> str:
    """What an input is, from its first bytes: pdf, wmf, emf, heif, or image (left to Pillow)."""
    if data.startswith(RASTER_MAGIC):  # a picture first: "%PDF-" inside a PNG text chunk is not a PDF
        return "heif" if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS else "image"
    if b"%PDF-" in data[:1024]:  # PDF readers accept a header anywhere in the first kilobyte
        return "pdf"
    if data[:4] == b"\xd7\xcd\xc6\x9a" or data[:6] in (b"\x01\x00\x09\x00\x00\x03", b"\x02\x00\x09\x00\x00\x03"):
        return "wmf"
    if data[:4] == b"\x01\x00\x00\x00" and data[40:44] == b" EMF":
        return "emf"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "heif"
    return "image"


@functools.cache
def _openable() -> tuple[str, ...]:
    """The allowed formats this Pillow can open (HEIF only once pillow-heif registered itself)."""
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)


def _heif_available() -> bool:
    """pillow-heif is optional (its wheels bundle GPL x265); register its Pillow opener if present."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    _openable.cache_clear()
    return True


def _media(name: str, fmt: str, data: bytes, frames: list[Frame]) -> Media:
    if not frames:
        raise MediaError(name, "empty", "no pictures in the input")
    return Media(
        source=name, format=fmt, width=frames[0].width, height=frames[0].height,
        sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), frames=tuple(frames), data=data,
    )


@contextmanager
def opened(data: bytes, budgets: Budgets, name: str) -> Iterator[Image.Image]:
    """A Pillow image of `data` whose declared size is within budget; decoder failures inside the
    block become `MediaError`s naming `name`."""
    try:
        with warnings.catch_warnings():
            # Our own pixel budget decides; Pillow's bomb check stays as a backstop above it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if _lacks_end_marker(data):
                data = _ended_jpeg(data, budgets, name)
            with _open_within(data, budgets, name) as image:
                yield image
    except MediaError:
        raise
    except Image.DecompressionBombError:
        raise MediaError(
            name, "too_many_pixels",
            f"declares over {2 * Image.MAX_IMAGE_PIXELS} pixels (decompression bomb), over the max_pixels budget of {budgets.max_pixels}",
        ) from None
    except Image.UnidentifiedImageError:
        raise MediaError(name, "unsupported_format", f"not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        code = "truncated" if "truncated" in detail or isinstance(exc, EOFError) else "corrupt"
        raise MediaError(name, code, f"cannot decode: {detail}") from None
    except MemoryError:
        raise MediaError(name, "too_many_pixels", "decoder ran out of memory") from None
    except Exception as exc:  # crafted files raise TypeError, KeyError, ... from plugin internals
        raise MediaError(name, "corrupt", f"cannot decode: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def _open_within(data: bytes, budgets: Budgets, name: str) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=_openable())
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise MediaError(name, "corrupt", f"declares an empty {width}x{height} image")
    if width * height > budgets.max_pixels:
        image.close()
        raise MediaError(
            name, "too_many_pixels",
            f"declares {width}x{height} = {width * height} pixels, over the max_pixels budget of {budgets.max_pixels}",
        )
    return image


def _lacks_end_marker(data: bytes) -> bool:
    """A JPEG whose picture data runs to the end of the file without an EOI marker.

    Segments before the first scan are skipped by their lengths (an EXIF thumbnail carries an EOI
    of its own); after it, 0xFFD9 can only be the EOI, since scan data stuffs every 0xFF."""
    if not data.startswith(b"\xff\xd8"):
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a marker where one belongs: leave it to the decoder to refuse
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1  # fill byte
        elif marker == 0xDA:
            return data.find(b"\xff\xd9", pos) < 0
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False


# Two unrelated fills: entropy-coded data that is complete ignores what follows it, data cut short
# decodes them as its missing bits (one fill alone matched a cut file's pixels about once in 200
# cuts of progressive files; two never did in 1,100).
_SCAN_FILLS = (b"\x5a\xa5\x3c\xc3" * 16, b"\xb6\xdb\x6d" * 20)


def _ended_jpeg(data: bytes, budgets: Budgets, name: str) -> bytes:
    """`data` with the EOI marker it lacks, when only the marker is missing (viewers show such a
    file whole); a file cut inside its scan data stays refused as truncated.

    The decoder hits the added EOI either after the last scan's data or in the middle of it: the
    pixels then differ with what comes between the data and the EOI."""
    ended = data + b"\xff\xd9"
    cut = MediaError(name, "truncated", "cannot decode: JPEG scan data is cut short (truncated)")
    first = None
    for candidate in (ended, *(data + fill + b"\xff\xd9" for fill in _SCAN_FILLS)):
        with _open_within(candidate, budgets, name) as image:
            try:
                image.load()
            except OSError:
                raise cut from None  # the data before the EOI (or a fill) is not a whole scan
            pixels = np.asarray(image)
        if first is None:
            first = pixels
        elif not np.array_equal(first, pixels):
            raise cut
    return ended


def frames_of(image: Image.Image, budgets: Budgets, name: str, deadline: float | None = None) -> Iterator[int]:
    """Seek through an image's frames, enforcing the frame, total-pixel and time budgets; yields indexes."""
    total_pixels = 0
    index = 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise MediaError(name, "too_slow", f"decoding took over the max_seconds budget of {budgets.max_seconds} s")
        if index >= budgets.max_frames:
            raise MediaError(name, "too_many_frames", f"has more than the max_frames budget of {budgets.max_frames} frames")
        frame_pixels = image.size[0] * image.size[1]
        total_pixels += frame_pixels
        if frame_pixels > budgets.max_pixels:
            raise MediaError(name, "too_many_pixels", f"frame {index} is over the max_pixels budget of {budgets.max_pixels}")
        if total_pixels > budgets.max_total_pixels:
            raise MediaError(
                name, "too_many_pixels", f"frames add up to over the max_total_pixels budget of {budgets.max_total_pixels}"
            )
        _check_tiles(image, budgets, name, index)
        yield index
        index += 1
        try:
            image.seek(index)
        except EOFError:
            return


def _check_tiles(image: Image.Image, budgets: Budgets, name: str, index: int) -> None:
    """Refuse tiles or strips that declare more pixels than the budget: a 1 kB TIFF can declare a
    64x64 page made of one 46336x46336 tile, and the decoder would allocate the whole tile."""
    boxes = [(x1 - x0, y1 - y0) for _, (x0, y0, x1, y1), *_ in getattr(image, "tile", None) or ()]
    tags = getattr(image, "tag_v2", None)
    if tags is not None:  # libtiff decodes whole tiles and strips, whatever Pillow's tile list says
        boxes.append((tags.get(322) or 0, tags.get(323) or 0))
        boxes.append((image.width, min(tags.get(278) or 0, image.height)))
    for w, h in boxes:
        if w * h > budgets.max_pixels:
            raise MediaError(
                name, "too_many_pixels", f"frame {index} has a {w}x{h} tile, over the max_pixels budget of {budgets.max_pixels}"
            )


def _working_frame(image: Image.Image, index: int, working_size: int, data: bytes = b"",
                   whole: WholeFrames | None = None) -> Frame:
    declared = image.size
    if image.format in ("JPEG", "MPO"):  # MPO: phone cameras' multi-picture JPEG
        # DCT scaling: decode directly at 1/2, 1/4 or 1/8 while staying >= half the working size.
        image.draft(None, (working_size // 2, working_size // 2))
    image.load()
    if whole is not None:
        whole.frame(image, image.size == declared)
    key = _colour_key(image, _png_bit_depth(data))
    # A colour key becomes an alpha channel before anything resamples it away; the keyed image
    # keeps its EXIF, so orientation is applied as for any other.
    shown = _keyed(image, key, working_size, data) if key is not None else image
    oriented = ImageOps.exif_transpose(shown)
    turned = oriented.size != shown.size
    width, height = (declared[1], declared[0]) if turned else declared
    return Frame(index=index, width=width, height=height, pixels=fitted_rgb(oriented, working_size))


def _png_bit_depth(data: bytes) -> int:
    """Bits per sample of a PNG (from IHDR); 8 for anything else."""
    return data[24] if data[12:16] == b"IHDR" and len(data) > 24 else 8


def _colour_key(image: Image.Image, png_depth: int):
    """A PNG's tRNS colour key (RGB, grey, 16-bit) in the units of the decoded samples, or None.

    Palette transparency is the palette's alpha, which Pillow applies itself. Pillow keeps the key
    in the file's units: a 2- or 4-bit grey key must be scaled as the samples were, and 16-bit RGB
    samples are reduced to 8 bits, so the key is matched in the file's own 16-bit samples."""
    key = image.info.get("transparency")
    if image.mode == "RGB" and isinstance(key, tuple) and len(key) == 3:
        return key if png_depth != 16 else ("rgb16", key)
    if image.mode in ("1", "L", "I;16", "I") and isinstance(key, int) and not isinstance(key, bool):
        return key * 255 // (2 ** png_depth - 1) if image.mode == "L" and png_depth in (2, 4) else key
    return None


def _keyed(image: Image.Image, key, working_size: int, data: bytes) -> Image.Image:
    """An RGBA image whose alpha is 0 where the samples equal the colour key.

    Shrunk by nearest neighbour first, as palettes are: any other resampling would blend the key
    into its neighbours, and no pixel would equal it any more."""
    if isinstance(key, tuple) and key[0] == "rgb16":
        opaque = _opaque_rgb16(image, key[1], data)
    else:
        samples = np.asarray(image.convert("L") if image.mode == "1" else image)
        opaque = (samples != np.asarray(key)).any(axis=2) if samples.ndim == 3 else samples != key
    small = nearest(image, working_size)
    if small is not image:
        opaque = np.asarray(nearest(Image.fromarray(opaque), working_size))
    samples = np.asarray(small.convert("L") if small.mode == "1" else small)
    if samples.dtype != np.uint8:  # 16-bit grey: stretched over the pixels that are shown
        samples = stretched(samples, opaque)
    colour = samples if samples.ndim == 3 else np.repeat(samples[..., None], 3, axis=2)
    keyed = Image.fromarray(np.dstack([colour, np.where(opaque, 255, 0).astype(np.uint8)]), "RGBA")
    keyed.info = {k: v for k, v in image.info.items() if k != "transparency"}  # EXIF and XMP orientation
    return keyed


def _opaque_rgb16(image: Image.Image, key: tuple[int, int, int], data: bytes) -> np.ndarray:
    """Where a 16-bit RGB PNG differs from its key, decided on the 16-bit samples (libpng, through
    OpenCV, applies the key): a pixel one step off a dark key is shown, and must be hashed."""
    import cv2

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if image.tell() == 0 else None
    if decoded is None or decoded.ndim != 3 or decoded.shape[2] != 4 or decoded.shape[:2] != image.size[::-1]:
        samples = np.asarray(image)  # an animation's later frame: the high bytes are all Pillow has
        return (samples != np.asarray([k >> 8 for k in key])).any(axis=2)
    return decoded[..., 3] > 0
