"""Evidence: what one signal found, the single type that matching produces and policy judges.

A piece of evidence ties a query region to a reference (or, for detectors, to a label) through one
signal, with one value on that signal's own scale (`measure`):
- `distance`: smaller is closer (PDQ Hamming bits of 256; exact digests are 0);
- `score`: larger is closer (embedding cosine similarity, detector confidence, PDQ quality);
- `inliers`: local-feature matches consistent with one homography (larger is closer).

Evidence from any signal whose reference keeps local features can also carry the geometric
verification (`inliers`, `polygon`): where the reference sits in the query. `moderate check`
judges evidence into reasons; `moderate explain` prints the same evidence, including the evidence
that fell short of every band.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .regions import Region

MEASURES = ("distance", "score", "inliers")


@dataclass(frozen=True)
class Evidence:
    """One signal's finding for a query region against a reference (frozen; serializes to JSON).

    `value` is on the signal's scale, named by `measure`; `inliers` and `polygon` (the reference's
    corners, x and y in the query's pixels) come from geometric verification when there was one.
    """

    signal: str
    measure: str
    value: float
    bank: str | None = None
    reference_id: str | None = None
    region: Region | None = None
    variant: str = "original"  # the transform of the query that matched (dihedral PDQ, mirrored keypoints)
    inliers: int | None = None
    polygon: tuple | None = None
    label: str | None = None  # detectors: what was found

    @property
    def strength(self) -> float:
        """Smaller is stronger, comparable only within one signal."""
        return self.value if self.measure == "distance" else -self.value

    @property
    def reference(self) -> tuple[str, str] | None:
        return (self.bank, self.reference_id) if self.bank is not None else None

    @property
    def distance(self) -> float | None:
        return self.value if self.measure == "distance" else None

    @property
    def score(self) -> float | None:
        return self.value if self.measure == "score" else None

    # Compatibility with `Match` as it was: embeddings called their score a similarity.
    similarity = score

    def verified(self, inliers: int, polygon: tuple) -> "Evidence":
        return replace(self, inliers=inliers, polygon=polygon)

    def to_dict(self) -> dict:
        """The JSON fields a verdict's reasons have always had (`distance`, `score`, `inliers`, ...)."""
        out = {"bank": self.bank, "reference_id": self.reference_id, "signal": self.signal,
               "distance": self.distance, "score": self.score,
               "region": self.region.to_dict() if self.region else None}
        if self.variant != "original":
            out["variant"] = self.variant
        if self.inliers is not None:
            out["inliers"] = self.inliers
            out["polygon"] = [list(p) for p in self.polygon] if self.polygon else None
        return out


Match = Evidence  # the name matching results had before evidence became one type for every signal
