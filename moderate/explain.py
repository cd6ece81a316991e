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

from .errors import BankError
from .regions import Region, regions_for
from .signals import KEYPOINTS, PDQ

if TYPE_CHECKING:
    from .engine import Engine
    from .media import Source


@dataclass(frozen=True)
class SignalEvidence:
    """One signal's best evidence for the pair, and what the policy makes of it."""

    signal: str
    matched: bool  # within the policy's widest band for this signal
    action: str | None  # the band's action, when matched ("bank": the bank's own)
    band: str | None
    distance: int | None = None  # pdq
    region: Region | None = None  # pdq: the query region; keypoints: the localized box
    variant: str | None = None
    inliers: int | None = None  # keypoints
    polygon: tuple | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        out = {"signal": self.signal, "matched": self.matched, "action": self.action, "band": self.band}
        for key in ("distance", "variant", "inliers", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.region is not None:
            out["region"] = self.region.to_dict()
        if self.polygon is not None:
            out["polygon"] = [list(p) for p in self.polygon]
        return out


@dataclass(frozen=True)
class Explanation:
    source: str
    bank: str
    reference_id: str
    frame: int
    width: int
    height: int
    signals: tuple[SignalEvidence, ...]

    @property
    def matched(self) -> bool:
        return any(s.matched for s in self.signals)

    def to_dict(self) -> dict:
        return {"source": self.source, "bank": self.bank, "reference_id": self.reference_id, "frame": self.frame,
                "width": self.width, "height": self.height, "matched": self.matched,
                "signals": [s.to_dict() for s in self.signals]}

    def lines(self) -> list[str]:
        head = "MATCH" if self.matched else "NO MATCH"
        out = [f"{head}  {self.source} vs {self.bank}/{self.reference_id}"]
        for s in self.signals:
            verdict = f"within {s.band} -> {s.action}" if s.matched else "outside every band"
            if s.signal == "pdq":
                where = f" region {s.region.origin} {s.region.x},{s.region.y},{s.region.w},{s.region.h}" if s.region else ""
                variant = f" ({s.variant})" if s.variant and s.variant != "original" else ""
                out.append(f"  pdq: distance {s.distance}/256{variant}{where}: {verdict}")
            else:
                polygon = " ".join(f"({x:.0f},{y:.0f})" for x, y in s.polygon) if s.polygon else "none"
                out.append(f"  keypoints: {s.inliers or 0} inliers, polygon {polygon}: {verdict}")
            if s.note:
                out.append(f"    {s.note}")
        return out


def explain(engine: Engine, source: Source, reference_id: str, bank: str | None = None) -> Explanation:
    snapshot = engine.catalog.current()
    bank = _bank_of(snapshot, reference_id, bank)
    prefix = f"{bank}::{reference_id}::"
    media = engine.decode(source)
    frame = media.frames[0]
    policy = engine.policy
    hashes = snapshot.pdq.codes[np.flatnonzero(snapshot.pdq.prefix_mask(prefix))]
    found = []  # (distance, region, variant) of every region and variant against the nearest hash
    for region in regions_for(frame, policy.regions):
        for value in PDQ.compute(region.crop(frame), dihedral=True) if len(hashes) else ():
            query = np.frombuffer(value.to_bytes(), np.uint8)
            found.append((int(np.bitwise_count(np.bitwise_xor(hashes, query)).sum(axis=1).min()), region, value.variant))
    used = [f for f in found if policy.pdq.dihedral or f[2] == "original"]
    evidence = [_pdq_evidence(policy, min(used, key=lambda f: f[0], default=None),
                              min(found, key=lambda f: f[0], default=None))]
    images = np.flatnonzero(snapshot.keypoints.images.prefix_mask(prefix))
    if len(images):
        from .verification import localize

        described = KEYPOINTS.compute(frame.pixels, frame.width, frame.height, policy.keypoints.features)
        found = [f for f in (localize(snapshot.keypoints, int(i), described) for i in images) if f is not None]
        evidence.append(_keypoint_evidence(policy, max(found, key=lambda f: f.inliers, default=None), frame))
    return Explanation(media.source, bank, reference_id, frame.index, frame.width, frame.height, tuple(evidence))


def _bank_of(snapshot, reference_id: str, bank: str | None) -> str:
    holding = [b for b in sorted(snapshot.banks) if snapshot.pdq.prefix_mask(f"{b}::{reference_id}::").any()]
    if bank is not None:
        if bank not in holding:
            raise BankError(f"bank {bank!r} has no reference {reference_id!r}")
        return bank
    if not holding:
        raise BankError(f"no bank has a reference {reference_id!r} (see `moderate bank list`)")
    if len(holding) > 1:
        raise BankError(f"reference {reference_id!r} is in banks {', '.join(holding)}: name one with --bank")
    return holding[0]


def _pdq_evidence(policy, best, best_variant) -> SignalEvidence:
    if best is None:
        return SignalEvidence("pdq", False, None, None, note="the reference has no PDQ hash")
    distance, region, variant = best
    band = policy.pdq.band(distance)
    note = None
    if not band and policy.pdq.band(best_variant[0]):
        note = (f"the {best_variant[2]} variant is {best_variant[0]} bits away, but this policy does not match "
                f"rotations and mirrors (pdq.dihedral: false)")
    return SignalEvidence("pdq", band is not None, band.action if band else None, band.name if band else None,
                          distance=distance, region=region, variant=variant, note=note)


def _keypoint_evidence(policy, found, frame) -> SignalEvidence:
    if found is None:
        return SignalEvidence("keypoints", False, None, None, inliers=0,
                              note="no geometrically consistent local-feature matches")
    band = policy.keypoints.band(found.inliers) if policy.keypoints.enabled else None
    box = Region.around(found.polygon, frame.width, frame.height)
    note = None if policy.keypoints.enabled else "keypoint matching is off in this policy"
    return SignalEvidence("keypoints", band is not None, band.action if band else None, band.name if band else None,
                          region=box, variant="mirrored" if found.mirrored else "original", inliers=found.inliers,
                          polygon=found.polygon, note=note)


def render(explanation: Explanation, query: Source, out: str | Path, reference_image: Source | None = None,
           engine: Engine | None = None) -> Path:
    """A PNG: the query with the matched polygon (green) and best PDQ region (blue); the reference
    image on the left when one is given."""
    from PIL import Image, ImageDraw

    from .media import decode

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
