"""Reverse image search: where an image comes from, its near duplicates, and a better original.

The query's signals are looked up in every bank (or the ones named), enabled or not: search is a
lookup, not a verdict. Hits are ranked by similarity and carry the reference's stored metadata
(source URL, note, size, who added it), and for registered signed originals who signed them and
whether that signer is trusted now, so "who made this and where is the original" has an answer.

Signals: `pdq` (similarity 1 - distance / 256: 1.0 is the same hash; unrelated photos sit near
0.5), `embedding` (cosine similarity of the banks' embedding model: similar content, not only
copies), or `auto`: PDQ over every bank, plus embeddings for the banks that hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .match import match_embeddings, match_pdq
from ..regions import Region


@dataclass(frozen=True)
class SearchHit:
    bank: str
    reference_id: str
    signal: str
    distance: float  # PDQ: Hamming bits; embedding: cosine distance (1 - similarity)
    similarity: float
    width: int | None = None
    height: int | None = None
    metadata: dict = field(default_factory=dict)
    signer: str | None = None
    signer_trusted: bool | None = None
    variant: str | None = None

    def to_dict(self) -> dict:
        out = {"bank": self.bank, "reference_id": self.reference_id, "signal": self.signal, "distance": self.distance,
               "similarity": round(self.similarity, 4), "width": self.width, "height": self.height,
               "metadata": self.metadata}
        if self.signer:
            out["signer"] = self.signer
            out["signer_trusted"] = self.signer_trusted
        if self.variant:
            out["variant"] = self.variant
        return out


def similarity_of(distance: int) -> float:
    return 1.0 - distance / 256.0


def _similarity(m) -> float:
    return similarity_of(m.distance) if m.signal == "pdq" else m.similarity


SIGNALS = ("pdq", "embedding", "auto")


def search(engine, source, banks: list[str] | None = None, top: int = 10, min_similarity: float = 0.75,
           higher_res: bool = False, dihedral: bool = True, signal: str = "auto") -> list[SearchHit]:
    """The `top` references most similar to any frame of `source`."""
    from ..errors import BankError
    from ..signals import PDQ

    if signal not in SIGNALS:
        raise BankError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    media = engine.decode(source)
    snapshot = engine.catalog.current()
    wanted = set(banks) if banks else set(snapshot.banks)
    unknown = sorted(wanted - set(snapshot.banks))
    if unknown:
        from ..errors import BankError

        raise BankError(f"no bank named {unknown[0]!r} (see `moderate bank list`)")
    max_distance = int((1.0 - min_similarity) * 256)
    matches = []
    if signal in ("pdq", "auto"):
        queries = [(Region.whole(frame), h) for frame in media.frames
                   for h in PDQ.compute(frame.pixels, dihedral) if h.quality >= engine.policy.pdq.min_quality]
        matches += match_pdq(snapshot, queries, max_distance, wanted)
    embedded = {b for b in wanted if snapshot.banks[b].get("embedding_key")}
    if signal == "embedding" and not embedded:
        raise BankError("--signal embedding: none of the banks searched holds embeddings "
                        "(create one with `moderate bank create NAME --embedding`)")
    if signal in ("embedding", "auto") and embedded:
        frame = media.frames[0]
        matches += match_embeddings(engine.store, snapshot, frame.pixels, Region.whole(frame), embedded,
                                    max(top * 3, 20), min_similarity)
    best: dict[tuple[str, str], object] = {}
    for m in matches:  # each reference once: its most similar evidence
        key = (m.bank, m.reference_id)
        if key not in best or _similarity(m) > _similarity(best[key]):
            best[key] = m
    references = engine.banks.lookup(best) if best else {}
    trusted = engine.keys.trusted()
    hits = []
    for key, m in best.items():
        metadata = dict(references[key].metadata) if key in references else {}
        metadata.pop("signature", None)  # the envelope is for re-verification, not for display
        width, height = metadata.get("width"), metadata.get("height")
        if higher_res and not (width and height and width * height > media.width * media.height):
            continue
        signer = metadata.get("signer")
        distance = m.distance if m.signal == "pdq" else round(1.0 - m.similarity, 4)
        hits.append(SearchHit(
            m.bank, m.reference_id, m.signal, distance, _similarity(m), width, height, metadata,
            signer, (metadata.get("key_id") in trusted) if signer and metadata.get("key_id") else None,
            m.variant if m.variant != "original" else None,
        ))
    hits.sort(key=lambda h: (-h.similarity, h.bank, h.reference_id))
    return hits[:top]
