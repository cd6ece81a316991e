"""Geometric verification: is a reference really in the query, and where?

Descriptor matches alone are noisy: any two photos share a few similar corners. What does not
happen by chance is many matches agreeing on one perspective mapping (a homography) from the
reference into the query. RANSAC finds that mapping and counts the matches consistent with it
(inliers); the reference's corners mapped through it are the matched polygon in the query.

Two ways in:
- `retrieve` finds candidates among every reference at once: each query descriptor, as is and as
  seen in the mirror, votes for the image of its nearest pooled descriptor when that neighbour is
  clearly nearer than the nearest *other* corner (Lowe's ratio test across the pool, which drops
  corners common to many images; copies of the same corner in duplicate references share the
  vote), and the most voted images are verified against all their corners, not only the pooled
  ones, each match passing the ratio test among the image's own corners and against the pool.
- `localize` verifies one given image (a PDQ candidate, or `moderate explain`) the same way without
  the pool's test (there was no search of the pool to test against).

Measured on the robustness corpus (bench/robustness.py, 21 flagged photos, 20 distractors, 25
edits each): distractor queries reach at most 8 inliers; every edited flagged photo but one
reaches 14 or more, crops keeping 50% and photos pasted at 30% scale included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import KeypointSet
from .index import KeypointIndex

RATIO = 0.8  # Lowe's ratio: the nearest neighbour must be clearly nearer than the second
MAX_HAMMING = 64  # of 256 bits; farther neighbours are not the same corner
MIN_VOTES = 6  # fewer correspondences cannot support a homography worth fitting
REPROJECTION = 8.0  # RANSAC inlier tolerance, in pixels of a 1024 px picture
NEIGHBOURS = 32  # pooled neighbours read per query descriptor: the nearest corner and its copies
MAX_COPIES = 8  # fits per distinct candidate picture, copies included (bounds the cost of many copies)
SAME_CORNER = 40  # bits: pooled descriptors this close to the nearest are one corner in two versions of
# a picture (another crop, size or encoding), sharing a vote or a match rather than being its rival


@dataclass(frozen=True)
class Localization:
    """A reference image found in a query: inlier count and its outline in query pixels."""

    image: int  # row of the image in the keypoint index
    inliers: int
    polygon: tuple[tuple[float, float], ...]  # the reference's corners in query coordinates
    mirrored: bool  # matched through the mirror image's features


def retrieve(index: KeypointIndex, query: KeypointSet, allowed: np.ndarray, candidates: int,
             min_inliers: int) -> list[Localization]:
    """Verified localizations of the most voted allowed images (allowed: mask over images).

    Every copy of a picture in the pool gets the same votes and is verified on its own, so a
    picture held under several ids, in several banks or re-encoded is found once per copy with the
    same strength (the index contract python-threatexchange states: every matching entry is
    returned). `candidates` bounds the distinct pictures verified; copies of one are not counted.
    """
    if len(query) == 0 or len(index.pooled) == 0:  # references can all lack corners (flat stripes)
        return []
    mirrored = np.repeat([False, True], [len(query.descriptors), len(query.mirrored_descriptors)])
    distances, rows = index.nearest(np.concatenate([query.descriptors, query.mirrored_descriptors]), NEIGHBOURS)
    voters, keys = _votes(index, distances, rows, allowed, mirrored)
    split = len(query.descriptors)  # the query's own corners, then their mirror: views, not copies
    pool = {False: (distances[:split], rows[:split]), True: (distances[split:], rows[split:])}
    found, votes = np.unique(keys, return_counts=True)
    out: list[Localization] = []
    tried: list[tuple[set, bool]] = []  # (voting query descriptors, verified) per distinct picture
    distinct = 0
    for key in found[np.argsort(-votes, kind="stable")][: candidates * MAX_COPIES]:
        picked = np.flatnonzero(keys == key)
        if len(picked) < MIN_VOTES:
            break
        voting = set(voters[picked].tolist())
        twin = next((ok for seen, ok in tried if len(seen & voting) * 2 >= len(seen | voting)), None)
        if twin is False:
            continue  # a copy of a picture that did not verify
        if twin is None:
            if distinct == candidates:
                continue  # only copies of pictures already verified are still fitted
            distinct += 1
        located = _localized(index, int(key // 2), query, bool(key % 2), pool[bool(key % 2)])
        verified = located is not None and located.inliers >= min_inliers
        tried.append((voting, verified))
        if verified:
            out.append(located)
    return out


def _votes(index: KeypointIndex, distances: np.ndarray, rows: np.ndarray, allowed: np.ndarray,
           mirrored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query descriptor, image key) of every vote.

    Lowe's ratio test compares the nearest pooled descriptor with the nearest *other corner*:
    neighbours no farther from the nearest one than the query is are the same corner in another
    copy of the picture (a duplicate reference, a re-encoded near-copy), and they share the vote
    instead of cancelling it. A vote is for an image seen one way (the query as is, or mirrored):
    the two ways fit different mappings, so the key is image * 2 + mirrored.
    """
    present = rows >= 0
    safe = np.where(present, rows, 0)
    pooled = index.descriptors[safe]  # (Q, k, 32)
    apart = np.bitwise_count(np.bitwise_xor(pooled, pooled[:, :1])).sum(axis=2)  # from the nearest, in bits
    nearest = distances[:, :1]
    same = present & (apart <= np.maximum(nearest, SAME_CORNER))
    same[:, 0] = present[:, 0]
    other = present & ~same
    second = np.where(other.any(axis=1), distances[np.arange(len(rows)), other.argmax(axis=1)], np.inf)
    good = present[:, 0] & (nearest[:, 0] <= MAX_HAMMING) & (nearest[:, 0] < RATIO * second)
    voting = same & good[:, None] & (distances <= MAX_HAMMING) & allowed[index.owner[safe]]
    query_rows, columns = np.nonzero(voting)
    keys = index.owner[rows[query_rows, columns]].astype(np.int64) * 2 + mirrored[query_rows]
    _, first = np.unique(query_rows * (2 * len(index)) + keys, return_index=True)  # one vote per descriptor and key
    return query_rows[first], keys[first]


def localize(index: KeypointIndex, image: int, query: KeypointSet) -> Localization | None:
    """The best localization of one indexed image in the query, as is and mirrored."""
    found = [f for f in (_localized(index, image, query, m) for m in (False, True)) if f is not None]
    return max(found, key=lambda f: f.inliers, default=None)


def _localized(index: KeypointIndex, image: int, query: KeypointSet, mirrored: bool,
               pool: tuple[np.ndarray, np.ndarray] | None = None) -> Localization | None:
    """One indexed image in the query seen one way: its corners matched to the query's, then RANSAC.

    A match passes Lowe's ratio test among the image's own corners and, given the query's pooled
    neighbours `pool` ((Q, k) distances and rows, as `retrieve` searched them), also against the
    nearest pooled corner of any other picture that is not a copy of the matched corner: the test
    across the whole bank that keeps a query's background from matching by chance, with copies of
    the picture (duplicate references) sharing a match rather than cancelling it."""
    points, descriptors = (query.mirrored_points, query.mirrored_descriptors) if mirrored else (
        query.points, query.descriptors)
    rows = index.rows(image)
    if rows.stop - rows.start < 2 or len(descriptors) < 2:
        return None
    import faiss

    own = faiss.IndexBinaryFlat(256)
    own.add(np.ascontiguousarray(index.descriptors[rows]))
    distances, nearest = own.search(np.ascontiguousarray(descriptors), 2)
    good = np.flatnonzero((distances[:, 0] < RATIO * distances[:, 1]) & (distances[:, 0] <= MAX_HAMMING))
    matched = rows.start + nearest[good, 0]
    if pool is not None and len(good):
        pooled_distances, pooled_rows = pool[0][good], pool[1][good]
        present = pooled_rows >= 0
        safe = np.where(present, pooled_rows, 0)
        neighbours = index.descriptors[safe]  # (G, k, 32)
        apart = np.bitwise_count(np.bitwise_xor(neighbours, index.descriptors[matched][:, None])).sum(axis=2)
        rival = present & (index.owner[safe] != image) & (apart > np.maximum(distances[good, :1], SAME_CORNER))
        nearest_rival = np.where(rival, pooled_distances, np.inf).min(axis=1)
        keep = distances[good, 0] < RATIO * nearest_rival
        good, matched = good[keep], matched[keep]
    if len(good) < MIN_VOTES:
        return None
    return _fit(index, image, mirrored, index.points[matched], points[good], query)


def _fit(index: KeypointIndex, image: int, mirrored: bool, reference_points: np.ndarray, query_points: np.ndarray,
         query: KeypointSet) -> Localization | None:
    """RANSAC homography from reference to query; None when it is degenerate."""
    import cv2

    tolerance = REPROJECTION * max(query.width, query.height) / 1024
    homography, mask = cv2.findHomography(reference_points, query_points, cv2.RANSAC, tolerance,
                                          maxIters=2000, confidence=0.995)
    if homography is None:
        return None
    width, height = (int(v) for v in index.sizes[image])
    corners = np.array([[[0, 0]], [[width, 0]], [[width, height]], [[0, height]]], np.float32)
    polygon = cv2.perspectiveTransform(corners, homography).reshape(4, 2)
    if not _plausible(homography, polygon, mirrored, query):
        return None
    inliers = int(np.unique(query_points[mask.ravel().astype(bool)].round(), axis=0).shape[0])
    corners = tuple((round(float(x), 1) + 0.0, round(float(y), 1) + 0.0) for x, y in polygon)  # + 0.0: never -0.0
    return Localization(image, inliers, corners, mirrored)


def _plausible(homography: np.ndarray, polygon: np.ndarray, mirrored: bool, query: KeypointSet) -> bool:
    """A real picture maps to a convex quadrilateral of sensible size, flipped only if mirrored."""
    import cv2

    if not np.all(np.isfinite(polygon)):
        return False
    determinant = float(np.linalg.det(homography[:2, :2]))
    if (determinant < 0) != mirrored or determinant == 0:
        return False
    if not cv2.isContourConvex(polygon.reshape(-1, 1, 2).astype(np.float32)):
        return False
    area = abs(cv2.contourArea(polygon.astype(np.float32)))
    query_area = float(query.width * query.height)
    return query_area * 0.002 <= area <= query_area * 25
