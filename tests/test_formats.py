"""Every format a platform receives, routed by content: AVIF, HEIC, PDF, WMF, EMF, and their budgets."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from moderate import Budgets, MediaError
from moderate.media import decode, sniff
from moderate.signals import PDQ

from .conftest import run_cli
from .metafiles import emf, wmf


@pytest.fixture(scope="module")
def astronaut(photos) -> Image.Image:
    return Image.open(photos["astronaut"]).convert("RGB")


def near(a: np.ndarray, b: Image.Image, limit: int = 31) -> bool:
    return PDQ.compute(a)[0].distance(PDQ.compute(np.asarray(b))[0]) <= limit


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
def test_modern_formats(astronaut, fmt):
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    astronaut.save(buffer, fmt, quality=80)
    data = buffer.getvalue()
    assert sniff(data) == ("heif" if fmt == "HEIF" else "image")
    media = decode(data)
    assert media.format == fmt and near(media.frames[0].pixels, astronaut)


def pdf_of(pages: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return buffer.getvalue()


def test_pdf_pages_and_embedded_images_are_frames(astronaut, photos):
    cover = Image.open(photos["chelsea"]).convert("RGB")
    media = decode(pdf_of([cover, astronaut]), name="doc.pdf")
    assert media.format == "PDF"
    origins = [(f.page, f.origin) for f in media.frames]
    assert origins == [(0, "page"), (0, "embedded-image"), (1, "page"), (1, "embedded-image")]
    assert near(media.frames[2].pixels, astronaut) and near(media.frames[3].pixels, astronaut)
    assert not near(media.frames[0].pixels, astronaut)


def test_pdf_page_budget_and_routing_ignores_the_extension(tmp_path):
    blank = [Image.new("RGB", (50, 50), "white")] * 12
    data = pdf_of(blank)
    with pytest.raises(MediaError) as info:
        decode(data, Budgets(max_pages=10), name="x.jpg")
    assert info.value.code == "too_many_pages" and "max_pages budget of 10" in str(info.value)
    path = tmp_path / "looks-like.jpg"
    path.write_bytes(data)
    assert decode(path).format == "PDF"


def test_pdf_embedded_image_over_budget_is_refused(astronaut):
    big = astronaut.resize((3000, 3000))
    with pytest.raises(MediaError) as info:
        decode(pdf_of([big]), Budgets(max_pixels=4_000_000))
    assert info.value.code == "too_many_pixels" and "embeds a 3000x3000 image" in str(info.value)


@pytest.mark.parametrize("make, kind, color", [(emf, "EMF", (200, 30, 30)), (wmf, "WMF", (30, 30, 200))])
def test_metafiles_render(make, kind, color):
    media = decode(make(color=color))
    assert media.format == kind
    pixels = media.frames[0].pixels
    assert tuple(pixels[pixels.shape[0] // 2, pixels.shape[1] // 2]) == color


@pytest.mark.parametrize("data", [
    emf()[:60], wmf()[:30], b"%PDF-1.4\n%garbage", b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40,
])
def test_truncated_documents_are_media_errors(data):
    with pytest.raises(MediaError) as info:
        decode(data, name="in")
    assert "\n" not in str(info.value) and info.value.code in ("corrupt", "truncated", "unsupported_format")


def test_pdf_verdict_names_the_page(banked, astronaut, photos, tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf_of([Image.open(photos["moon"]).convert("RGB"), astronaut]))
    out = run_cli("check", str(path), "--json", data_dir=banked.data_dir)
    assert out.returncode == 4
    verdicts = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert [(v["page"], v["verdict"]) for v in verdicts] == [(0, "allow"), (0, "allow"), (1, "block"), (1, "block")]
    assert verdicts[2]["reasons"][0]["reference_id"] == "astronaut"


def test_png_carrying_a_pdf_in_a_text_chunk_is_checked_as_the_png(astronaut):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", pdf_of([Image.new("RGB", (40, 40), "white")]).decode("latin-1"))
    buffer = io.BytesIO()
    astronaut.save(buffer, "PNG", pnginfo=info)
    data = buffer.getvalue()
    assert b"%PDF-" in data[:1024] and sniff(data) == "image"
    media = decode(data)
    assert media.format == "PNG" and near(media.frames[0].pixels, astronaut)
