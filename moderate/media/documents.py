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

import functools
import time

from ..errors import MediaError
from .pixels import Budgets, Frame, fitted_rgb


PDF_MEMORY_LIMIT = 2 << 30  # address space for the PDF renderer process


def pdf_frames(data: bytes, budgets: Budgets, working_size: int, name: str, deadline: float) -> list[Frame]:
    """PDF pages and embedded images as frames, rendered in the isolated renderer."""
    return _isolated(_pdf_frames_here, data, budgets, working_size, name, deadline)


def metafile_frames(data: bytes, kind: str, budgets: Budgets, working_size: int, name: str, deadline: float) -> list[Frame]:
    """A WMF/EMF replayed to one frame in the isolated renderer (a 49 kB WMF of fills replays for seconds)."""
    return _isolated(functools.partial(_metafile_frames_here, kind=kind), data, budgets, working_size, name, deadline)


def _isolated(render, data: bytes, budgets: Budgets, working_size: int, name: str, deadline: float) -> list[Frame]:
    """Run a document renderer in a separate process with a memory limit and the input's deadline.

    PDFium parses a page's content (nested forms included) when the page loads, before any budget
    of ours can look at it: 1 kB of forms drawing forms can ask for gigabytes and minutes, and a
    metafile's records replay for as long as they replay. Only a process boundary contains that;
    a renderer that dies or overruns refuses the input."""
    from concurrent.futures import TimeoutError as Overrun
    from concurrent.futures.process import BrokenProcessPool

    seconds = max(0.1, deadline - time.monotonic())
    future = _renderer().submit(render, data, budgets, working_size, name, seconds)
    try:
        frames = future.result(timeout=seconds + 2)  # the slack covers hand-offs, not rendering
    except Overrun:
        _stop_renderer()
        raise MediaError(name, "too_slow", f"rendering took over the max_seconds budget of {budgets.max_seconds} s") from None
    except BrokenProcessPool:
        _stop_renderer()
        raise MediaError(name, "too_complex", "the renderer ran out of memory or crashed on this document") from None
    _check_deadline(deadline, budgets, name)  # a metafile replays without looking at the clock
    return frames


_RENDERER = None


def _renderer():
    global _RENDERER
    if _RENDERER is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("forkserver")  # never fork a process holding other threads
        context.set_forkserver_preload(["moderate.media.documents"])
        _RENDERER = ProcessPoolExecutor(1, mp_context=context, initializer=_limit_memory, initargs=(PDF_MEMORY_LIMIT,))
    return _RENDERER


def _stop_renderer() -> None:
    global _RENDERER
    if _RENDERER is not None:
        for process in list(getattr(_RENDERER, "_processes", {}).values()):
            process.kill()
        _RENDERER.shutdown(wait=False, cancel_futures=True)
        _RENDERER = None


def _limit_memory(limit: int) -> None:
    """Renderer set-up: a memory cap, and death with the parent (a SIGKILLed caller must not leave
    gigabyte-sized renderers behind)."""
    import ctypes
    import resource
    import signal

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the renderer then ends with the forkserver at normal exit
        pass


def _pdf_frames_here(data: bytes, budgets: Budgets, working_size: int, name: str, seconds: float) -> list[Frame]:
    deadline = time.monotonic() + seconds
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
            _check_objects(page, number, budgets, name)
            frames.append(_render_page(page, len(frames), number, working_size, budgets, name))
            for image in page.get_objects(filter=(pdfium.raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
                if len(frames) >= budgets.max_frames:
                    raise MediaError(name, "too_many_frames",
                                     f"has more than the max_frames budget of {budgets.max_frames} pages and images")
                frame = _embedded_image(page, image, len(frames), number, working_size, budgets, name)
                if frame is not None:
                    frames.append(frame)
                _check_deadline(deadline, budgets, name)
        finally:
            page.close()
        _check_deadline(deadline, budgets, name)
    return frames


def _check_objects(page, number: int, budgets: Budgets, name: str) -> None:
    """Refuse pages with more drawing objects than the budget, counting inside nested forms (a few
    hundred bytes of forms drawing forms can expand to millions of fills) and stopping at the budget,
    before PDFium renders anything: rendering time grows with drawing operations, not pixels."""
    for count, _ in enumerate(page.get_objects(max_depth=32), start=1):
        if count > budgets.max_page_objects:
            raise MediaError(name, "too_complex", f"page {number + 1} has over {budgets.max_page_objects} drawing"
                                                  f" objects (max_page_objects budget)")


def _render_page(page, index: int, number: int, working_size: int, budgets: Budgets, name: str) -> Frame:
    width_pt, height_pt = page.get_size()
    if width_pt <= 0 or height_pt <= 0:
        raise MediaError(name, "corrupt", f"page {number + 1} has an empty size")
    scale = _page_scale(width_pt, height_pt, working_size)
    if width_pt * height_pt * scale * scale > budgets.max_pixels:
        raise MediaError(name, "too_many_pixels", f"page {number + 1} would render over the max_pixels budget")
    bitmap = page.render(scale=scale)
    image = bitmap.to_pil()
    return Frame(index, max(1, round(width_pt)), max(1, round(height_pt)), fitted_rgb(image, working_size),
                 page=number, origin="page")


MAX_CLIP_SCALE = 64.0  # a figure drawn a few points wide still gets its pixels, never an absurd matrix


def _page_scale(width_pt: float, height_pt: float, working_size: int) -> float:
    """Pixels per point of a page frame: fits the working size; never above 288 dpi."""
    return min(working_size / max(width_pt, height_pt), 4.0)


def _embedded_image(page, image_object, index: int, number: int, working_size: int, budgets: Budgets,
                    name: str) -> Frame | None:
    """An embedded image as the page shows it: the page rendered over the image's box.

    The image's own samples are not what readers see: a soft mask (/SMask, or one set in the
    graphics state), a stencil or colour-key /Mask, an /ImageMask painted in the fill colour, a
    clip or whatever is drawn over it decide that, and only the renderer applies them all. The box
    is rendered at the image's own resolution (up to the working size), however small the figure
    is on its page, so that it keeps the pixels it has to be matched by."""
    width, height = image_object.get_px_size()
    if width * height > budgets.max_pixels:
        raise MediaError(
            name, "too_many_pixels",
            f"page {number + 1} embeds a {width}x{height} image, over the max_pixels budget of {budgets.max_pixels}",
        )
    if width < 32 or height < 32:  # icons and spacers carry nothing to match
        return None
    box = _shown_box(page, image_object)
    if box is None:  # drawn off the page, or flat: nothing shown
        return None
    left, top, right, bottom = box
    page_width, page_height = page.get_size()
    at_own_resolution = min(working_size, max(width, height)) / max(right - left, bottom - top)
    scale = min(max(_page_scale(page_width, page_height, working_size), at_own_resolution), MAX_CLIP_SCALE)
    shown = page.render(scale=scale, crop=(left, page_height - bottom, page_width - right, top)).to_pil()
    return Frame(index, shown.width, shown.height, fitted_rgb(shown, working_size), page=number, origin="embedded-image")


def _shown_box(page, image_object) -> tuple[float, float, float, float] | None:
    """The box (left, top, right, bottom) an image covers on the rendered page, in points from the
    page's top left corner after its /Rotate, clipped to the page; None when it covers nothing."""
    import ctypes

    import pypdfium2.raw as raw

    matrix = image_object.get_matrix()  # the unit square onto the image's container
    container = image_object.container
    while container is not None:  # images inside form XObjects: through each form's matrix
        matrix = matrix.multiply(container.get_matrix())
        container = container.container
    page_width, page_height = page.get_size()
    # PDFium maps page space to device pixels (rotation and box origin included) in whole pixels:
    # a device 64 times the page's size in points keeps 1/64 point.
    fine = 64
    device_x, device_y, xs, ys = ctypes.c_int(), ctypes.c_int(), [], []
    for corner in ((0, 0), (1, 0), (0, 1), (1, 1)):
        x, y = matrix.on_point(*corner)
        raw.FPDF_PageToDevice(page, 0, 0, round(page_width * fine), round(page_height * fine), 0, x, y,
                              device_x, device_y)
        xs.append(device_x.value / fine)
        ys.append(device_y.value / fine)
    left, top = max(0.0, min(xs)), max(0.0, min(ys))
    right, bottom = min(page_width, max(xs)), min(page_height, max(ys))
    if right - left < 0.5 or bottom - top < 0.5:
        return None
    return left, top, right, bottom


def _metafile_frames_here(data: bytes, budgets: Budgets, working_size: int, name: str, seconds: float, *,
                          kind: str) -> list[Frame]:
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

