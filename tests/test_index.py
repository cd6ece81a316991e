"""The exact PDQ index against a numpy oracle, and the PDQ signal's text and vector forms."""

from __future__ import annotations

import numpy as np
import pdqhash
import pytest
from PIL import Image

from moderate.signals.pdq import FAISS_FROM, PdqIndex
from moderate.signals import PDQ


def near_copies(codes: np.ndarray, rng, flips: int) -> np.ndarray:
    out = codes.copy()
    for row in out:
        for bit in rng.choice(256, size=flips, replace=False):
            row[bit // 8] ^= 1 << (7 - bit % 8)
    return out


def oracle(codes, queries, max_distance):
    found = set()
    for q, query in enumerate(queries):
        distances = np.bitwise_count(codes ^ query).sum(axis=1)
        found |= {(q, int(p), int(distances[p])) for p in np.flatnonzero(distances <= max_distance)}
    return found


@pytest.mark.parametrize("size", [500, FAISS_FROM * 3])  # numpy path and faiss path
def test_search_finds_exactly_what_brute_force_finds(size):
    rng = np.random.default_rng(size)
    codes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    picked = codes[rng.choice(size, 40, replace=False)]
    queries = np.concatenate([near_copies(picked[:20], rng, 31), near_copies(picked[20:], rng, 32),
                              rng.integers(0, 256, size=(10, 32), dtype=np.uint8)])
    index = PdqIndex.of_codes(codes, [f"B::r{i}::0" for i in range(size)])
    got = set(index.search(queries, 31))
    assert got == oracle(codes, queries, 31)
    hit_rows = {q for q, _, _ in got}
    assert set(range(20)) <= hit_rows  # distance exactly 31 is in
    assert not hit_rows & set(range(20, 40))  # distance 32 is out
    position = next(p for q, p, _ in got if q == 0)
    assert index.id_at(position) == f"B::r{position}::0"


def test_append_and_remove_keep_ids_aligned():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(10, 32), dtype=np.uint8)
    index = PdqIndex.of_codes(codes[:5], [f"A::{i}::0" for i in range(5)]).appended_codes(codes[5:], [f"B::{i}::0" for i in range(5, 10)])
    smaller = index.without(index.prefix_mask("A::2::") | index.prefix_mask("B::7::"))
    assert len(smaller) == 8
    for position, rid in enumerate(smaller.ids()):
        original = int(rid.split("::")[1])
        assert bytes(smaller.codes[position]) == bytes(codes[original])


def test_hex_form_matches_pdqhash_bit_for_bit(photos):
    pixels = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
    vector, quality = pdqhash.compute(pixels)
    bits = "".join(str(int(b)) for b in vector)
    expected = f"{int(bits, 2):064x}"
    (value,) = PDQ.compute(pixels)
    assert value.hex == expected and value.quality == quality
    dihedral = PDQ.compute(pixels, dihedral=True)
    assert [d.variant for d in dihedral][:2] == ["original", "rotate90"] and dihedral[0].hex == expected


def test_vector_form_round_trips_exactly():
    for hex_value in ["f" * 64, "0" * 63 + "1", "8000" + "0" * 60, "0123456789abcdef" * 4]:
        (vector,) = PDQ.to_vectors([hex_value])
        assert len(vector) == 16 and PDQ.from_vector(vector) == hex_value


@pytest.mark.parametrize("text, problem", [("ab", "64 hex"), ("z" * 64, "non-hex"), ("0" * 64, "all zeros")])
def test_parse_refuses_bad_hashes(text, problem):
    with pytest.raises(ValueError, match=problem):
        PDQ.parse(text)
    assert PDQ.parse(" " + "AB" * 32 + "\n") == "ab" * 32


def test_positions_of_finds_exact_codes_only():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    codes[17] = codes[5]  # the same hash twice
    index = PdqIndex.of_codes(codes, [f"B::{i}::0" for i in range(300)])
    other = near_copies(codes[:1], rng, 1)
    found = index.positions_of(np.concatenate([codes[5:6], codes[9:10], other]))
    assert [sorted(p) for p in found] == [[5, 17], [9], []]


def test_bank_and_reference_masks_without_decoding_ids():
    ids = ["A::x::0", "A::x::1", "AB::y::0", "A::p::q::0", "B::A::z::0", "A::w::10"]
    index = PdqIndex.of_codes(np.zeros((len(ids), 32), np.uint8), ids)
    assert index.bank_mask("A").tolist() == [True, True, False, True, False, True]
    assert index.bank_mask("AB").tolist() == [False, False, True, False, False, False]
    assert index.first_hash_mask().tolist() == [True, False, True, True, True, False]
    assert PdqIndex.empty().bank_mask("A").tolist() == []
