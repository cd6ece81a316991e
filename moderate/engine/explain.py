"""Explanations: why an input does, or does not, match one reference.

A reviewer who disagrees with a verdict (or a T&S engineer tuning thresholds) needs the evidence,
signal by signal, including the evidence that fell short: the closest PDQ distance over every
region and variant of the query against every hash of the reference, and the local-feature
inliers with the polygon where the reference sits in the query. `render` draws the query with
that polygon outlined; banks never hold flagged images, so the reference side is drawn only when
the caller has the image (`--reference-image`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BankError, MediaError
from ..ids import prefix
from ..regions import Region
from ..signals import SIGNALS

if TYPE_CHECKING:
    from . import Engine
    from ..media import Source


@dataclass(frozen=True)
class SignalEvidence:
    """One signal's best evidence for the pair, and what the policy makes of it."""

    signal: str
    matched: bool  # within one of the policy's bands for this signal
    action: str | None  # the band's action, when matched ("bank": the bank's own)
    band: str | None
    distance: int | None = None  # pdq
    region: Region | None = None  # pdq: the query region; keypoints: the localized box
    variant: str | None = None
    inliers: int | None = None  # keypoints, and PDQ evidence verified by keypoints
    polygon: tuple | None = None
    note: str | None = None
    score: float | None = None  # embedding: cosine similarity

    def describe(self) -> str:
        """The values in words: `distance 12 (rotate90) region whole 0,0,640,480`, `68 inliers, polygon ...`."""
        parts = []
        if self.distance is not None:
            parts.append(f"distance {self.distance:g}")
        if self.score is not None:
            parts.append(f"similarity {self.score:.4f}")
        if self.inliers is not None:
            polygon = " ".join(f"({x:.0f},{y:.0f})" for x, y in self.polygon) if self.polygon else "none"
            parts.append(f"{self.inliers} inliers, polygon {polygon}")
        if self.variant and self.variant != "original":
            parts.append(f"({self.variant})")
        if self.region is not None and self.inliers is None:
            r = self.region
            parts.append(f"region {r.origin} {r.x},{r.y},{r.w},{r.h}")
        return " ".join(parts) or "no value"

    def to_dict(self) -> dict:
        out = {"signal": self.signal, "matched": self.matched, "action": self.action, "band": self.band}
        for key in ("distance", "score", "variant", "inliers", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.region is not None:
            out["region"] = self.region.to_dict()
        if self.polygon is not None:
            out["polygon"] = [list(p) for p in self.polygon]
        return out


@dataclass(frozen=True)
class Explanation:
    """The evidence `check` decided on for one reference: per signal its best value (also when it
    fell short of every band), the input's verdict, and the reasons naming the reference."""

    source: str
    bank: str
    reference_id: str
    frame: int
    width: int
    height: int
    signals: tuple[SignalEvidence, ...]
    verdict: str = "allow"  # the input's verdict under the same policy (what `check` says)
    reasons: tuple = ()  # the judged reasons that name this reference (moderate.verdict.Reason)

    @property
    def matched(self) -> bool:
        return any(s.matched for s in self.signals)

    def to_dict(self) -> dict:
        return {"source": self.source, "bank": self.bank, "reference_id": self.reference_id, "frame": self.frame,
                "width": self.width, "height": self.height, "matched": self.matched, "verdict": self.verdict,
                "reasons": [r.to_dict() for r in self.reasons], "signals": [s.to_dict() for s in self.signals]}

    def lines(self) -> list[str]:
        head = "MATCH" if self.matched else "NO MATCH"
        out = [f"{head}  {self.source} vs {self.bank}/{self.reference_id}"]
        for s in self.signals:
            verdict = f"within {s.band} -> {s.action}" if s.matched else "outside every band"
            out.append(f"  {s.signal}: {s.describe()}: {verdict}")
            if s.note:
                out.append(f"    {s.note}")
        decided = "; ".join(f"{r.rule} -> {r.action}" for r in self.reasons) or "no reason names this reference"
        out.append(f"  check: {self.verdict.upper()} ({decided})")
        return out


def explain(engine: Engine, source: Source, reference_id: str, bank: str | None = None) -> Explanation:
    """Run the same pass `check` runs, then read off the evidence for one reference.

    The frame shown is the one with the strongest evidence for the reference (the first when none
    has any). Errors: BankError when no bank (or several, without `bank`) holds the reference;
    MediaError when the input cannot be decoded.
    """
    snapshot = engine.catalog.current()
    bank = _bank_of(snapshot, reference_id, bank)
    traces: list = []
    verdicts, _ = engine._verdicts(source, None, traces)
    if not traces:  # the input could not be decoded: what check reports, raised
        failed = verdicts[0]
        raise MediaError(failed.source, failed.error_code or "unreadable", failed.reasons[0].detail or failed.error)
    explained = [_frame_evidence(engine.policy, (bank, reference_id), trace) for trace in traces]
    best = max(range(len(explained)), key=lambda i: (sum(s.matched for s in explained[i]), -i))
    trace, first = traces[best], verdicts[0]
    combined = max((v.verdict for v in verdicts), key=("allow", "review", "block").index)
    naming = tuple(r for v in verdicts for r in v.reasons if (r.bank, r.reference_id) == (bank, reference_id)
                   or (r.detail and f"{bank}/{reference_id}" in r.detail))
    return Explanation(first.source, bank, reference_id, trace.frame.index, trace.frame.width, trace.frame.height,
                       explained[best], combined, naming)


def _frame_evidence(policy, reference: tuple[str, str], trace) -> tuple[SignalEvidence, ...]:
    """Each signal holding values for the reference: its closest evidence, and what the policy makes of it."""
    out = []
    for name, signal in SIGNALS.items():
        if not signal.holds(reference, trace.context):
            continue
        rules = policy.rules_for(name)
        if not rules.enabled:
            out.append(SignalEvidence(name, False, None, None, note=f"{name} matching is off in this policy"))
            continue
        closest, note, judged = signal.nearest(reference, trace.query, trace.context, rules)
        if closest is None:
            out.append(SignalEvidence(name, False, None, None, note=note))
            continue
        band = rules.band(closest.value, reference[0]) if judged else None
        out.append(SignalEvidence(name, band is not None, band.action if band else None, band.name if band else None,
                                  distance=closest.distance, region=closest.region, variant=closest.variant,
                                  inliers=closest.inliers, polygon=closest.polygon, note=note, score=closest.score))
    return tuple(out)


def _bank_of(snapshot, reference_id: str, bank: str | None) -> str:
    holding = [b for b in sorted(snapshot.banks) if snapshot.pdq.prefix_mask(prefix(b, reference_id)).any()
               or snapshot.keypoints.images.prefix_mask(prefix(b, reference_id)).any()]
    if bank is not None:
        if bank not in holding:
            raise BankError(f"bank {bank!r} has no reference {reference_id!r}")
        return bank
    if not holding:
        raise BankError(f"no bank has a reference {reference_id!r} (see `moderate bank list`)")
    if len(holding) > 1:
        raise BankError(f"reference {reference_id!r} is in banks {', '.join(holding)}: name one with --bank")
    return holding[0]


def render(explanation: Explanation, query: Source, out: str | Path, reference_image: Source | None = None,
           engine: Engine | None = None) -> Path:
    """A PNG: the query with the matched polygon (green) and best PDQ region (blue); the reference
    image on the left when one is given."""
    from PIL import Image, ImageDraw

    from ..media import decode

    decode_with = engine.decode if engine else decode
    frame = decode_with(query).frames[explanation.frame]
    scale = frame.scale
    picture = Image.fromarray(frame.pixels)
    draw = ImageDraw.Draw(picture)
    width = max(2, picture.width // 300)
    for evidence in explanation.signals:
        if evidence.polygon:
            points = [(x * scale, y * scale) for x, y in evidence.polygon]
            draw.line(points + points[:1], fill=(0, 220, 0), width=width)
        elif evidence.region is not None and evidence.signal == "pdq" and evidence.matched:
            r = evidence.region
            draw.rectangle([r.x * scale, r.y * scale, (r.x + r.w) * scale, (r.y + r.h) * scale], outline=(0, 120, 255),
                           width=width)
    if reference_image is not None:
        reference = Image.fromarray(decode_with(reference_image).frames[0].pixels)
        reference.thumbnail((picture.height * 2, picture.height))
        side = Image.new("RGB", (reference.width + 16 + picture.width, max(reference.height, picture.height)), "white")
        side.paste(reference, (0, 0))
        side.paste(picture, (reference.width + 16, 0))
        picture = side
    out = Path(out)
    picture.save(out, "PNG")
    return out
