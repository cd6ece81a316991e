"""Pixels as viewers show them (issue #12, items 5, 8 and 19), and a property test of the decode path.

Item 5: transparency given by metadata (a PNG tRNS colour key on RGB, grey, 16-bit and low bit
depths; palette transparency) is composited on white exactly like an alpha channel.
Item 8: pictures under 16 px a side get a verdict (allow as unmatchable, by `on_low_quality`).
Item 19: a JPEG missing only its EOI marker is decoded; one cut inside its scan data is not.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps

from moderate import MediaError
from moderate.media import decode
from moderate.signals import PDQ


def png(samples: np.ndarray, colour_type: int, depth: int, trns: bytes | None = None, palette=None, exif: bytes = b"") -> bytes:
    """A PNG written chunk by chunk from raw samples (Pillow cannot write 16-bit RGB, 2-bit grey
    or their tRNS keys)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = samples.shape[:2]
    rows = samples.reshape(height, width, -1)
    if depth == 16:
        raw = [row.astype(">u2").tobytes() for row in rows]
    elif depth == 8:
        raw = [row.astype(np.uint8).tobytes() for row in rows]
    else:  # 1, 2 or 4 bits a sample, packed from the high bits of each byte
        bits = [np.unpackbits(row.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - depth:].reshape(-1) for row in rows]
        raw = [np.packbits(b).tobytes() for b in bits]
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    if exif:
        out += chunk(b"eXIf", exif)
    return out + chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in raw))) + chunk(b"IEND", b"")


def on_white(colour: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """What a viewer shows: `colour` where `shown`, white elsewhere."""
    colour = colour if colour.ndim == 3 else np.repeat(colour[..., None], 3, axis=2)
    return np.where(shown[..., None], colour, 255).astype(np.uint8)


def logo(size: int = 256, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A generated logo: dark shapes (RGB) and where they are (the rest is background)."""
    rng = np.random.default_rng(seed)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(14):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 16, size // 5))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=255)
    shown = np.asarray(mask) > 0
    colour = np.zeros((size, size, 3), np.uint8)
    colour[...] = (40, 60, 140)
    colour[size // 2:] = (120, 30, 40)
    return colour, shown


# -- item 5: colour keys and palette transparency -------------------------------------------------


def test_rgb_png_with_a_colour_key_is_checked_as_shown(engine, tmp_path):
    """Issue #12 item 5: a logo on a tRNS key colour. Viewers show it on white; hashing the hidden
    key colour (here black, under dark shapes) put it 98 bits away and let it through."""
    colour, shown = logo()
    reference = tmp_path / "logo.png"
    Image.fromarray(on_white(colour, shown)).save(reference)
    engine.banks.create("LOGOS", action="block")
    engine.banks.add("LOGOS", [reference])
    keyed = np.where(shown[..., None], colour, 0).astype(np.uint8)
    upload = tmp_path / "upload.png"
    Image.fromarray(keyed).save(upload, transparency=(0, 0, 0))
    assert "transparency" in Image.open(upload).info and Image.open(upload).mode == "RGB"
    assert np.array_equal(decode(upload).frames[0].pixels, on_white(colour, shown))
    verdict = engine.check(upload)
    assert verdict.verdict == "block" and verdict.reasons[0].reference_id == "logo"


@pytest.mark.parametrize("case", ["grey8", "grey2", "grey4", "grey1", "rgb16", "palette", "grey16"])
def test_every_colour_key_and_palette_transparency_is_composited(case):
    rng = np.random.default_rng(7)
    shown = rng.random((40, 48)) < 0.6
    if case.startswith("grey") and case != "grey16":
        depth = int(case[4:])
        top = 2 ** depth - 1
        samples = np.where(shown, rng.integers(1, top + 1, shown.shape), 0)  # the key is 0
        data = png(samples, 0, depth, struct.pack(">H", 0))
        expected = on_white((samples * (255 // top)).astype(np.uint8), shown)
    elif case == "rgb16":  # the shapes are one 16-bit step off the key: black to the eye, yet shown
        key = (0x0102, 0x0304, 0x0506)
        samples = np.empty((40, 48, 3), np.uint16)
        samples[...] = key
        samples[shown] = (0x0102, 0x0304, 0x0507)
        data = png(samples, 2, 16, struct.pack(">HHH", *key))
        expected = on_white(np.full((40, 48, 3), (1, 3, 5), np.uint8), shown)
    elif case == "palette":  # tRNS on a palette: one alpha per entry, here 0, 255 and 128
        samples = np.where(shown, rng.integers(1, 3, shown.shape), 0)
        data = png(samples, 3, 8, bytes([0, 255, 128]), palette=[(0, 0, 0), (200, 20, 20), (20, 20, 200)])
        rgba = np.array([(0, 0, 0, 0), (200, 20, 20, 255), (20, 20, 200, 128)], np.uint8)[samples]
        expected = np.asarray(Image.alpha_composite(Image.new("RGBA", (48, 40), "white"), Image.fromarray(rgba)).convert("RGB"))
    else:  # 16-bit grey: the key's pixels are white, the rest keeps its levels
        samples = np.where(shown, rng.integers(1000, 60000, shown.shape), 500).astype(np.uint16)
        data = png(samples, 0, 16, struct.pack(">H", 500))
        pixels = decode(data).frames[0].pixels
        order = np.argsort(samples[shown])  # levels keep their order, the hidden key's colour plays no part
        assert (pixels[~shown] == 255).all() and (np.diff(pixels[shown][order, 0].astype(int)) >= 0).all()
        assert pixels[shown].min() == 0 and pixels[shown].max() == 255
        return
    assert np.array_equal(decode(data).frames[0].pixels, expected)


def test_colour_key_survives_the_shrink_of_a_large_picture_and_its_orientation():
    """A 3000 px keyed picture is shrunk to the working size: resampling before the key is applied
    would blend the key away. Its EXIF orientation still applies."""
    colour, shown = logo(3000, seed=5)
    keyed = np.where(shown[..., None], colour, 0).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(keyed[:, :2000]).save(buffer, "PNG", transparency=(0, 0, 0), exif=exif.tobytes())
    frame = decode(buffer.getvalue()).frames[0]
    assert (frame.width, frame.height) == (3000, 2000) and frame.pixels.shape == (683, 1024, 3)
    expected = Image.fromarray(on_white(colour, shown)[:, :2000]).transpose(Image.Transpose.ROTATE_270)
    assert PDQ.compute(frame.pixels)[0].distance(PDQ.compute(np.asarray(expected))[0]) <= 10


# -- property: what is hashed is what a reference renderer shows ---------------------------------


def reference_render(data: bytes) -> np.ndarray:
    """Pillow as the reference viewer: EXIF orientation, then alpha composited onto white."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", upright.size, "white"), upright).convert("RGB"))


@st.composite
def transparent_pictures(draw) -> bytes:
    width, height = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "LA", "P"]))
    fmt = draw(st.sampled_from(["PNG", "PNG", "WEBP", "TIFF", "GIF"] if mode in ("RGBA", "P") else ["PNG", "TIFF"]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    levels = draw(st.integers(2, 6))  # few colours, so a key colour really occurs
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2, "P": 1}[mode]
    samples = (rng.integers(0, levels, (height, width, channels)) * (255 // (levels - 1))).astype(np.uint8)
    if mode == "P":
        image = Image.fromarray(samples[..., 0]).quantize(levels) if fmt != "GIF" else Image.fromarray(samples[..., 0]).convert("P")
    else:
        image = Image.fromarray(samples[..., 0] if channels == 1 else samples, mode)
    options = {}
    if mode in ("RGB", "L", "P") and fmt in ("PNG", "GIF") and draw(st.booleans()):
        pick = samples[rng.integers(height), rng.integers(width)]
        options["transparency"] = (tuple(int(v) for v in pick) if mode == "RGB" else
                                   int(np.asarray(image)[0, 0]) if mode == "P" else int(pick[0]))
    orientation = draw(st.integers(1, 8))
    if fmt != "GIF" and orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    if fmt == "WEBP":
        options["lossless"] = True
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(transparent_pictures())
def test_property_decoded_pixels_are_what_a_viewer_shows(data):
    assert np.array_equal(decode(data).frames[0].pixels, reference_render(data))


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(1, 60), st.integers(1, 60), st.sampled_from([1, 2, 4, 16]), st.integers(0, 2 ** 32 - 1))
def test_property_grey_and_16_bit_keys_against_their_samples(width, height, depth, seed):
    """Depths Pillow's own conversion gets wrong are checked against the samples themselves."""
    rng = np.random.default_rng(seed)
    top = 2 ** depth - 1
    if depth == 16:  # RGB, values a step apart around the key
        samples = (0x4000 + rng.integers(0, 3, (height, width, 3))).astype(np.uint16)
        key = tuple(int(v) for v in samples[rng.integers(height), rng.integers(width)])
        data = png(samples, 2, 16, struct.pack(">HHH", *key))
        expected = on_white((samples >> 8).astype(np.uint8), (samples != key).any(axis=2))
    else:
        samples = rng.integers(0, top + 1, (height, width))
        key = int(samples[rng.integers(height), rng.integers(width)])
        data = png(samples, 0, depth, struct.pack(">H", key))
        expected = on_white((samples * (255 // top)).astype(np.uint8), samples != key)
    assert np.array_equal(decode(data).frames[0].pixels, expected)


# -- item 8: tiny and degenerate sizes -----------------------------------------------------------


def test_tracking_pixel_gets_a_verdict_with_the_rest_of_the_batch(banked, photos, tmp_path):
    """Issue #12 item 8: a 1x1 pixel crashed `check` (IndexError) and the batch stopped."""
    pixel = tmp_path / "pixel.gif"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(pixel)
    verdicts = [v for vs in banked.check_many([str(pixel), str(photos["astronaut"])], workers=1) for v in vs]
    assert [v.verdict for v in verdicts] == ["allow", "block"]
    assert verdicts[0].error is None and [r.rule for r in verdicts[0].reasons] == ["pdq.low_quality"]


@pytest.mark.parametrize("size", [(1, 1), (1, 700), (700, 1), (2, 500), (15, 15), (16, 3)])
def test_every_tiny_size_is_allowed_as_unmatchable(banked, photos, size):
    """Tiny crops of a flagged photo (noise-rich, PDQ would call them quality 100) are never matched."""
    crop = Image.open(photos["astronaut"]).convert("RGB").resize(size)
    buffer = io.BytesIO()
    crop.save(buffer, "PNG")
    verdict = banked.check(buffer.getvalue())
    assert verdict.verdict == "allow" and verdict.signals[0].quality == 0
    assert (verdict.width, verdict.height) == size


def test_tiny_animation_frames_each_get_a_verdict(banked):
    frames = [Image.new("RGB", (8, 3), (40 * i, 0, 0)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    verdicts = banked.check_frames(buffer.getvalue())
    assert [v.frame for v in verdicts] == [0, 1, 2, 3] and {v.verdict for v in verdicts} == {"allow"}


# -- item 19: a JPEG missing only its end marker ---------------------------------------------------


@pytest.fixture(scope="module")
def jpegs(photos) -> dict[str, bytes]:
    out = {}
    for progressive in (False, True):
        buffer = io.BytesIO()
        Image.open(photos["astronaut"]).convert("RGB").save(buffer, "JPEG", quality=85, progressive=progressive)
        out["progressive" if progressive else "baseline"] = buffer.getvalue()
    return out


@pytest.mark.parametrize("kind", ["baseline", "progressive"])
def test_jpeg_missing_only_its_end_marker_is_decoded(jpegs, kind):
    """Issue #12 item 19: viewers show it whole; it went to review as truncated."""
    whole = jpegs[kind]
    assert whole.endswith(b"\xff\xd9")
    assert np.array_equal(decode(whole[:-2]).frames[0].pixels, decode(whole).frames[0].pixels)


@pytest.mark.parametrize("kind", ["baseline", "progressive"])
@pytest.mark.parametrize("cut", [3, 5, 9, 40, 2000, "half"])
def test_jpeg_cut_inside_its_scan_data_is_still_refused(jpegs, kind, cut):
    whole = jpegs[kind]
    data = whole[: len(whole) // 2] if cut == "half" else whole[:-cut]
    try:
        decoded = decode(data)
    except MediaError as exc:
        assert exc.code == "truncated"
    else:  # only when the bytes cut were padding: then it is exactly the whole picture
        assert np.array_equal(decoded.frames[0].pixels, decode(whole).frames[0].pixels)


def test_jpeg_whose_exif_thumbnail_has_an_end_marker_but_the_picture_has_none(jpegs, photos):
    """The EOI of an embedded thumbnail is not the picture's: segments are skipped by length."""
    thumbnail = io.BytesIO()
    Image.open(photos["coffee"]).convert("RGB").resize((64, 48)).save(thumbnail, "JPEG")
    body = b"Exif\x00\x00" + thumbnail.getvalue()  # an APP1 segment carrying a whole JPEG
    whole = jpegs["baseline"]
    data = whole[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + whole[2:-2]
    assert np.array_equal(decode(data).frames[0].pixels, decode(whole).frames[0].pixels)
