"""Hash lookups: the banks' references for a hash the caller already has, without the image.

Upload services and hash-sharing programs hold hashes, not pictures (HMA's raw lookup and compare
are the model). A PDQ hash is looked up in the exact PDQ index within the policy's loosest band
(or a given `max_distance`); an MD5 or SHA-256 of a file through the digest index, exactly. Each
match says which band of the current policy it falls in and what that band means for its bank, so
the caller gets the answer `check` would give for that one signal (detectors, keypoints, allow-list
suppression and provenance need the image and are not applied). `compare` measures two hashes
against each other on the same scales.

Values are validated by the signals' own rules (`PdqSignal.parse`, `DigestSignal.parse_digest`):
64 hex characters for PDQ (not all zeros: a blank image's hash), 32 for MD5, 64 for SHA-256;
surrounding blanks and upper case are accepted and answered in canonical lowercase.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidLookup, StoreError
from ..evidence import Evidence
from ..rules import shown
from ..signals import DIGEST, PDQ, Context, PdqHash
from ..signals.digest import FILE_DIGESTS
from .search import shown_metadata

LOOKUPS = (PDQ.name, *FILE_DIGESTS)  # what a caller can send: pdq, sha256, md5


@dataclass(frozen=True)
class LookupMatch:
    """One reference a hash matched: each reference once, at its closest distance."""

    bank: str
    reference_id: str
    signal: str  # as asked: pdq, md5 or sha256
    distance: int  # PDQ: Hamming bits of 256; digests: 0
    similarity: float  # the scale `search` ranks every signal on (1.0: the same)
    band: str | None  # the policy band the distance falls in; None outside every band or with the signal off
    action: str | None  # what that band means for this bank; None without a band or in a bank the policy acts on no match in
    metadata: dict  # the reference's, without the signature envelope

    def to_dict(self) -> dict:
        return {"bank": self.bank, "reference_id": self.reference_id, "signal": self.signal, "distance": self.distance,
                "similarity": round(self.similarity, 4), "band": self.band, "action": self.action,
                "metadata": self.metadata}


@dataclass(frozen=True)
class Comparison:
    """Two hashes of one signal measured against each other."""

    signal: str
    a: str
    b: str
    equal: bool
    distance: int | None  # PDQ: Hamming bits; digests: 0 when equal, None otherwise (no scale between)
    similarity: float
    band: str | None  # the policy's band (its default bands: no bank is involved)
    action: str | None  # that band's action; "bank" means the matched bank's own action

    def to_dict(self) -> dict:
        return {**self.__dict__, "similarity": round(self.similarity, 4)}


def parse(signal: str, value: object, field: str = "hash") -> str:
    """A caller's hash in canonical form; InvalidLookup naming `field` (or `signal`) otherwise."""
    if signal not in LOOKUPS:
        raise InvalidLookup("signal", f"must be one of {', '.join(LOOKUPS)}, got {shown(signal)!r}")
    if not isinstance(value, str):
        raise InvalidLookup(field, f"must be a string, got {type(value).__name__}")
    try:
        return PDQ.parse(value) if signal == PDQ.name else DIGEST.parse_digest(signal, value)
    except ValueError as exc:
        raise InvalidLookup(field, str(exc)) from None


def lookup(engine, signal: str, value: str, banks: list[str] | None = None,
           max_distance: int | None = None) -> list[LookupMatch]:
    """Every reference matching one hash, closest first (see the module's docstring)."""
    result = lookup_batch(engine, [(signal, value, max_distance)], banks)[0]
    if isinstance(result, InvalidLookup):
        raise result
    return result


def lookup_batch(engine, items: list[tuple[str, object, int | None]],
                 banks: list[str] | None = None) -> list[list[LookupMatch] | InvalidLookup]:
    """`lookup` for each (signal, hash, max_distance) in one snapshot; an invalid item gets its
    InvalidLookup in its slot. Banks the store lacks, or none to look in, refuse the whole batch."""
    snapshot = engine.catalog.current()
    context = Context(snapshot, engine.store, _banks(engine, snapshot, banks))
    found: list[list[Evidence] | InvalidLookup] = []
    for signal, value, max_distance in items:
        try:
            found.append(_closest(_find(engine.policy, context, signal, parse(signal, value), max_distance)))
        except InvalidLookup as exc:
            found.append(exc)
    # one store round trip for every matched reference's metadata, not one per item
    references = engine.banks.lookup({e.reference for hits in found if isinstance(hits, list) for e in hits})
    return [hits if isinstance(hits, InvalidLookup) else
            [_match(engine.policy, snapshot.banks, signal, e, shown_metadata(references.get(e.reference)))
             for e in hits]
            for (signal, _, _), hits in zip(items, found)]


def compare(policy, signal: str, a: str, b: str) -> Comparison:
    """Two hashes of one signal: equal or not, their distance and similarity, and the band of the
    policy's (bank-independent) bands the distance falls in."""
    a, b = parse(signal, a, "a"), parse(signal, b, "b")
    kind = PDQ if signal == PDQ.name else DIGEST
    distance = PdqHash(a, quality=0).distance(b) if kind is PDQ else (0 if a == b else None)
    rules = policy.rules_for(kind.name)
    band = rules.band(distance) if distance is not None and rules.enabled else None
    similarity = kind.similarity(distance) if distance is not None else 0.0
    return Comparison(signal, a, b, a == b, distance, similarity, band.name if band else None,
                      band.action if band else None)


def _banks(engine, snapshot, named: list[str] | None) -> frozenset[str]:
    """The banks named (enabled or not: a lookup is not a verdict), else the ones `check` uses."""
    if named:
        unknown = sorted(set(named) - set(snapshot.banks))
        if unknown:
            raise InvalidLookup("bank", f"no bank named {shown(unknown[0])!r}")
        return frozenset(named)
    used = engine.banks_in_use(snapshot)
    if not any(snapshot.banks[b].get("kind") != "allowlist" for b in used):  # an empty answer would read as "not flagged"
        raise StoreError(f"{engine.data_dir}: nothing to look up in: no enabled bank in {engine.store.location}")
    return used


def _find(policy, context: Context, signal: str, value: str, max_distance: int | None) -> list[Evidence]:
    if signal != PDQ.name:
        if max_distance is not None:
            raise InvalidLookup("max_distance", f"only pdq hashes have distances; {signal} matches are exact")
        return DIGEST.lookup(context, [(signal, value)])
    if max_distance is None:
        max_distance = policy.rules_for(PDQ.name).max_distance
    elif isinstance(max_distance, bool) or not isinstance(max_distance, int) or not 0 <= max_distance <= PDQ.bits:
        raise InvalidLookup("max_distance", f"must be an integer from 0 to {PDQ.bits}, got {shown(max_distance)!r}")
    # The index reads only the hash's bits; a caller's hash comes without a quality to filter on.
    return PDQ.lookup(context, [(None, PdqHash(value, quality=0))], max_distance)


def _closest(found: list[Evidence]) -> list[Evidence]:
    """Each reference once, at its closest hash (a reference keeps several: whole, de-bordered, parts)."""
    best: dict[tuple[str, str], Evidence] = {}
    for e in found:
        if e.reference not in best or e.value < best[e.reference].value:
            best[e.reference] = e
    return sorted(best.values(), key=lambda e: (e.value, e.bank, e.reference_id))


def _match(policy, banks: dict, signal: str, e: Evidence, metadata: dict) -> LookupMatch:
    band = policy.band_for(e) if policy.rules_for(e.signal).enabled else None  # check does not run a signal that is off
    action = policy.action_for(band, e.bank, banks) if band else None
    similarity = (PDQ if e.signal == PDQ.name else DIGEST).similarity(e.value)
    return LookupMatch(e.bank, e.reference_id, signal, int(e.value), similarity, band.name if band else None, action,
                       metadata)
