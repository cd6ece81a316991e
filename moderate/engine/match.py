"""Matching: the candidates a query's signals find in the banks.

PDQ hashes of every region (and, when the policy asks, their dihedral variants) go through the
exact index in one batch; hits are filtered by bank afterwards, which is far cheaper than
filtering inside the search (Chroma `where` filters measured 65-170x slower). Keypoints find
candidates in the pooled descriptor index and keep those that verify geometrically; PDQ matches
whose references have keypoints are verified too, which localizes them in the query.
"""

from __future__ import annotations


import numpy as np

from ..store.catalog import KeypointIndex, Snapshot
from ..regions import Region
from ..evidence import Evidence
from ..signals import KeypointSet, PdqHash
from ..store import split_record_id


Match = Evidence  # the name matching results had before evidence became one type for every signal


def match_pdq(snapshot: Snapshot, queries: list[tuple[Region, PdqHash]], max_distance: int,
              banks: set[str]) -> list[Match]:
    """Every reference in `banks` within `max_distance` of any query hash."""
    if not queries or not banks:
        return []
    codes = np.frombuffer(b"".join(h.to_bytes() for _, h in queries), dtype=np.uint8)
    matches = []
    for row, position, distance in snapshot.pdq.search(codes, max_distance):
        bank, reference_id = split_record_id(snapshot.pdq.id_at(position))
        if bank in banks:
            region, value = queries[row]
            matches.append(Evidence("pdq", "distance", distance, bank, reference_id, region, value.variant))
    return matches


def match_keypoints(snapshot: Snapshot, query: KeypointSet, banks: set[str], candidates: int,
                    min_inliers: int) -> list[Match]:
    """References of `banks` found in the query by local features, with where they are."""
    from ..signals.verification import retrieve

    index = snapshot.keypoints
    return [_located(index, found, query) for found in retrieve(index, query, _allowed(index, banks), candidates,
                                                                 min_inliers)]


def localized(snapshot: Snapshot, matches: list[Match], query: KeypointSet) -> list[Match]:
    """`matches` with inliers and polygon added where the reference has keypoints and verifies."""
    from ..signals.verification import localize

    index = snapshot.keypoints
    cache: dict[tuple[str, str], tuple] = {}
    out = []
    for m in matches:
        key = (m.bank, m.reference_id)
        if key not in cache:
            images = np.flatnonzero(index.images.prefix_mask(f"{m.bank}::{m.reference_id}::"))
            found = [f for f in (localize(index, int(i), query) for i in images) if f is not None]
            best = max(found, key=lambda f: f.inliers, default=None)
            cache[key] = (best.inliers, best.polygon) if best else (None, None)
        inliers, polygon = cache[key]
        out.append(m.verified(inliers, polygon) if inliers is not None else m)
    return out


def _allowed(index: KeypointIndex, banks: set[str]) -> np.ndarray:
    allowed = np.zeros(len(index), bool)
    for bank in banks:
        allowed |= index.images.prefix_mask(f"{bank}::")
    return allowed


def _located(index: KeypointIndex, found, query: KeypointSet) -> Match:
    bank, reference_id = split_record_id(index.images.id_at(found.image))
    region = Region.around(found.polygon, query.width, query.height)
    return Evidence("keypoints", "inliers", found.inliers, bank, reference_id, region,
                    "mirrored" if found.mirrored else "original", found.inliers, found.polygon)


def match_embeddings(store, snapshot: Snapshot, frame_pixels, region: Region, banks: set[str], candidates: int,
                     min_similarity: float, required_model: str | None = None) -> list[Match]:
    """References of `banks` whose embeddings are similar to the frame's, model by model."""
    from ..errors import PolicyError
    from ..signals.embedding import load_model

    by_model: dict[str, list[str]] = {}
    for bank in sorted(banks):
        record = snapshot.banks[bank]
        if record.get("embedding_key"):
            by_model.setdefault(record["embedding_model"], []).append(bank)
    matches = []
    for spec, model_banks in by_model.items():
        record = snapshot.banks[model_banks[0]]
        model = load_model(spec)
        if model.identity.key != record["embedding_key"] or (required_model and required_model not in (
                spec, model.identity.name, model.identity.key)):
            wanted = required_model or model.identity.key
            raise PolicyError(f"bank {model_banks[0]} holds {record['embedding_key']} embeddings, not {wanted}: "
                              f"run `moderate bank reembed {model_banks[0]} --model MODEL --from DIR`")
        (vector,) = model.compute([frame_pixels])
        collection = {"key": record["embedding_key"], "model": spec, "dimension": record["embedding_dimension"]}
        for rid, similarity in store.nearest_embeddings(collection, [float(x) for x in vector], candidates):
            bank, reference_id = split_record_id(rid)
            if bank in model_banks and similarity >= min_similarity:
                matches.append(Evidence("embedding", "score", round(similarity, 4), bank, reference_id, region))
    return matches
