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

import numpy as np

from ..errors import BankError
from ..regions import Region
from ..signals import PDQ

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
            if s.signal == "pdq":
                where = f" region {s.region.origin} {s.region.x},{s.region.y},{s.region.w},{s.region.h}" if s.region else ""
                variant = f" ({s.variant})" if s.variant and s.variant != "original" else ""
                value = f"distance {s.distance}/256{variant}{where}" if s.distance is not None else "no distance"
                out.append(f"  pdq: {value}: {verdict}")
            elif s.signal == "keypoints":
                polygon = " ".join(f"({x:.0f},{y:.0f})" for x, y in s.polygon) if s.polygon else "none"
                out.append(f"  keypoints: {s.inliers or 0} inliers, polygon {polygon}: {verdict}")
            else:
                value = f"similarity {s.score:.4f}" if s.score is not None else "no similarity"
                out.append(f"  {s.signal}: {value}: {verdict}")
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
    from ..errors import MediaError

    snapshot = engine.catalog.current()
    bank = _bank_of(snapshot, reference_id, bank)
    traces: list = []
    verdicts, _ = engine._verdicts(source, None, traces)
    if not traces:  # the input could not be decoded: what check reports, raised
        failed = verdicts[0]
        raise MediaError(failed.source, failed.error_code or "unreadable", failed.reasons[0].detail or failed.error)
    explained = [_frame_evidence(engine, snapshot, (bank, reference_id), trace) for trace in traces]
    best = max(range(len(explained)), key=lambda i: (sum(s.matched for s in explained[i]), -i))
    trace, first = traces[best], verdicts[0]
    combined = max((v.verdict for v in verdicts), key=("allow", "review", "block").index)
    naming = tuple(r for v in verdicts for r in v.reasons if (r.bank, r.reference_id) == (bank, reference_id)
                   or (r.detail and f"{bank}/{reference_id}" in r.detail))
    return Explanation(first.source, bank, reference_id, trace.frame.index, trace.frame.width, trace.frame.height,
                       explained[best], combined, naming)


def _frame_evidence(engine: Engine, snapshot, reference: tuple[str, str], trace) -> tuple[SignalEvidence, ...]:
    policy = engine.policy
    prefix = f"{reference[0]}::{reference[1]}::"
    found = [m for m in trace.matches if m.reference == reference]
    evidence = [_pdq_evidence(policy, snapshot.pdq.codes[np.flatnonzero(snapshot.pdq.prefix_mask(prefix))], trace)]
    images = np.flatnonzero(snapshot.keypoints.images.prefix_mask(prefix))
    if len(images):
        evidence.append(_keypoint_evidence(policy, snapshot, images, found, trace))
    if snapshot.banks.get(reference[0], {}).get("embedding_key"):
        evidence.append(_embedding_evidence(policy, reference[0], found))
    return tuple(evidence)


def _pdq_evidence(policy, hashes: np.ndarray, trace) -> SignalEvidence:
    """The closest of the hashes check matched (its regions, variants and quality floor) to the reference's."""
    if not len(hashes):
        return SignalEvidence("pdq", False, None, None, note="the reference has no PDQ hash")
    found = [(int(np.bitwise_count(np.bitwise_xor(hashes, np.frombuffer(value.to_bytes(), np.uint8))).sum(axis=1).min()),
              region, value.variant) for region, value in trace.queries]
    if not found:
        return SignalEvidence("pdq", False, None, None, note=f"the query's PDQ quality is below min_quality "
                                                              f"({policy.pdq.min_quality}): check does not use its hash")
    distance, region, variant = min(found, key=lambda f: f[0])
    band = policy.pdq.band(distance)
    note = None
    if not band and not policy.pdq.dihedral:
        turned = min(((int(np.bitwise_count(np.bitwise_xor(hashes, np.frombuffer(v.to_bytes(), np.uint8))).sum(axis=1).min()),
                       v.variant) for v in PDQ.compute(region.crop(trace.frame), dihedral=True)[1:]), default=None)
        if turned and policy.pdq.band(turned[0]):
            note = (f"the {turned[1]} variant is {turned[0]} bits away, but this policy does not match "
                    f"rotations and mirrors (pdq.dihedral: false)")
    return SignalEvidence("pdq", band is not None, band.action if band else None, band.name if band else None,
                          distance=distance, region=region, variant=variant, note=note)


def _keypoint_evidence(policy, snapshot, images: np.ndarray, found: list, trace) -> SignalEvidence:
    """Check's own localization of the reference when it made one; otherwise the reference verified
    directly against the same query keypoints, to show how far it fell short."""
    verified = [m for m in found if m.inliers is not None]
    note = None
    if verified:
        best = max(verified, key=lambda m: m.inliers)
        inliers, polygon, mirrored, box = best.inliers, best.polygon, best.variant == "mirrored", best.region
    elif trace.described is None:
        return SignalEvidence("keypoints", False, None, None, inliers=0, note="keypoint matching is off in this policy"
                              if not policy.keypoints.enabled else "check did not run keypoint matching")
    else:
        from ..signals.verification import localize

        located = [f for f in (localize(snapshot.keypoints, int(i), trace.described) for i in images) if f is not None]
        direct = max(located, key=lambda f: f.inliers, default=None)
        if direct is None:
            return SignalEvidence("keypoints", False, None, None, inliers=0,
                                  note="no geometrically consistent local-feature matches")
        inliers, polygon, mirrored = direct.inliers, direct.polygon, direct.mirrored
        box = Region.around(polygon, trace.frame.width, trace.frame.height)
        note = "not among the candidates check verified; verified directly against the same query keypoints"
    band = policy.keypoints.band(inliers) if verified else None
    return SignalEvidence("keypoints", band is not None, band.action if band else None, band.name if band else None,
                          region=box, variant="mirrored" if mirrored else "original", inliers=inliers,
                          polygon=polygon, note=note)


def _embedding_evidence(policy, bank: str, found: list) -> SignalEvidence:
    similar = [m for m in found if m.signal == "embedding"]
    if not similar:
        return SignalEvidence("embedding", False, None, None, note=(
            f"not among the {policy.embedding.candidates} nearest at similarity >= {policy.embedding.floor:g}"
            if policy.embedding.enabled else "embedding matching is off in this policy"))
    best = max(similar, key=lambda m: m.value)
    band = policy.embedding.band(best.value, bank)
    return SignalEvidence("embedding", band is not None, band.action if band else None, band.name if band else None,
                          region=best.region, score=best.value)


def _bank_of(snapshot, reference_id: str, bank: str | None) -> str:
    holding = [b for b in sorted(snapshot.banks) if snapshot.pdq.prefix_mask(f"{b}::{reference_id}::").any()
               or snapshot.keypoints.images.prefix_mask(f"{b}::{reference_id}::").any()]
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
