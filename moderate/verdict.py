"""Verdicts and the evidence behind them: stable JSON that scripts and integrations rely on.

Every field documented in README.md keeps its name and meaning; new fields may be added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .evidence import Evidence

VERDICTS = ("allow", "review", "block")  # in rising severity
EXIT_CODES = {"allow": 0, "review": 3, "block": 4}


def severity(action: str) -> int:
    return VERDICTS.index(action)


def worst(actions) -> str:
    return max(actions, key=severity, default="allow")


@dataclass(frozen=True)
class Reason:
    """Judged evidence: which rule fired, with what action, on what evidence (see `moderate.evidence`).

    Reasons without evidence are about the input itself (`on_error`, a verified original)."""

    rule: str
    action: str
    evidence: Evidence | None = None
    detail: str | None = None
    signer: str | None = None  # for registered signed originals: who signed the original
    source: str | None = None  # with `check --together`: the image this evidence came from
    frame: int | None = None  # in an input of several frames (animations, PDF pages): which one
    page: int | None = None  # and its PDF page, when it came from one

    def _of(self, name: str):
        return getattr(self.evidence, name) if self.evidence is not None else None

    bank = property(lambda self: self._of("bank"))
    reference_id = property(lambda self: self._of("reference_id"))
    signal = property(lambda self: self._of("signal"))
    distance = property(lambda self: self._of("distance"))
    score = property(lambda self: self._of("score"))
    region = property(lambda self: self._of("region"))
    inliers = property(lambda self: self._of("inliers"))
    polygon = property(lambda self: self._of("polygon"))

    @property
    def variant(self) -> str | None:
        variant = self._of("variant")
        return variant if variant != "original" else None

    @property
    def strength(self) -> float:
        """Smaller is stronger (within one signal); reasons without evidence rank last."""
        return self.evidence.strength if self.evidence is not None else 0

    def to_dict(self) -> dict:
        out = {"rule": self.rule, "action": self.action}
        out.update(self.evidence.to_dict() if self.evidence is not None else {
            "bank": None, "reference_id": None, "signal": None, "distance": None, "score": None, "region": None})
        for key in ("detail", "signer", "source"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("frame", "page"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
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
