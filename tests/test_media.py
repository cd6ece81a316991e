"""Decoding within budgets: every allowed format, and every way an input can be refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from moderate import Budgets, MediaError
from moderate.media import decode
from moderate.signals import PDQ


@pytest.fixture(scope="module")
def astronaut(photos) -> Image.Image:
    return Image.open(photos["astronaut"]).convert("RGB")


@pytest.mark.parametrize("fmt, kwargs", [
    ("JPEG", {"quality": 90}), ("PNG", {}), ("BMP", {}), ("GIF", {}), ("TIFF", {}), ("WEBP", {"quality": 90}),
])
def test_each_allowed_format_decodes_to_the_same_picture(astronaut, fmt, kwargs):
    buffer = io.BytesIO()
    astronaut.save(buffer, fmt, **kwargs)
    media = decode(buffer.getvalue())
    assert media.format == fmt
    assert (media.width, media.height) == (512, 512)
    (frame,) = media.frames
    reference = PDQ.compute(np.asarray(astronaut))[0]
    assert reference.distance(PDQ.compute(frame.pixels)[0]) <= 20  # GIF's palette costs the most


def test_large_jpeg_is_decoded_with_dct_scaling_at_working_size(astronaut):
    buffer = io.BytesIO()
    astronaut.resize((4000, 3000)).save(buffer, "JPEG", quality=90)
    media = decode(buffer.getvalue())
    assert (media.width, media.height) == (4000, 3000)  # original size is reported
    assert media.frames[0].pixels.shape[:2] == (750, 1000)  # DCT-scaled by 1/4 while >= 512
    assert media.frames[0].scale == pytest.approx(1000 / 4000)
    png = io.BytesIO()
    astronaut.resize((3000, 2000)).save(png, "PNG")
    assert decode(png.getvalue()).frames[0].pixels.shape[:2] == (683, 1024)


def test_exif_orientation_is_applied(astronaut):
    wide = astronaut.resize((600, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    media = decode(buffer.getvalue())
    assert (media.width, media.height) == (300, 600)
    upright = np.asarray(wide.transpose(Image.Transpose.ROTATE_270))
    decoded = PDQ.compute(media.frames[0].pixels)[0]
    assert decoded.distance(PDQ.compute(upright)[0]) <= 31
    assert decoded.distance(PDQ.compute(np.asarray(wide))[0]) > 64  # not left sideways


def test_multipage_tiff_gives_each_page(astronaut):
    buffer = io.BytesIO()
    pages = [astronaut, astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), astronaut.convert("L").convert("RGB")]
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    media = decode(buffer.getvalue())
    assert [f.index for f in media.frames] == [0, 1, 2]


def test_transparency_is_flattened_on_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert decode(buffer.getvalue()).frames[0].pixels.min() == 255


def _refused(source, code, budgets=Budgets()) -> MediaError:
    with pytest.raises(MediaError) as info:
        decode(source, budgets, name="upload.bin")
    assert info.value.code == code, str(info.value)
    message = str(info.value)
    assert message.startswith("upload.bin: ") and "\n" not in message
    return info.value


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge canvas in a few bytes: the classic decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    error = _refused(_png_header_only(100_000, 100_000), "too_many_pixels")
    assert "max_pixels" in str(error)


def test_pixel_budget_is_configurable(astronaut):
    buffer = io.BytesIO()
    astronaut.save(buffer, "PNG")
    _refused(buffer.getvalue(), "too_many_pixels", Budgets(max_pixels=100_000))


def test_byte_budget(astronaut, tmp_path):
    buffer = io.BytesIO()
    astronaut.save(buffer, "PNG")
    _refused(buffer.getvalue(), "too_large", Budgets(max_bytes=10_000))
    path = tmp_path / "big.png"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(MediaError) as info:
        decode(path, Budgets(max_bytes=10_000))
    assert info.value.code == "too_large" and str(path) in str(info.value)


def test_frame_budgets():
    frames = [Image.new("RGB", (100, 100), (i * 20, 0, 0)) for i in range(12)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert len(decode(buffer.getvalue()).frames) == 12
    _refused(buffer.getvalue(), "too_many_frames", Budgets(max_frames=10))
    _refused(buffer.getvalue(), "too_many_pixels", Budgets(max_total_pixels=100 * 100 * 5))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_files_are_refused(astronaut, fmt):
    buffer = io.BytesIO()
    astronaut.save(buffer, fmt)
    whole = buffer.getvalue()
    error = _refused_any(whole[: len(whole) // 2])
    assert error.code in ("truncated", "corrupt", "unsupported_format")


def _refused_any(source) -> MediaError:
    with pytest.raises(MediaError) as info:
        decode(source, name="upload.bin")
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("payload, code", [
    (b"", "empty"),
    (b"GIF89a garbage garbage garbage", None),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unsupported_format"),  # EPS would run Ghostscript
    (b"%PDF-1.7\n1 0 obj\n", "corrupt"),  # routed to the PDF reader, which refuses it
    (bytes(range(256)) * 40, "unsupported_format"),
])
def test_garbage_and_unsupported_formats_are_refused(payload, code):
    error = _refused_any(payload)
    if code:
        assert error.code == code


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaError) as info:
        decode(tmp_path / "nope.jpg")
    assert info.value.code == "not_found"
    with pytest.raises(MediaError) as info:
        decode(tmp_path)
    assert info.value.code == "not_a_file"


def _tiff(pages: list[list[tuple[int, int, int, int]]], data: bytes) -> bytes:
    """A little-endian TIFF whose pages are given as raw IFD entries (tag, type, count, value); each
    page's strip or tile data is `data`, stored once at offset 8."""
    out = b"II*\x00" + struct.pack("<I", 8 + len(data) + len(data) % 2) + data + b"\x00" * (len(data) % 2)
    for i, tags in enumerate(pages):
        here = len(out)
        size = 2 + 12 * len(tags) + 4
        following = here + size if i + 1 < len(pages) else 0
        ifd = struct.pack("<H", len(tags))
        for tag, kind, count, value in sorted(tags):
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            ifd += struct.pack("<HHI", tag, kind, count) + packed
        out += ifd + struct.pack("<I", following)
    return out


def test_tiff_tile_bomb_is_refused_before_allocating():
    payload = zlib.compress(b"\x00" * (1 << 20), 9)
    tags = [(256, 4, 1, 64), (257, 4, 1, 64), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (277, 3, 1, 1),
            (284, 3, 1, 1), (322, 4, 1, 46336), (323, 4, 1, 46336), (324, 4, 1, 8), (325, 4, 1, len(payload))]
    error = _refused(_tiff([tags], payload), "too_many_pixels")
    assert "46336x46336 tile" in str(error)


def test_tiff_page_without_dimensions_is_a_media_error_not_a_crash():
    pixels = b"\x80" * 64
    base = [(256, 4, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1),
            (278, 4, 1, 8), (279, 4, 1, 64)]
    crafted = _tiff([base + [(257, 4, 1, 8)], base + [(999, 4, 1, 0)]], pixels)
    assert _refused_any(crafted).code in ("corrupt", "truncated")


def test_big_palette_animation_is_shrunk_before_conversion():
    frames = [Image.new("P", (6000, 4000), i) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    media = decode(buffer.getvalue())
    assert len(media.frames) == 3 and media.frames[0].pixels.shape == (683, 1024, 3)


def test_animated_webp_gives_each_frame(astronaut):
    frames = [astronaut, astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), astronaut.convert("L").convert("RGB")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=80, quality=85)
    media = decode(buffer.getvalue())
    assert media.format == "WEBP" and len(media.frames) == 3
    reference = PDQ.compute(np.asarray(astronaut))[0]
    assert reference.distance(PDQ.compute(media.frames[0].pixels)[0]) <= 20
    assert reference.distance(PDQ.compute(media.frames[1].pixels)[0]) > 64
