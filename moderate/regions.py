"""Regions: the boxes of a frame that signals are computed on.

Every match names the region it came from, so a reviewer sees *where* in an upload the flagged
content sits. Boxes are in the original frame's pixel coordinates, whatever size it was decoded at.

Where boxes come from (`Region.origin`):
- `whole`: the frame as it is;
- `deborder`: the frame without solid or near-solid borders and letterboxing (a 10% border moves
  PDQ by 30-60 bits; without it, the hash is the original's again);
- `part:NAME`: a part the policy names in fractions of the frame (e.g. everything above a caption
  strip), cut the same way from references when they are added;
- `tile`: objects mode, overlapping n x n grids (collages and multi-panel memes);
- `proposal`: objects mode, rectangles found in the picture's edges (a photo pasted into another
  picture, a screenshot of a post);
- `reference`: the part of a reference image a bank registered (`bank add --region`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep `moderate --help` free of numpy and Pillow
    import numpy as np

    from .media import Frame
    from .policy import Part, RegionRules

BORDER_TOLERANCE = 16  # grey levels a border pixel may differ from the border's colour (JPEG noise)
BORDER_OUTLIERS = 0.02  # share of a border row that may differ more (specks, antialiased edges)
MIN_BORDER = 0.02  # of the side: thinner borders do not move PDQ enough to matter
# The smallest side signals describe: PDQ's 64x64 grid would be filled by upscaling, ORB's
# 31-pixel patches do not fit. A smaller frame is still hashed whole, with quality 0, so it gets
# the policy's `on_low_quality` verdict (allow by default: nothing in it can be matched).
MIN_SIDE = 16


@dataclass(frozen=True)
class Region:
    """A box (x, y, w, h) in a frame, with where it came from (`whole`, `deborder`, `tile`, ...)."""

    x: int
    y: int
    w: int
    h: int
    origin: str = "whole"

    @classmethod
    def whole(cls, frame: Frame) -> "Region":
        return cls(0, 0, frame.width, frame.height, "whole")

    @classmethod
    def parse(cls, text: str, width: int, height: int) -> "Region":
        """`x,y,w,h` in pixels, or in fractions of the frame when every value is at most 1."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or any(v < 0 for v in values):
            raise ValueError(f"region {text!r}: expected x,y,w,h (pixels, or fractions of the image such as 0.5,0,0.5,1)")
        if all(v <= 1 for v in values):
            values = [values[0] * width, values[1] * height, values[2] * width, values[3] * height]
        x, y, w, h = (round(v) for v in values)
        if w < MIN_SIDE or h < MIN_SIDE or x + w > width or y + h > height:
            raise ValueError(f"region {text!r}: must lie inside the {width}x{height} image and be at least {MIN_SIDE}x{MIN_SIDE} pixels")
        return cls(x, y, w, h, "reference")

    @classmethod
    def at_working(cls, frame: Frame, x: float, y: float, w: float, h: float, origin: str) -> "Region":
        """A box measured in the frame's working pixels, as a region of the original frame."""
        scale = frame.scale
        return cls(round(x / scale), round(y / scale), round(w / scale), round(h / scale), origin)

    @classmethod
    def around(cls, polygon, width: int, height: int) -> "Region":
        """The box around a matched polygon, clipped to a `width` x `height` picture."""
        xs, ys = [x for x, _ in polygon], [y for _, y in polygon]
        x0, y0 = max(0, int(min(xs))), max(0, int(min(ys)))
        x1, y1 = min(width, int(max(xs) + 0.5)), min(height, int(max(ys) + 0.5))
        return cls(x0, y0, max(0, x1 - x0), max(0, y1 - y0), "localized")

    def crop(self, frame: Frame) -> np.ndarray:
        """This region's pixels at the frame's working size."""
        scale = frame.scale
        x0, y0 = int(self.x * scale), int(self.y * scale)
        x1 = max(x0 + 1, round((self.x + self.w) * scale))
        y1 = max(y0 + 1, round((self.y + self.h) * scale))
        return frame.pixels[y0:y1, x0:x1]

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h, "origin": self.origin}


def regions_for(frame: Frame, rules: RegionRules) -> list[Region]:
    """The regions the policy asks for in one frame, the whole frame first, without repeats."""
    found = [Region.whole(frame)]
    if rules.deborder:
        found += [r for r in [deborder(frame)] if r is not None]
    found += [part_of(frame, part) for part in rules.parts]
    if rules.mode == "objects":
        found += tiles(frame, rules.tiles) + proposals(frame, rules.proposals)
    seen, out = set(), []
    for region in found:
        if (region.x, region.y, region.w, region.h) not in seen and (
                not out or region.w >= MIN_SIDE and region.h >= MIN_SIDE):  # the whole frame, however small
            seen.add((region.x, region.y, region.w, region.h))
            out.append(region)
    return out


def part_of(frame: Frame, part: Part) -> Region:
    return Region(round(part.x * frame.width), round(part.y * frame.height), round(part.w * frame.width),
                  round(part.h * frame.height), f"part:{part.name}")


def deborder(frame: Frame) -> Region | None:
    """The frame inside solid borders on any side, or None when there are none."""
    pixels = frame.pixels
    height, width = pixels.shape[:2]
    top = _border_depth(pixels)
    bottom = _border_depth(pixels[::-1])
    left = _border_depth(pixels.transpose(1, 0, 2))
    right = _border_depth(pixels.transpose(1, 0, 2)[::-1])
    if max(top + bottom, 1) < MIN_BORDER * height and max(left + right, 1) < MIN_BORDER * width:
        return None
    inner_w, inner_h = width - left - right, height - top - bottom
    if inner_w < 0.3 * width or inner_h < 0.3 * height:
        return None  # mostly flat: a border this deep is the picture itself
    return Region.at_working(frame, left, top, inner_w, inner_h, "deborder")


def _border_depth(pixels) -> int:
    """How many leading rows of `pixels` (H, W, 3) are one flat colour, in the mean of the
    channels (at most a third of the rows). Rows are read a few at a time: most pictures have no
    border and their first rows already say so (the whole-frame pass took about 40 ms a 1024 px
    frame, on every check and every reference)."""
    import numpy as np

    limit = pixels.shape[0] // 3
    colour = np.median(pixels[0].astype(np.int16).mean(axis=1))
    start = 0
    for stop in (8, 64, limit):
        stop = min(stop, limit)
        if stop <= start:
            continue
        off = (np.abs(pixels[start:stop].astype(np.int16).mean(axis=2) - colour) > BORDER_TOLERANCE).mean(axis=1)
        flat = np.flatnonzero(off > BORDER_OUTLIERS)
        if len(flat):
            return start + int(flat[0])
        start = stop
    return limit


def tiles(frame: Frame, grids: tuple[int, ...]) -> list[Region]:
    """n x n tiles for each n, stepping half a tile so a panel straddling a cut is whole in one."""
    out = []
    for n in grids:
        w, h = frame.width / n, frame.height / n
        for row in range(2 * n - 1):
            for col in range(2 * n - 1):
                out.append(Region(round(col * w / 2), round(row * h / 2), round(w), round(h), "tile"))
    return out


def proposals(frame: Frame, limit: int) -> list[Region]:
    """Rectangles in the picture's edges: pictures pasted into pictures, screenshots, panels.

    Canny edges, closed and traced into outlines; outlines that are nearly their own bounding
    rectangle and cover 3-90% of the frame are kept, largest first, dropping near-copies.
    """
    import cv2
    import numpy as np

    if limit <= 0:
        return []
    gray = cv2.cvtColor(np.ascontiguousarray(frame.pixels), cv2.COLOR_RGB2GRAY)
    edges = cv2.dilate(cv2.Canny(gray, 60, 160), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    height, width = gray.shape
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        area = w * h
        if not 0.03 * width * height <= area <= 0.9 * width * height:
            continue
        hull = cv2.contourArea(cv2.convexHull(contour))
        if hull >= 0.85 * area:
            boxes.append((area, x, y, w, h))
    kept: list[tuple[int, int, int, int]] = []
    for _, x, y, w, h in sorted(boxes, reverse=True):
        if all(_overlap((x, y, w, h), k) < 0.8 for k in kept):
            kept.append((x, y, w, h))
        if len(kept) == limit:
            break
    return [Region.at_working(frame, x, y, w, h, "proposal") for x, y, w, h in kept]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)
