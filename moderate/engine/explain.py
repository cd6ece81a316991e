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
    verdicts, *_ = engine._verdicts(source, None, traces)
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
        raise BankError(f"no bank has a reference {reference_id!r} (see `moderate bank refs BANK`)")
    if len(holding) > 1:
        raise BankError(f"reference {reference_id!r} is in banks {', '.join(holding)}: name one with --bank")
    return holding[0]


OUTLINE = (0, 220, 0)  # the keypoint polygon: where the reference sits in the query
PDQ_BOX = (0, 120, 255)  # the query region whose PDQ hash matched
MATCH_LINE = (255, 0, 200)  # a reference corner and the query corner it matched
GAP = 16  # pixels between the reference and the query
MAX_LINES = 40  # more lines hide the pictures they join


def render(explanation: Explanation, query: Source, out: str | Path, reference_image: Source | None = None,
           engine: Engine | None = None) -> Path:
    """A PNG: the query with the matched polygon (green) and best PDQ region (blue), and a legend
    below it (bank, reference, each signal's value, inliers, mirrored). With the reference image
    (banks never hold it), that image is drawn on the left and lines join the corners of it that
    match corners of the query under the explanation's own mapping."""
    from PIL import Image, ImageDraw

    from ..media import decode

    decode_with = engine.decode if engine else decode
    frame = decode_with(query).frames[explanation.frame]
    picture = Image.fromarray(frame.pixels)
    draw = ImageDraw.Draw(picture)
    width = max(2, picture.width // 300)
    for evidence in explanation.signals:
        if evidence.polygon:
            points = [(x * frame.scale, y * frame.scale) for x, y in evidence.polygon]
            draw.line(points + points[:1], fill=OUTLINE, width=width)
        elif evidence.region is not None and evidence.signal == "pdq" and evidence.matched:
            r = evidence.region
            draw.rectangle([r.x * frame.scale, r.y * frame.scale, (r.x + r.w) * frame.scale, (r.y + r.h) * frame.scale],
                           outline=PDQ_BOX, width=width)
    pairs = None
    if reference_image is not None:
        flagged = decode_with(reference_image).frames[0]
        reference = Image.fromarray(flagged.pixels)
        reference.thumbnail((picture.height * 2, picture.height))
        side = Image.new("RGB", (reference.width + GAP + picture.width, max(reference.height, picture.height)), "white")
        side.paste(reference, (0, 0))
        side.paste(picture, (reference.width + GAP, 0))
        pairs = matched_points(explanation, flagged, frame)
        shrink = reference.width / flagged.width
        draw = ImageDraw.Draw(side)
        for (rx, ry), (qx, qy) in pairs:
            draw.line([(rx * shrink, ry * shrink), (reference.width + GAP + qx * frame.scale, qy * frame.scale)],
                      fill=MATCH_LINE, width=max(1, width // 2))
        picture = side
    picture = _with_legend(picture, explanation, pairs)
    out = Path(out)
    picture.save(out, "PNG")
    return out


def matched_points(explanation: Explanation, reference, query) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """(reference point, query point) pairs, in each picture's original pixels, that agree with the
    explanation: corners of the reference (`reference`, a decoded frame) whose ORB descriptor's
    nearest query corner lies where the keypoint polygon's mapping puts them; without a polygon, the
    reference's four corners and those of the matched PDQ region. At most MAX_LINES, spread out."""
    import cv2

    from ..signals import KEYPOINTS
    from ..signals.keypoints.verification import MAX_HAMMING, RATIO, REPROJECTION

    corners = np.float32([[0, 0], [reference.width, 0], [reference.width, reference.height], [0, reference.height]])
    located = next((s for s in explanation.signals if s.polygon), None)
    if located is None:
        found = next((s for s in explanation.signals if s.signal == "pdq" and s.matched and s.region is not None
                      and s.variant in (None, "original")), None)
        if found is None:
            return []
        r = found.region
        return [((float(a), float(b)), (x, y)) for (a, b), (x, y) in
                zip(corners, [(r.x, r.y), (r.x + r.w, r.y), (r.x + r.w, r.y + r.h), (r.x, r.y + r.h)])]
    mapping = cv2.getPerspectiveTransform(corners, np.float32(located.polygon))
    ours = KEYPOINTS.reference(reference.pixels, reference.width, reference.height)
    theirs = KEYPOINTS.compute(query.pixels, query.width, query.height)
    points, descriptors = ((theirs.mirrored_points, theirs.mirrored_descriptors) if located.variant == "mirrored"
                           else (theirs.points, theirs.descriptors))
    if len(ours) < 2 or len(descriptors) < 2:
        return []
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ours.descriptors, descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance <= MAX_HAMMING and m[0].distance < RATIO * m[1].distance]
    if not good:
        return []
    source = np.float32([ours.points[m.queryIdx] for m in good]).reshape(-1, 1, 2)
    expected = cv2.perspectiveTransform(source, mapping).reshape(-1, 2)
    target = np.float32([points[m.trainIdx] for m in good])
    tolerance = REPROJECTION * max(query.width, query.height) / 1024
    agreeing = sorted((m.distance, i) for i, m in enumerate(good) if np.hypot(*(expected[i] - target[i])) <= tolerance)
    shown = agreeing[:: max(1, -(-len(agreeing) // MAX_LINES))]  # spread over all, not only the closest
    return [(tuple(map(float, source[i, 0])), tuple(map(float, target[i]))) for _, i in shown]


def _with_legend(picture, explanation: Explanation, pairs: list | None):
    """`picture` above a white band that names what was compared and what each colour shows."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(12, min(24, picture.width // 40))
    font = ImageFont.load_default(size=size)
    head = "MATCH" if explanation.matched else "NO MATCH"
    rows: list[tuple[tuple | None, str]] = [
        (None, f"{head}: bank {explanation.bank}, reference {explanation.reference_id}; "
               f"check: {explanation.verdict.upper()}")]
    for s in explanation.signals:
        outcome = f"within {s.band} -> {s.action}" if s.matched else "outside every band"
        if s.signal == "pdq":
            variant = f", {s.variant}" if s.variant and s.variant != "original" else ""
            value = f"distance {s.distance}/256{variant}" if s.distance is not None else "no distance"
            rows.append((PDQ_BOX if s.matched and s.region is not None else None, f"pdq: {value}: {outcome}"))
        elif s.signal == "keypoints":
            mirrored = ", mirrored" if s.variant == "mirrored" else ""
            rows.append((OUTLINE if s.polygon else None, f"keypoints: {s.inliers or 0} inliers{mirrored}: {outcome}"))
        else:
            value = f"similarity {s.score:.3f}" if s.score is not None else "no similarity"
            rows.append((None, f"{s.signal}: {value}: {outcome}"))
    if pairs is not None:
        rows.append((MATCH_LINE, f"lines: {len(pairs)} matched corners, reference (left) to query"))
    pad, line = size // 2, int(size * 1.5)
    measure = ImageDraw.Draw(picture)
    text_width = max(measure.textlength(text, font=font) for _, text in rows)
    canvas = Image.new("RGB", (max(picture.width, int(text_width) + 2 * size + 3 * pad),
                               picture.height + len(rows) * line + 2 * pad), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for n, (colour, text) in enumerate(rows):
        y = picture.height + pad + n * line
        if colour is not None:
            draw.rectangle([pad, y + size // 4, pad + size, y + size], fill=colour)
        draw.text((2 * pad + size, y), text, fill=(20, 20, 20), font=font)
    return canvas
