"""Verdicts and the evidence behind them: stable JSON that scripts and integrations rely on.

Every field documented in README.md keeps its name and meaning; new fields may be added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .regions import Region

VERDICTS = ("allow", "review", "block")  # in rising severity
EXIT_CODES = {"allow": 0, "review": 3, "block": 4}


def severity(action: str) -> int:
    return VERDICTS.index(action)


def worst(actions) -> str:
    return max(actions, key=severity, default="allow")


@dataclass(frozen=True)
class Reason:
    """One piece of evidence: which rule fired, with what action, on which reference and region."""

    rule: str
    action: str
    bank: str | None = None
    reference_id: str | None = None
    signal: str | None = None
    distance: float | None = None
    score: float | None = None
    region: Region | None = None
    variant: str | None = None  # the transform of the query that matched (dihedral PDQ)
    detail: str | None = None
    signer: str | None = None  # for registered signed originals: who signed the original
    inliers: int | None = None  # local-feature matches consistent with one homography
    polygon: tuple | None = None  # the reference's outline in the query's pixels (x, y corners)
    source: str | None = None  # with `check --together`: the image this evidence came from

    @property
    def strength(self) -> float:
        """Smaller is stronger: the PDQ distance, or minus the inliers."""
        if self.distance is not None:
            return self.distance
        if self.inliers is not None:
            return -self.inliers
        return -self.score if self.score is not None else 0

    def to_dict(self) -> dict:
        out = {
            "rule": self.rule, "action": self.action, "bank": self.bank, "reference_id": self.reference_id,
            "signal": self.signal, "distance": self.distance, "score": self.score,
            "region": self.region.to_dict() if self.region else None,
        }
        if self.variant:
            out["variant"] = self.variant
        if self.detail:
            out["detail"] = self.detail
        if self.signer:
            out["signer"] = self.signer
        if self.source:
            out["source"] = self.source
        if self.inliers is not None:
            out["inliers"] = self.inliers
            out["polygon"] = [list(p) for p in self.polygon] if self.polygon else None
        return out


@dataclass(frozen=True)
class Verdict:
    """allow | review | block for one frame of one input, with its reasons."""

    source: str
    verdict: str
    frame: int = 0
    reasons: tuple[Reason, ...] = ()
    error: str | None = None
    error_code: str | None = None
    elapsed_ms: float = 0.0
    policy: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 1
    page: int | None = None  # PDF page (0-based) of this frame
    signals: tuple = field(default=(), repr=False)
    provenance: object | None = None  # moderate.provenance.Provenance

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict:
        out = {
            "source": self.source, "frame": self.frame, "verdict": self.verdict,
            "reasons": [r.to_dict() for r in self.reasons], "error": self.error,
            "elapsed_ms": round(self.elapsed_ms, 2),
            "error_code": self.error_code, "policy": self.policy, "sha256": self.sha256,
            "width": self.width, "height": self.height, "frames": self.frames,
        }
        if self.page is not None:
            out["page"] = self.page
        if self.signals:
            out["signals"] = [s.to_dict() for s in self.signals]
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
