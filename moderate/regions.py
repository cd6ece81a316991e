"""Regions: the boxes of a frame that signals are computed on.

Every match names the region it came from, so a reviewer sees *where* in an upload the flagged
content sits. Boxes are in the original frame's pixel coordinates, whatever size it was decoded at.
This slice hashes the whole frame; crops, tiles and object boxes add more regions per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep `moderate --help` free of numpy and Pillow
    from .media import Frame


@dataclass(frozen=True)
class Region:
    """A box (x, y, w, h) in a frame, with where it came from (`whole`, `crop`, `tile`, ...)."""

    x: int
    y: int
    w: int
    h: int
    origin: str = "whole"

    @classmethod
    def whole(cls, frame: Frame) -> "Region":
        return cls(0, 0, frame.width, frame.height, "whole")

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}
