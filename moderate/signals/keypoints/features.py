"""ORB features of a picture: corners and their 256-bit descriptors, and how a set of them is stored."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ...regions import MIN_SIDE

DESCRIPTOR_BYTES = 32
_MAGIC = b"MKP1"


@dataclass(frozen=True, eq=False)
class KeypointSet:
    """Corners of one image: positions in the image's own pixels, and their ORB descriptors.

    `mirrored_*` describe the same corners as seen in the mirror image, positions mapped back into
    the unmirrored image (so a homography fitted to them includes the flip). Queries carry them
    (ORB is not mirror-invariant; describing the mirror costs 6 ms at 1024 px, the corners being
    found once); references keep one orientation, in `_by_level` order. References written by
    earlier versions carry a mirrored set of their own, which is not read any more.
    """

    width: int
    height: int
    points: np.ndarray = field(repr=False)  # (N, 2) float32, x and y
    descriptors: np.ndarray = field(repr=False)  # (N, 32) uint8
    mirrored_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32), repr=False)
    mirrored_descriptors: np.ndarray = field(default_factory=lambda: np.zeros((0, DESCRIPTOR_BYTES), np.uint8), repr=False)

    def __len__(self) -> int:
        return len(self.descriptors)

    def to_bytes(self) -> bytes:
        header = struct.pack("<4sIIII", _MAGIC, self.width, self.height, len(self.points), len(self.mirrored_points))
        parts = (self.points, self.descriptors, self.mirrored_points, self.mirrored_descriptors)
        return header + b"".join(np.ascontiguousarray(p).tobytes() for p in parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "KeypointSet":
        magic, width, height, n, m = struct.unpack_from("<4sIIII", blob)
        if magic != _MAGIC:
            raise ValueError("not a keypoint record")
        arrays, offset = [], struct.calcsize("<4sIIII")
        for count, dtype, columns in ((n, np.float32, 2), (n, np.uint8, 32), (m, np.float32, 2), (m, np.uint8, 32)):
            size = count * columns * np.dtype(dtype).itemsize
            arrays.append(np.frombuffer(blob, dtype, count * columns, offset).reshape(count, columns))
            offset += size
        return cls(width, height, *arrays)


def grayscale(pixels: np.ndarray, longest: int | None = None) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    if longest and max(gray.shape) > longest:
        factor = longest / max(gray.shape)
        size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def _no_corners() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8)


def orb(gray: np.ndarray, features: int, grid: int, mirror: bool = False) -> tuple[np.ndarray, ...]:
    """(points (N, 2) float32, descriptors (N, 32) uint8), in `_by_level` order; with `grid`,
    corners are spread over grid x grid cells. With `mirror`, also (points, descriptors) of the same
    corners described in the mirror image, points mapped back (FAST and the Harris score are
    mirror-symmetric, so the corners are found once; only their orientation and BRIEF tests are
    mirrored, measured identical to describing the flipped picture afresh)."""
    import cv2

    if min(gray.shape) < MIN_SIDE:  # ORB's pyramid cannot even be built for a 1xN picture
        return _no_corners() * (2 if mirror else 1)
    cv2.setNumThreads(1)  # workers parallelize across processes; threads here only add hand-offs
    orb = cv2.ORB_create(nfeatures=features * 3 if grid else features, scaleFactor=1.2, nlevels=8, fastThreshold=10)
    found = orb.detect(gray, None)
    if grid and found:
        found = _spread(found, gray.shape, features, grid)
    described = _described(orb, gray, found)
    if not mirror:
        return described
    right = gray.shape[1] - 1
    flipped = [cv2.KeyPoint(right - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave,
                            k.class_id) for k in found]
    points, descriptors = _described(orb, np.ascontiguousarray(gray[:, ::-1]), flipped)
    points[:, 0] = right - points[:, 0]
    return described + (points, descriptors)


def _described(orb, gray: np.ndarray, found: list) -> tuple[np.ndarray, np.ndarray]:
    found, descriptors = orb.compute(gray, found)  # drops corners too near the border, groups by level
    if descriptors is None or not found:
        return _no_corners()
    return np.array([k.pt for k in found], np.float32)[(order := _by_level(found))], descriptors[order]


def _by_level(found: list) -> np.ndarray:
    """Order of corners taking the pyramid's levels in turn, strongest first within each: the first
    corners of a reference, which are pooled, then describe it at every scale, so a copy pasted
    small still finds them (tuning split, 200 pooled of 500: pasted recall 17/21 strongest-first,
    20/21 level by level; shrunk to 25%, 16/21 and 21/21)."""
    response = np.array([-k.response for k in found])
    level = np.array([k.octave for k in found])
    rank = np.empty(len(found), np.int64)
    for value in np.unique(level):
        members = np.flatnonzero(level == value)
        rank[members[np.argsort(response[members], kind="stable")]] = np.arange(len(members))
    return np.lexsort((response, rank))


def _spread(found, shape: tuple[int, int], features: int, grid: int) -> list:
    """The strongest corners of each grid cell, topped up with the strongest of the rest."""
    height, width = shape
    response = np.array([k.response for k in found])
    cells = np.array([min(grid - 1, int(k.pt[1] * grid / height)) * grid + min(grid - 1, int(k.pt[0] * grid / width))
                      for k in found])
    order = np.lexsort((-response, cells))  # by cell, strongest first within a cell
    rank = np.empty(len(found), np.int64)
    starts = np.searchsorted(cells[order], np.arange(grid * grid))
    rank[order] = np.arange(len(found)) - starts[cells[order]]
    per_cell = features // (grid * grid)
    chosen = rank < per_cell
    rest = np.flatnonzero(~chosen)
    extra = rest[np.argsort(-response[rest])][: max(0, features - int(chosen.sum()))]
    return [found[i] for i in np.concatenate([np.flatnonzero(chosen), extra])]
