"""Reverse image search: where an image comes from, its near duplicates, and a better original.

The query's signals are looked up in every bank (or the ones named), enabled or not: search is a
lookup, not a verdict. Hits are ranked by similarity and carry the reference's stored metadata
(source URL, note, size, who added it), and for registered signed originals who signed them and
whether that signer is trusted now, so "who made this and where is the original" has an answer.

Signals (`--signal`): any signal of the registry, or `auto` for every one the banks hold. One
similarity scale ranks them together (each signal's `similarity`): PDQ 1 - distance / 256 (1.0 the
same hash, unrelated photos near 0.5), keypoints 1 - 2.4 / inliers (crops, borders and pastes;
20 inliers rank with PDQ's 31 bits), embeddings the cosine similarity (similar content).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BankError
from ..regions import Region
from ..signals import SIGNALS, Context, Query


@dataclass(frozen=True)
class SearchHit:
    bank: str
    reference_id: str
    signal: str
    distance: float  # PDQ: Hamming bits; other signals: 1 - similarity
    similarity: float
    width: int | None = None
    height: int | None = None
    metadata: dict = field(default_factory=dict)
    signer: str | None = None
    signer_trusted: bool | None = None
    variant: str | None = None
    inliers: int | None = None  # found by local features: a crop, a border, a paste

    def to_dict(self) -> dict:
        out = {"bank": self.bank, "reference_id": self.reference_id, "signal": self.signal, "distance": self.distance,
               "similarity": round(self.similarity, 4), "width": self.width, "height": self.height,
               "metadata": self.metadata}
        if self.signer:
            out["signer"] = self.signer
            out["signer_trusted"] = self.signer_trusted
        if self.variant:
            out["variant"] = self.variant
        if self.inliers is not None:
            out["inliers"] = self.inliers
        return out


def shown_metadata(reference) -> dict:
    """A matched reference's metadata as hits show it (an empty dict when it is gone)."""
    metadata = dict(reference.metadata) if reference is not None else {}
    metadata.pop("signature", None)  # the envelope is for re-verification, not for display
    metadata.pop("thumbnail", None)  # a picture, for the review UI only
    return metadata


def choices() -> tuple[str, ...]:
    """`--signal`: one signal of the registry, or `auto` for every signal the banks hold."""
    return (*SIGNALS, "auto")


def search(engine, source, banks: list[str] | None = None, top: int = 10, min_similarity: float = 0.75,
           higher_res: bool = False, signal: str = "auto") -> list[SearchHit]:
    """The `top` references most similar to any frame of `source`, on the similarity scale every
    signal shares (`moderate.signals.base`); each reference once, with its most similar evidence."""
    if signal not in choices():
        raise BankError(f"signal must be one of {', '.join(choices())}, got {signal!r}")
    media = engine.decode(source)
    snapshot = engine.catalog.current()
    wanted = set(banks) if banks else set(snapshot.banks)
    unknown = sorted(wanted - set(snapshot.banks))
    if unknown:
        raise BankError(f"no bank named {unknown[0]!r} (see `moderate bank list`)")
    context = Context(snapshot, engine.store, frozenset(wanted))
    chosen = [s for name, s in SIGNALS.items() if signal in (name, "auto")]
    if signal != "auto" and chosen[0].unavailable(context):
        raise BankError(f"--signal {signal}: {chosen[0].unavailable(context)}")
    found = []
    for chosen_signal in chosen:
        if chosen_signal.unavailable(context):
            continue
        frames = media.frames if chosen_signal.search_every_frame else media.frames[:1]
        for frame in frames:
            found += chosen_signal.search(Query(frame, [Region.whole(frame)], media=media), context,
                                          engine.policy.rules_for(chosen_signal.name), min_similarity)
    by_reference: dict[tuple[str, str], list] = {}
    for e in found:
        similarity = SIGNALS[e.signal].similarity(e.value)
        if similarity >= min_similarity:
            by_reference.setdefault(e.reference, []).append((similarity, e))
    references = engine.banks.lookup(by_reference) if by_reference else {}
    trusted = engine.keys.trusted()
    hits = []
    for key, scored in by_reference.items():
        scored.sort(key=lambda item: -item[0])
        similarity, e = scored[0]  # ranked by its most similar evidence; what the others add is kept
        variant = next((other.variant for _, other in scored if other.variant != "original"), None)
        inliers = max((other.inliers for _, other in scored if other.inliers is not None), default=None)
        metadata = shown_metadata(references.get(key))
        width, height = metadata.get("width"), metadata.get("height")
        if higher_res and not (width and height and width * height > media.width * media.height):
            continue
        signer = metadata.get("signer")
        distance = e.value if e.measure == "distance" else round(1.0 - similarity, 4)
        hits.append(SearchHit(
            e.bank, e.reference_id, e.signal, distance, similarity, width, height, metadata,
            signer, (metadata.get("key_id") in trusted) if signer and metadata.get("key_id") else None,
            variant, inliers,
        ))
    hits.sort(key=lambda h: (-h.similarity, h.bank, h.reference_id))
    return hits[:top]
