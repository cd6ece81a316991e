"""PDF images as the page shows them (issue #12, item 6), and PDF pages that render tiny (item 8).

Every PDF here is written byte by byte (`PdfWriter`): soft masks, stencil and colour-key masks,
image masks painted in a fill colour, soft masks set in the graphics state, images inside forms,
rotated pages. What `moderate` extracts is compared with pdfium's full render of the same page.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pypdfium2 as pdfium
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from moderate.media import decode
from moderate.signals import PDQ


class PdfWriter:
    """A minimal PDF writer: numbered objects, one or more pages, a cross-reference table."""

    def __init__(self):
        self.bodies: list[bytes] = [b"", b""]  # 1: catalog, 2: page tree (written last)
        self.pages: list[str] = []

    def add(self, text: str, stream: bytes | None = None) -> str:
        """A new object (`text` is its dictionary when `stream` is given); returns its reference."""
        body = text.encode("latin-1")
        if stream is not None:
            packed = zlib.compress(stream)
            body = body[:-2] + f" /Length {len(packed)} /Filter /FlateDecode >>".encode() + b"\nstream\n" + packed + b"\nendstream"
        self.bodies.append(body)
        return f"{len(self.bodies)} 0 R"

    def image(self, samples: np.ndarray, extra: str = "", bits: int = 8) -> str:
        """An image XObject of 8-bit grey (H x W) or RGB (H x W x 3) samples, or a 1-bit stencil."""
        height, width = samples.shape[:2]
        if bits == 1:
            data = np.packbits(samples.astype(bool), axis=1).tobytes()
            return self.add(f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /BitsPerComponent 1 {extra} >>", data)
        space = "/DeviceRGB" if samples.ndim == 3 else "/DeviceGray"
        return self.add(f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace {space} "
                        f"/BitsPerComponent 8 {extra} >>", np.ascontiguousarray(samples, np.uint8).tobytes())

    def form(self, content: str, resources: str, matrix: str = "1 0 0 1 0 0", bbox: str = "0 0 10000 10000") -> str:
        return self.add(f"<< /Type /XObject /Subtype /Form /BBox [{bbox}] /Matrix [{matrix}] /Resources {resources} >>",
                        content.encode())

    def page(self, size: tuple[float, float], content: str, resources: str = "<< >>", rotate: int = 0) -> None:
        contents = self.add("<< >>", content.encode())
        self.pages.append(self.add(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Rotate {rotate} "
                                   f"/Resources {resources} /Contents {contents} >>"))

    def bytes(self) -> bytes:
        self.bodies[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
        self.bodies[1] = f"<< /Type /Pages /Kids [{' '.join(self.pages)}] /Count {len(self.pages)} >>".encode()
        out, offsets = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", []
        for number, body in enumerate(self.bodies, 1):
            offsets.append(len(out))
            out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
        start = len(out)
        out += f"xref\n0 {len(self.bodies) + 1}\n0000000000 65535 f \n".encode()
        out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
        return out + f"trailer\n<< /Size {len(self.bodies) + 1} /Root 1 0 R >>\nstartxref\n{start}\n%%EOF\n".encode()


def xobjects(**named: str) -> str:
    return "<< /XObject << " + " ".join(f"/{k} {v}" for k, v in named.items()) + " >> >>"


def disc(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2) < radius ** 2


@pytest.fixture(scope="module")
def astronaut(photos) -> np.ndarray:
    return np.asarray(Image.open(photos["astronaut"]).convert("RGB").resize((256, 256)))


def embedded(data: bytes) -> list:
    return [f for f in decode(data, name="doc.pdf").frames if f.origin == "embedded-image"]


def page_render_of(data: bytes, box: tuple[float, float, float, float], pixels: int, size: tuple[int, int]) -> np.ndarray:
    """pdfium's render of the whole page, cut to `box` (points from the top left of the page as
    shown): what a reader sees there. The scale is the one the README promises for an image of
    `pixels` (longest side) drawn in `box`: its own resolution up to the working size (1024), never
    coarser than the page frame (1024 px or 4 px a point), at most 64 px a point."""
    document = pdfium.PdfDocument(data)
    try:
        page = document[0]
        left, top, right, bottom = box
        page_frame = min(1024 / max(page.get_size()), 4.0)
        scale = min(max(page_frame, min(1024, pixels) / max(right - left, bottom - top)), 64.0)
        whole = page.render(scale=scale).to_pil().convert("RGB")
        x, y = math.ceil(left * scale), math.ceil(top * scale)  # pdfium's pixel grid, as pypdfium2 crops it
        return np.asarray(whole.crop((x, y, x + size[0], y + size[1])))
    finally:
        document.close()


def same_picture(a: np.ndarray, b: np.ndarray, bits: int = 16) -> bool:
    return PDQ.compute(a)[0].distance(PDQ.compute(b)[0]) <= bits


def test_soft_masked_figure_on_a_large_page_is_extracted_as_shown(astronaut):
    """Issue #12 item 6: a flagged photo drawn through an /SMask as a 150 pt figure on a 2000 pt page."""
    pdf = PdfWriter()
    mask = pdf.image(disc(256, 120).astype(np.uint8) * 255)
    photo = pdf.image(astronaut, f"/SMask {mask}")
    pdf.page((2000, 2000), "q 150 0 0 150 100 1700 cm /Im1 Do Q", xobjects(Im1=photo))
    data = pdf.bytes()
    (frame,) = embedded(data)
    assert frame.pixels.shape[:2] == (256, 256)  # the figure keeps its own pixels, not the page's 77
    shown = np.where(disc(256, 120)[..., None], astronaut, 255).astype(np.uint8)  # the photo in a disc, on white
    assert same_picture(frame.pixels, shown)
    assert PDQ.compute(frame.pixels)[0].quality >= 50
    assert np.abs(frame.pixels.astype(int) - page_render_of(data, (100, 150, 250, 300), 256, (256, 256))).mean() < 1


def test_black_sample_plane_with_the_picture_in_its_soft_mask(astronaut):
    """The shape of the issue's file: the samples are all black, the picture is in the soft mask
    (how logos and line art are often stored). Extracting samples gives black, quality 0."""
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    pdf = PdfWriter()
    mask = pdf.image(255 - grey)  # ink where the photo is dark
    pdf.page((600, 600), "q 300 0 0 300 150 150 cm /Im1 Do Q", xobjects(Im1=pdf.image(np.zeros((256, 256), np.uint8), f"/SMask {mask}")))
    (frame,) = embedded(pdf.bytes())
    assert same_picture(frame.pixels, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("kind", ["stencil-mask", "colour-key-mask", "image-mask", "graphics-state-smask"])
def test_every_way_of_masking_is_extracted_as_the_page_shows_it(astronaut, kind):
    pdf = PdfWriter()
    inside = disc(256, 110)
    extra, content, resources = "", "q 200 0 0 200 100 100 cm /Im1 Do Q", None
    image = astronaut
    if kind == "stencil-mask":  # /Mask: a 1-bit image mask, 1 = masked out (painted nothing)
        extra = f"/Mask {pdf.image(~inside, '/ImageMask true', bits=1)}"
    elif kind == "colour-key-mask":  # /Mask [min max ...]: samples in the range are not painted
        image = np.where(inside[..., None], astronaut, np.uint8(3)).astype(np.uint8)
        inside &= (image > 5).any(axis=2)  # the photo's own near-black pixels are keyed out too
        extra = "/Mask [0 5 0 5 0 5]"
    elif kind == "image-mask":  # a stencil painted in the fill colour: a red disc
        image = None
        stencil = pdf.image(~inside, "/ImageMask true", bits=1)
        content = "q 0.8 0.1 0.1 rg 200 0 0 200 100 100 cm /Im1 Do Q"
    else:  # a luminosity soft mask set in the graphics state, drawn by a form
        luminosity = pdf.form("q 200 0 0 200 100 100 cm /M Do Q", xobjects(M=pdf.image(inside.astype(np.uint8) * 255)),
                              bbox="0 0 400 400")
        state = pdf.add(f"<< /Type /ExtGState /SMask << /Type /Mask /S /Luminosity /G {luminosity} >> >>")
        content = "q /Soft gs 200 0 0 200 100 100 cm /Im1 Do Q"
        resources = f"<< /XObject << /Im1 {pdf.image(astronaut)} >> /ExtGState << /Soft {state} >> >>"
    if resources is None:
        resources = xobjects(Im1=stencil if image is None else pdf.image(image, extra))
    pdf.page((400, 400), content, resources)
    data = pdf.bytes()
    (frame,) = embedded(data)
    reference = page_render_of(data, (100, 100, 300, 300), 256, frame.pixels.shape[1::-1])
    assert np.abs(frame.pixels.astype(int) - reference).mean() < 1
    outside = frame.pixels[~disc(frame.pixels.shape[0], 0.5 * frame.pixels.shape[0])]
    assert outside.min() >= 250  # the masked-out corners show the white page, not the samples
    centre = frame.pixels[frame.pixels.shape[0] // 2, frame.pixels.shape[1] // 2]
    if kind == "image-mask":
        assert tuple(centre) == pytest.approx((204, 26, 26), abs=3)
    else:
        assert same_picture(frame.pixels, np.where(inside[..., None], astronaut, 255).astype(np.uint8), 31)


def test_image_in_a_form_on_a_rotated_page_is_found_where_it_is_shown(astronaut):
    """Nested form matrices and the page's /Rotate both move the image; the box must follow."""
    pdf = PdfWriter()
    form = pdf.form("q 120 0 0 120 0 0 cm /Im1 Do Q", xobjects(Im1=pdf.image(astronaut)), matrix="1 0 0 1 40 30")
    pdf.page((600, 400), "q 1 0 0 1 200 100 cm /F Do Q", xobjects(F=form), rotate=90)
    data = pdf.bytes()
    (frame,) = embedded(data)
    shown = np.asarray(Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_270))  # turned with the page
    assert same_picture(frame.pixels, shown)
    assert not same_picture(frame.pixels, astronaut, 64)


@pytest.mark.parametrize("size", [(0.5, 0.5), (2, 2), (1, 500), (500, 1), (3.9, 3.9)])
def test_pages_that_render_tiny_still_get_frames(size):
    """Item 8 for documents: a page that renders to a few pixels (or to one row) is a frame."""
    pdf = PdfWriter()
    pdf.page(size, "0 0 1 rg 0 0 1 1 re f")
    media = decode(pdf.bytes(), name="tiny.pdf")
    assert [f.origin for f in media.frames] == ["page"]
    assert min(media.frames[0].pixels.shape[:2]) >= 1


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(32, 160), st.integers(32, 160), st.sampled_from(["none", "smask", "stencil", "key"]),
       st.integers(100, 3000), st.floats(0.05, 0.9), st.floats(0, 1), st.floats(0, 1), st.integers(0, 2 ** 32 - 1))
def test_property_embedded_frames_are_what_pdfium_renders_on_the_page(width, height, mask, page, share, fx, fy, seed):
    """For random pictures, masks and placements: the embedded-image frame is pdfium's render of
    the whole page, cut to where the image is drawn."""
    rng = np.random.default_rng(seed)
    smooth = Image.fromarray(rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8))
    picture = np.asarray(smooth.resize((width, height), Image.Resampling.BICUBIC))
    pdf = PdfWriter()
    inside = np.asarray(Image.fromarray(rng.integers(0, 256, (5, 5), dtype=np.uint8)).resize((width, height))) > 100
    extra = {"none": "", "smask": f"/SMask {pdf.image(inside.astype(np.uint8) * 255)}",
             "stencil": f"/Mask {pdf.image(~inside, '/ImageMask true', bits=1)}", "key": "/Mask [0 90 0 255 0 255]"}[mask]
    w = round(page * share)
    h = max(1, round(w * height / width))
    x, y = round((page - w) * fx), round(max(0, page - h) * fy)
    pdf.page((page, page), f"q {w} 0 0 {h} {x} {y} cm /Im1 Do Q", xobjects(Im1=pdf.image(picture, extra)))
    data = pdf.bytes()
    (frame,) = embedded(data)
    top = page - y - h
    box = (x, max(0, top), x + w, min(page, top + h))
    reference = page_render_of(data, box, max(width, height), frame.pixels.shape[1::-1])
    assert reference.shape == frame.pixels.shape
    assert np.abs(frame.pixels.astype(int) - reference).mean() < 1
