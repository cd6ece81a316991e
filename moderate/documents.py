"""Inputs that are not raster images: PDF documents and Windows metafiles (WMF, EMF).

Both can carry flagged pictures, so both are turned into frames like any image:
- PDF (pypdfium2): every page is rendered at a scale that fits the working size (PDFium has no
  pixel guard of its own, so the scale is ours to bound), and every embedded image is extracted
  and checked as a frame of its own, its pixel size checked against the budget *before* decoding.
  A 628 kB PDF can hold 5,000 pages: `max_pages` refuses documents with more.
- WMF/EMF (metafile-render, pure Python with its own record, point and canvas budgets): rendered
  to PNG, then decoded as a raster.
Each frame records the page it came from, so a verdict can say "page 3, embedded image 2".
"""

from __future__ import annotations

import time

from .errors import MediaError
from .media import Budgets, Frame, fitted_rgb


def pdf_frames(data: bytes, budgets: Budgets, working_size: int, name: str, deadline: float) -> list[Frame]:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise MediaError(name, "unsupported_format", "PDF input needs pypdfium2 (pip install pypdfium2)") from None
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = "encrypted" if "password" in str(exc).lower() else "corrupt"
        raise MediaError(name, code, f"cannot open PDF: {exc}") from None
    try:
        return _pages(pdfium, document, budgets, working_size, name, deadline)
    except MediaError:
        raise
    except pdfium.PdfiumError as exc:  # a page or object that PDFium cannot load
        raise MediaError(name, "corrupt", f"cannot read PDF: {exc}") from None
    except (ValueError, TypeError, OverflowError, MemoryError, OSError) as exc:
        raise MediaError(name, "corrupt", f"cannot read PDF: {type(exc).__name__}: {exc}") from None
    finally:
        document.close()


def _pages(pdfium, document, budgets: Budgets, working_size: int, name: str, deadline: float) -> list[Frame]:
    pages = len(document)
    if pages > budgets.max_pages:
        raise MediaError(name, "too_many_pages", f"has {pages} pages, over the max_pages budget of {budgets.max_pages}")
    if pages == 0:
        raise MediaError(name, "empty", "PDF has no pages")
    frames: list[Frame] = []
    for number in range(pages):
        page = document[number]
        try:
            objects = pdfium.raw.FPDFPage_CountObjects(page.raw)
            if objects > budgets.max_page_objects:  # rendering cost grows with drawing operations, not pixels
                raise MediaError(name, "too_complex", f"page {number + 1} has {objects} drawing objects, over the "
                                                      f"max_page_objects budget of {budgets.max_page_objects}")
            frames.append(_render_page(page, len(frames), number, working_size, budgets, name))
            for image in page.get_objects(filter=(pdfium.raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
                if len(frames) >= budgets.max_frames:
                    raise MediaError(name, "too_many_frames",
                                     f"has more than the max_frames budget of {budgets.max_frames} pages and images")
                frame = _embedded_image(image, len(frames), number, working_size, budgets, name)
                if frame is not None:
                    frames.append(frame)
                _check_deadline(deadline, budgets, name)
        finally:
            page.close()
        _check_deadline(deadline, budgets, name)
    return frames


def _render_page(page, index: int, number: int, working_size: int, budgets: Budgets, name: str) -> Frame:
    width_pt, height_pt = page.get_size()
    if width_pt <= 0 or height_pt <= 0:
        raise MediaError(name, "corrupt", f"page {number + 1} has an empty size")
    scale = min(working_size / max(width_pt, height_pt), 4.0)  # points at 72 dpi; never above 288 dpi
    if width_pt * height_pt * scale * scale > budgets.max_pixels:
        raise MediaError(name, "too_many_pixels", f"page {number + 1} would render over the max_pixels budget")
    bitmap = page.render(scale=scale)
    image = bitmap.to_pil()
    return Frame(index, max(1, round(width_pt)), max(1, round(height_pt)), fitted_rgb(image, working_size),
                 page=number, origin="page")


def _embedded_image(image_object, index: int, number: int, working_size: int, budgets: Budgets, name: str) -> Frame | None:
    width, height = image_object.get_px_size()
    if width * height > budgets.max_pixels:
        raise MediaError(
            name, "too_many_pixels",
            f"page {number + 1} embeds a {width}x{height} image, over the max_pixels budget of {budgets.max_pixels}",
        )
    if width < 32 or height < 32:  # icons and spacers carry nothing to match
        return None
    try:
        pil = image_object.get_bitmap(render=False).to_pil()
    except Exception:  # an undecodable embedded image; the rendered page still shows what it shows
        return None
    return Frame(index, width, height, fitted_rgb(pil, working_size), page=number, origin="embedded-image")


def metafile_frames(data: bytes, kind: str, budgets: Budgets, working_size: int, name: str) -> list[Frame]:
    try:
        from metafile_render import MetafileError, render_metafile
    except ImportError:
        raise MediaError(name, "unsupported_format", f"{kind.upper()} input needs metafile-render") from None
    from metafile_render.parser import prepare_metafile  # header only: no records replayed yet

    try:
        declared = prepare_metafile(data, dpi=96, size_hint=None).pixel_size
        if declared is None:
            raise MediaError(name, "corrupt", f"{kind.upper()} declares no picture size")
        width, height = declared
        if width * height > budgets.max_pixels:
            raise MediaError(name, "too_many_pixels",
                             f"declares a {width}x{height} canvas, over the max_pixels budget of {budgets.max_pixels}")
        # Replay at the working size: a 16 MP canvas of fills costs seconds at full size, not at 1024 px.
        scale = min(1.0, working_size / max(width, height))
        hint = (max(1, round(width * scale)), max(1, round(height * scale)))
        result = render_metafile(data, output_format="png", dpi=96, size_hint=hint)
    except MetafileError as exc:
        raise MediaError(name, "corrupt", f"cannot render {kind.upper()}: {exc}") from None
    except (ValueError, OverflowError, ZeroDivisionError, MemoryError) as exc:
        raise MediaError(name, "corrupt", f"cannot render {kind.upper()}: {type(exc).__name__}: {exc}") from None
    import io

    from PIL import Image

    with Image.open(io.BytesIO(result.data), formats=("PNG",)) as image:
        image.load()
        return [Frame(0, width, height, fitted_rgb(image, working_size), origin="rendered")]


def _check_deadline(deadline: float, budgets: Budgets, name: str) -> None:
    if time.monotonic() > deadline:
        raise MediaError(name, "too_slow", f"decoding took over the max_seconds budget of {budgets.max_seconds} s")

