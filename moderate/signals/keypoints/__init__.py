"""Keypoints: local features that find a flagged image inside a crop, a collage or a rotated copy.

A perceptual hash describes a whole picture, so it breaks as soon as the picture is cut, padded,
turned a few degrees or pasted into another one (measured on the robustness corpus: PDQ catches 0%
of photos pasted at 30-50% scale into another picture). Local features describe small patches
around corners, each on its own: enough of them surviving, in a geometrically consistent layout,
is strong evidence that the reference is in the query, and the layout (a homography) says where.

ORB (FAST corners, rotated BRIEF, 256-bit binary descriptors) is used rather than SIFT because it
is about 10x faster and its binary descriptors fit the same Hamming machinery as PDQ. ORB is not
mirror-invariant (measured 0.03-0.12 recall on plain horizontal flips), so each query corner is
also described as seen in the mirror image (6 ms at 1024 px); references keep one orientation,
which halves what every reference costs on disk, in the pool and to describe.

Queries pick corners over a 4x4 grid: the strongest corners of a busy background would otherwise
take the whole budget and leave none on a small pasted picture (pasted recall 0.90 -> 0.95).
A reference keeps at most `reference_features` (500), about 20 kB: a description of corners, from
which the image cannot be rebuilt. Only its first `KeypointIndex.POOLED`, the strongest of each
pyramid level in turn, are pooled for retrieval; candidates are verified against all of them.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ...evidence import Evidence
from ...ids import prefix, split_record_id
from ...regions import Region
from ...rules import Band, Fields, SignalRules
from ..base import Context, Query, ReferenceImage, StoredSignal
from .features import DESCRIPTOR_BYTES, KeypointSet, grayscale, orb
from .index import KeypointIndex
from .verification import localize, retrieve

__all__ = ["DESCRIPTOR_BYTES", "KEYPOINTS", "KeypointIndex", "KeypointRules", "KeypointSet", "KeypointSignal"]


@dataclass(frozen=True)
class KeypointRules(SignalRules):
    """The `keypoints:` section: local-feature matching (see `moderate.signals.keypoints.verification`),
    candidates from the pooled descriptor index verified by RANSAC, in bands of inliers.
    Distractors reach at most 8 inliers on the robustness corpus."""

    bands: tuple[Band, ...] = (Band(20, "bank", "keypoints.inliers>=20"), Band(12, "review", "keypoints.inliers>=12"))
    features: int = 1500  # ORB corners described per query frame
    candidates: int = 4  # most voted distinct reference pictures verified per frame

    closer: ClassVar[str] = "higher"
    bound_field: ClassVar[str] = "min_inliers"
    label: ClassVar[str] = "inliers"

    @property
    def floor(self) -> int:
        return int(self.loosest)

    @classmethod
    def read(cls, signal: str, fields: Fields) -> "KeypointRules":
        return cls(enabled=fields.boolean("enabled", True),
                   bands=fields.bands("thresholds", cls, signal, cls().bands),
                   features=fields.integer("features", 1500, 100, 20000),
                   candidates=fields.integer("candidates", 4, 1, 100))

    @classmethod
    def read_bound(cls, fields: Fields) -> int:
        return fields.integer(cls.bound_field, None, MIN_INLIERS, 10000)


MIN_INLIERS = 8  # fewer inliers happen by chance between unrelated photos


class KeypointSignal(StoredSignal):
    """Computes ORB keypoints of a picture (RGB uint8) in its own pixel coordinates, and finds and
    localizes references in a query with them."""

    name = "keypoints"
    measure = "inliers"
    rules: ClassVar[type[KeypointRules]] = KeypointRules
    collection = "moderate-keypoints"
    index = KeypointIndex
    page = 200  # keypoint records are ~50 kB each
    include = ("documents",)
    query_features = 1500
    reference_features = 500
    reference_size = 640  # references are described at this longest side; queries at the working size
    grid = 4

    def compute(self, pixels: np.ndarray, width: int, height: int, features: int | None = None,
                grid: int | None = None) -> KeypointSet:
        """Keypoints of a query picture whose original size is `width` x `height`, as is and as
        seen in the mirror image."""
        gray = grayscale(pixels)
        points, descriptors, mirror_points, mirror_descriptors = orb(
            gray, features or self.query_features, self.grid if grid is None else grid, mirror=True)
        factor = width / gray.shape[1]
        return KeypointSet(width, height, points * factor, descriptors, mirror_points * factor, mirror_descriptors)

    def reference(self, pixels: np.ndarray, width: int, height: int) -> KeypointSet:
        """Keypoints of a reference at `reference_size`, level by level (queries carry the mirror)."""
        gray = grayscale(pixels, self.reference_size)
        points, descriptors = orb(gray, self.reference_features, 0)
        return KeypointSet(width, height, points * (width / gray.shape[1]), descriptors)


    # -- storage (see `moderate.signals.base.StoredSignal`) -------------------------------------

    def reference_values(self, image: ReferenceImage) -> list[KeypointSet]:
        """One image's worth of corners: later frames of an animation add only hashes."""
        if image.frame.index != 0:
            return []
        return [self.reference(image.box.crop(image.frame), image.box.w, image.box.h)]

    def encode(self, values: list[KeypointSet]) -> dict:
        return {"embeddings": [[1.0]] * len(values)}

    def record_metadata(self, value: KeypointSet) -> dict:
        """The corners ride in the record's metadata, not its document: Chroma indexes documents
        for full-text search (trigrams), which measured 38 ms and 421 kB per 40 kB record against
        1.5 ms and 159 kB as metadata (`bench --only scale` reports disk per reference)."""
        return {"keypoints": base64.b64encode(value.to_bytes()).decode()}

    def decode(self, page: dict) -> list[KeypointSet]:
        # records written by earlier versions keep their corners in the document
        return [KeypointSet.from_bytes(base64.b64decode((metadata or {}).get("keypoints") or document))
                for metadata, document in zip(page["metadatas"], page["documents"])]

    # -- matching (see `moderate.signals.base`) -------------------------------------------------

    def described(self, query: Query, features: int) -> KeypointSet:
        """The query frame's keypoints, computed once per frame whoever asks first."""
        if self.name not in query.computed:
            frame = query.frame
            query.computed[self.name] = self.compute(frame.pixels, frame.width, frame.height, features)
        return query.computed[self.name]

    def find(self, query: Query, context: Context, rules: KeypointRules) -> list[Evidence]:
        """References of the context's banks found in the query by local features, with where they are."""
        index = context.snapshot.keypoints
        if not len(index.descriptors) or not context.banks:
            return []
        described = self.described(query, rules.features)
        return [self._located(index, found, described)
                for found in retrieve(index, described, _allowed(index, context.banks), rules.candidates, rules.floor)]

    def verify(self, evidence: list[Evidence], query: Query, context: Context, rules: KeypointRules) -> list[Evidence]:
        """Other signals' evidence with inliers and polygon added where the reference has
        keypoints and verifies (a PDQ match localized in the query)."""
        index = context.snapshot.keypoints
        pending = [e for e in evidence if e.signal != self.name and e.inliers is None and e.bank is not None]
        if not pending or not len(index.descriptors):
            return evidence
        described = self.described(query, rules.features)
        located: dict[tuple[str, str], object] = {}
        for e in pending:
            if e.reference not in located:
                images = np.flatnonzero(index.images.prefix_mask(prefix(*e.reference)))
                found = [f for f in (localize(index, int(i), described) for i in images) if f is not None]
                located[e.reference] = max(found, key=lambda f: f.inliers, default=None)
        waiting = {id(e) for e in pending}
        return [e.verified(located[e.reference].inliers, located[e.reference].polygon)
                if id(e) in waiting and located[e.reference] is not None else e for e in evidence]

    def nearest(self, reference: tuple[str, str], query: Query, context: Context,
                rules: KeypointRules) -> tuple[Evidence | None, str | None, bool]:
        """Check's own localization of the reference when it made one; otherwise the reference
        verified directly against the same query keypoints, to show how far it fell short."""
        verified = [e for e in query.computed.get("evidence", ()) if e.reference == reference and e.inliers is not None]
        if verified:
            best = max(verified, key=lambda e: e.inliers)
            return Evidence(self.name, self.measure, best.inliers, *reference, best.region, best.variant, best.inliers,
                            best.polygon), None, True
        if self.name not in query.computed:  # no bank this policy uses holds keypoints
            return None, "check did not run keypoint matching", False
        index = context.snapshot.keypoints
        images = np.flatnonzero(index.images.prefix_mask(prefix(*reference)))
        found = [f for f in (localize(index, int(i), query.computed[self.name]) for i in images) if f is not None]
        direct = max(found, key=lambda f: f.inliers, default=None)
        if direct is None:
            return None, "no geometrically consistent local-feature matches", False
        return (self._located(index, direct, query.computed[self.name]),
                "not among the candidates check verified; verified directly against the same query keypoints", False)

    def holds(self, reference: tuple[str, str], context: Context) -> bool:
        return bool(context.snapshot.keypoints.images.prefix_mask(prefix(*reference)).any())

    def unavailable(self, context: Context) -> str | None:
        return None if len(context.snapshot.keypoints) else "none of the banks searched holds keypoints"

    def search(self, query: Query, context: Context, rules: KeypointRules, min_similarity: float) -> list[Evidence]:
        """Crops, borders and pastes of references: the keypoint retrieval check uses (the policy's
        corner budget), with the inlier floor that `min_similarity` stands for on the shared scale."""
        floor = max(MIN_INLIERS, math.ceil(SIMILARITY_SCALE / max(1e-9, 1.0 - min_similarity)))
        return self.find(query, context, replace(rules, bands=(Band(floor, "review", "search"),), candidates=10))

    def similarity(self, value: float) -> float:
        """1 - 2.4 / inliers: 20 inliers (the default block band) is 0.88 like PDQ's 31 bits, 12
        (the review band) 0.80 like PDQ's 52."""
        return max(0.0, 1.0 - SIMILARITY_SCALE / value) if value > 0 else 0.0

    def _located(self, index: KeypointIndex, found, described: KeypointSet) -> Evidence:
        bank, reference_id = split_record_id(index.images.id_at(found.image))
        region = Region.around(found.polygon, described.width, described.height)
        return Evidence(self.name, self.measure, found.inliers, bank, reference_id, region,
                        "mirrored" if found.mirrored else "original", found.inliers, found.polygon)


SIMILARITY_SCALE = 2.4  # inliers -> the shared similarity scale (see `KeypointSignal.similarity`)


def _allowed(index: KeypointIndex, banks) -> np.ndarray:
    """Mask over the index's images: those of `banks`."""
    allowed = np.zeros(len(index), bool)
    for bank in banks:
        allowed |= index.images.prefix_mask(prefix(bank))
    return allowed


KEYPOINTS = KeypointSignal()
