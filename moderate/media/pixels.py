"""Frames and their pixels: what every decoder (rasters, documents, metafiles) produces.

Kept apart from `moderate.media` (which picks the decoder) so that the document renderers, which
run in their own process, depend on it without depending back on the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Budgets:
    """Limits on one input; exceeding any of them refuses the input with the budget named."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000  # per frame, as declared in the header
    max_frames: int = 500  # frames of an animation, pages of a TIFF, PDF pages plus embedded images
    max_total_pixels: int = 256_000_000  # summed over all frames of one input
    max_pages: int = 100  # PDF pages
    max_page_objects: int = 50_000  # drawing objects on one PDF page (rendering time grows with them)
    max_seconds: int = 30  # decoding wall time, checked between frames and pages


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture of an input: its index, its original size, and pixels at working size."""

    index: int
    width: int  # original size, after EXIF orientation
    height: int
    pixels: np.ndarray = field(repr=False)  # RGB uint8, longest side <= the working size
    page: int | None = None  # the PDF page (0-based) a frame came from
    origin: str = "frame"  # frame | page | embedded-image | rendered

    @property
    def scale(self) -> float:
        """Working size over original size, to map boxes between the two."""
        return self.pixels.shape[1] / self.width


def fitted_rgb(image: Image.Image, working_size: int) -> np.ndarray:
    """RGB pixels of an image, its longest side at most `working_size`."""
    rgb = _to_rgb(_shrunk(image, working_size))
    rgb.thumbnail((working_size, working_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8)


def nearest(image: Image.Image, working_size: int) -> Image.Image:
    """At most twice the working size, by nearest neighbour (keeps palette indices and colour keys)."""
    if max(image.size) <= 2 * working_size:
        return image
    scale = 2 * working_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.NEAREST)


def _shrunk(image: Image.Image, working_size: int) -> Image.Image:
    """Shrink before converting, so a 64 MP frame is never converted (and copied) at full size.

    Palette and bilevel images can only be resized by nearest neighbour, so they are brought to
    twice the working size that way and smoothed by the final resize after conversion."""
    if max(image.size) <= working_size:
        return image
    if image.mode in ("P", "PA", "1"):
        return nearest(image, working_size)
    if image.mode in ("RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "La", "CMYK", "YCbCr", "I", "F"):
        image = image.copy() if image.readonly else image
        image.thumbnail((working_size, working_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image


def stretched(samples: np.ndarray, shown: np.ndarray | None = None) -> np.ndarray:
    """High-bit-depth grey as 8 bits, its range (over the pixels shown) stretched to 0-255."""
    array = samples.astype(np.float64)
    seen = array[shown] if shown is not None else array
    low, high = (float(seen.min()), float(seen.max())) if seen.size else (0.0, 0.0)
    scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for hashing; transparency is flattened onto white, as most viewers show it."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(stretched(np.asarray(image)), "L").convert("RGB")
    return image.convert("RGB")
