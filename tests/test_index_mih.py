"""The PDQ index's substring tables (multi-index hashing) against brute force, and their upkeep."""

from __future__ import annotations

import numpy as np
import pytest

from moderate import Engine
from moderate.signals import mih, pdq
from moderate.signals.pdq import PdqIndex

from .test_index import near_copies, oracle

RADII = (0, 1, 31, 32, 52, 53)  # the block band, the review band, and one bit past each
BUILT = mih.NATIVE


@pytest.fixture(autouse=True, params=["native", "numpy"])
def implementation(request, monkeypatch):
    """Every test here runs twice: the compiled inner loop (_mih.c) and numpy's."""
    if request.param == "native" and BUILT is None:
        pytest.skip("moderate.signals._mih was not built (no C compiler at install)")
    monkeypatch.setattr(mih, "NATIVE", BUILT if request.param == "native" else None)
    return request.param


@pytest.fixture
def tables_only(monkeypatch):
    """Searches go through the tables whatever they cost against a scan, and never scan."""
    monkeypatch.setattr(pdq, "TABLES_OVERHEAD", -(1 << 40))

    def no_scan(*_):
        raise AssertionError("scanned instead of using the tables")

    monkeypatch.setattr(PdqIndex, "_scan", no_scan)


def planted(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random codes, and queries exactly 0, 1, 31, 32, 52, 53 and 60 bits from some of them, plus random ones."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    sources = codes[rng.choice(size, 21, replace=False)]
    queries = [near_copies(sources[k::7], rng, flips) for k, flips in enumerate((0, 1, 31, 32, 52, 53, 60))]
    return codes, np.concatenate(queries + [rng.integers(0, 256, size=(4, 32), dtype=np.uint8)])


def table_search(tables: mih.MultiIndex, codes: np.ndarray, queries: np.ndarray, radius: int) -> set:
    found = set()
    for q, query in enumerate(queries):
        positions, distances = tables.search(codes.view(np.uint64), query, radius, budget=1 << 40)
        assert positions.tolist() == sorted(set(positions.tolist()))  # each code once, by position
        found |= {(q, p, d) for p, d in zip(positions.tolist(), distances.tolist())}
    return found


@pytest.mark.parametrize("width", [16, 19, 20, 22])  # byte-aligned substrings and substrings across bytes
def test_tables_find_exactly_what_brute_force_finds(width):
    codes, queries = planted(width, 3000)
    tables = mih.MultiIndex.build(codes, width)
    assert sum(tables.widths) == 256 and tables.widths.max() - tables.widths.min() <= 1
    for radius in RADII:
        expected = oracle(codes, queries, radius)
        assert table_search(tables, codes, queries, radius) == expected, radius
    hit_rows = {q for q, _, _ in oracle(codes, queries, 52)}
    assert set(range(15)) <= hit_rows and not hit_rows & set(range(15, 21))  # 52 bits is in, 53 out


@pytest.mark.parametrize("split_from", [1, 1 << 40])  # every search split in two threads, or none
def test_searches_split_between_threads_find_what_brute_force_finds(monkeypatch, split_from):
    monkeypatch.setattr(mih, "PARALLEL_FROM", split_from)
    codes, queries = planted(7, 3000)
    tables = mih.MultiIndex.build(codes, 19)
    for radius in RADII:
        assert table_search(tables, codes, queries, radius) == oracle(codes, queries, radius), radius


def flipped(code: np.ndarray, widths, per_substring, rng) -> np.ndarray:
    """`code` with exactly per_substring[j] bits flipped inside substring j."""
    bits = np.unpackbits(code)
    for start, width, count in zip(mih._starts(widths), widths, per_substring):
        bits[start + rng.choice(int(width), size=count, replace=False)] ^= 1
    return np.packbits(bits)


@pytest.mark.parametrize("radius", [31, 52])
def test_distances_spread_at_the_pigeonhole_bounds_are_found(radius):
    """The tables' worst cases: every substring as far as its probe radius allows, or one past it,
    the total at the radius or one past it, and the remainder anywhere around the ring."""
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 256, size=(2000, 32), dtype=np.uint8)
    tables = mih.MultiIndex.build(codes, 20)
    widths = [int(w) for w in tables.widths]
    shells = mih.plan(widths, radius)
    spreads = [[s - 1 for s in shells]]  # each substring at its own probe radius t_j
    for total in (radius, radius + 1):
        even, extra = divmod(total, len(widths))
        spreads += [[even + ((j - k) % len(widths) < extra) for j in range(len(widths))] for k in range(len(widths))]
        spreads += [np.roll([min(w, total - sum(widths[:j])) if sum(widths[:j]) < total else 0
                             for j, w in enumerate(widths)], k).tolist() for k in (0, 5)]
    queries = np.array([flipped(codes[i], widths, spread, rng) for i, spread in enumerate(spreads)])
    expected = oracle(codes, queries, radius)
    assert {(q, p) for q, p, _ in expected} >= {(i, i) for i, spread in enumerate(spreads) if sum(spread) <= radius}
    assert table_search(tables, codes, queries, radius) == expected


def test_clustered_codes_are_found_exactly(tables_only):
    """Real hash lists are clustered (near copies of one picture): crowded buckets, same answers."""
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 256, size=(30, 32), dtype=np.uint8)
    codes = np.concatenate([near_copies(np.repeat(centres, 60, axis=0), rng, 12), centres])
    queries = np.concatenate([near_copies(centres, rng, 20), near_copies(centres[:5], rng, 45)])
    index = PdqIndex.of_codes(codes, [f"B::{i}::0" for i in range(len(codes))]).indexed()
    for radius in (31, 52):
        assert set(index.search(queries, radius)) == oracle(codes, queries, radius)


def test_search_falls_back_to_a_scan_with_the_same_results(monkeypatch):
    codes, queries = planted(3, 5000)
    index = PdqIndex.of_codes(codes, [f"B::{i}::0" for i in range(len(codes))]).indexed()
    expected = sorted(oracle(codes, queries, 52))
    scans = []
    scan = PdqIndex._scan
    monkeypatch.setattr(PdqIndex, "_scan", lambda self, q, r: scans.append(len(q)) or scan(self, q, r))
    monkeypatch.setattr(pdq, "TABLES_OVERHEAD", -(1 << 40))  # the tables, however costly
    assert index.search(queries, 52) == expected and scans == []
    monkeypatch.setattr(pdq, "TABLES_OVERHEAD", len(codes))  # no budget left: every query is scanned
    assert index.search(queries, 52) == expected and scans == [len(queries)]


@pytest.mark.parametrize("width", [16, 20])
def test_appended_merges_into_what_a_build_makes(width):
    codes, queries = planted(11, 4000)
    grown = mih.MultiIndex.build(codes[:2500], width).appended(codes[:3100], codes[2500:3100])
    grown = grown.appended(codes, codes[3100:])
    built = mih.MultiIndex.build(codes, width)
    assert np.array_equal(grown.offsets, built.offsets) and np.array_equal(grown.positions, built.positions)
    assert table_search(grown, codes, queries, 52) == oracle(codes, queries, 52)


def test_without_renumbers_like_a_build(tables_only):
    codes, queries = planted(12, 4000)
    drop = np.random.default_rng(12).random(len(codes)) < 0.3
    index = PdqIndex.of_codes(codes, [f"B::{i}::0" for i in range(len(codes))]).indexed()
    smaller = index.without(drop)
    built = mih.MultiIndex.build(codes[~drop], int(index.tables.widths[0]))
    assert np.array_equal(smaller.tables.offsets, built.offsets)
    assert np.array_equal(smaller.tables.positions, built.positions)
    assert set(smaller.search(queries, 52)) == oracle(codes[~drop], queries, 52)


def test_exact_positions_are_the_same_from_the_tables_and_from_a_sort(monkeypatch):
    """`positions_of` looks a few codes up in the tables and sorts for many: same answers, flat
    (unmatchable) codes and repeated codes included."""
    codes, _ = planted(14, 2000)
    codes[100:103] = codes[7]  # one code at four positions
    index = PdqIndex.of_codes(codes, [f"B::{i}::0" for i in range(len(codes))]).indexed()
    index = PdqIndex(index.codes, index.records, np.arange(len(codes)) % 3 > 0, index.tables)  # a third flat
    wanted = np.concatenate([codes[[7, 0, 1999]], np.full((1, 32), 5, np.uint8)])
    answers = []
    for per_code in (0, 1):  # sorted, then looked up
        monkeypatch.setattr(pdq, "LOOKUPS_PER_CODE", per_code)
        answers.append(index.positions_of(wanted))
    assert answers[0] == answers[1] == [[7, 100, 101, 102], [0], [1999], []]


def test_tables_are_built_from_mih_from_codes_and_outgrown_at_4x(monkeypatch, tables_only):
    monkeypatch.setattr(pdq, "MIH_FROM", 1000)
    codes = np.random.default_rng(5).integers(0, 256, size=(1200, 32), dtype=np.uint8)
    small = PdqIndex.of_codes(codes[:999], [f"B::{i}::0" for i in range(999)])
    assert small.tables is None
    grown = small.appended_codes(codes[999:], [f"B::{i}::0" for i in range(999, len(codes))])
    assert list(grown.tables.widths) == list(mih.substring_widths(1200))
    assert set(grown.search(codes[:50], 31)) == oracle(codes, codes[:50], 31)
    # 16-bit substrings suit up to ~2**17 codes; at 2**18 the tables are rebuilt with 18 bits.
    assert not grown.tables.outgrown(1 << 17) and grown.tables.outgrown(1 << 18)


def test_a_bank_keeps_its_tables_across_processes(data_dir, monkeypatch, tables_only):
    """Saved with the snapshot and memory-mapped back: a new process searches them without building."""
    monkeypatch.setattr(pdq, "MIH_FROM", 100)
    codes, queries = planted(21, 400)
    codes[:, 0] |= 1  # never the all-zero hash, which import refuses
    engine = Engine(data_dir=data_dir)
    engine.banks.create("SPAM", action="review")
    engine.banks.import_hashes("SPAM", "".join(f"pdq {c.tobytes().hex()}\n" for c in codes[:300]))
    engine.banks.import_hashes("SPAM", "".join(f"pdq {c.tobytes().hex()}\n" for c in codes[300:]))
    monkeypatch.setattr(mih.MultiIndex, "build", None)  # loading must not build
    index = Engine(data_dir=data_dir).catalog.current().pdq
    assert isinstance(index.tables.positions, np.ndarray) and len(index.tables) == len(codes)
    stored = np.asarray(index.codes)
    assert set(index.search(queries, 52)) == oracle(stored, queries, 52)
    assert {bytes(c) for c in stored} == {bytes(c) for c in codes}


def test_the_inner_loop_is_compiled_where_a_compiler_is(implementation):
    """An install with a C compiler (CI's, make's) builds the extension: a broken _mih.c shows here,
    not as a silent fall back to the slower numpy loop."""
    import shutil
    import sysconfig

    if implementation == "numpy" or not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")):
        pytest.skip("asked of the native run on a machine with a compiler")
    assert BUILT is not None and mih.NATIVE is BUILT


def test_damaged_tables_raise_instead_of_reading_outside_them(implementation):
    codes = planted(4, 600)[0]
    tables = mih.MultiIndex.build(codes, 16)
    words = codes.view(np.uint64)
    positions = tables.positions.copy()
    positions[:, :] = len(codes) + 5  # every entry points past the codes
    damaged = mih.MultiIndex(tables.widths, tables.offsets, positions, tables.following)
    with pytest.raises(IndexError):
        for query in codes[:20]:  # a stored code is always a candidate (distance 0)
            damaged.search(words, query, 52, budget=1 << 40)
    offsets = tables.offsets.copy()
    offsets[offsets > 10] += 1 << 20  # buckets that run past the tables
    with pytest.raises(IndexError):
        mih.MultiIndex(tables.widths, offsets, tables.positions, tables.following).search(words, codes[0], 52, 1 << 40)


def test_over_budget_searches_ask_for_a_scan_before_reading_buckets(implementation):
    """The budget counts probes plus bucket entries: at it the tables answer, one under it None
    (the caller scans instead). Crowded buckets: 1,200 copies of 3 codes."""
    codes = np.repeat(np.random.default_rng(9).integers(0, 256, size=(3, 32), dtype=np.uint8), 400, axis=0)
    tables = mih.MultiIndex.build(codes, 16)
    value = int.from_bytes(codes[0].tobytes(), "big")
    probes = np.concatenate([base + (((value >> shift) & mask) ^ xor)
                             for shift, mask, base, xor in tables._probes(31)[1]])
    cost = int((tables.offsets[probes + 1] - tables.offsets[probes]).sum()) + len(probes)
    assert cost > 400 * len(tables.widths)
    words = codes.view(np.uint64)
    assert tables.search(words, codes[0], 31, budget=cost - 1) is None
    positions, distances = tables.search(words, codes[0], 31, budget=cost)
    assert positions.tolist() == list(range(400)) and set(distances.tolist()) == {0}


def test_the_compiled_loop_refuses_what_would_read_outside_its_buffers():
    """Inputs mih.py never builds, from a fuzzing pass under AddressSanitizer: each read outside a
    buffer or returned nothing silently before they were checked."""
    if BUILT is None:
        pytest.skip("moderate.signals._mih was not built")
    one = lambda dtype, value=0: np.full(1, value, dtype)  # noqa: E731
    codes, query = np.zeros((1, 4), np.uint64), np.zeros(4, np.uint64)

    def search(offsets, entries=5, probe=0, row=0, probes=None):
        return BUILT(np.asarray(offsets, np.uint32), np.zeros(entries, np.int32), np.zeros(entries, np.uint32), codes,
                     query, one(np.int64, probe) if probes is None else probes, one(np.int64, row),
                     one(np.uint32), one(np.int64), 256, 1 << 40)

    assert [len(column) for column in search([0, 5])] == [40, 40]  # the valid call: 5 entries of code 0
    for damaged in (dict(probe=2**63 - 1), dict(probe=-1), dict(probe=1), dict(row=2**63 - 2), dict(row=-1),
                    dict(row=1)):
        with pytest.raises(IndexError):
            search([0, 5], **damaged)
    with pytest.raises(IndexError):
        search([5, 0])  # a bucket that ends before it starts
    misaligned = np.zeros(17, np.uint8)[1:].view(np.int64)  # a view one byte into its buffer
    with pytest.raises(ValueError, match="aligned"):
        search([0, 5], probes=misaligned)
    stored = planted(2, 300)[0]
    positions, _ = mih.MultiIndex.build(stored, 16).search(stored.view(np.uint64), stored[0], -1, 1 << 40)
    assert positions.size == 0  # a negative radius finds nothing (it raised from np.concatenate)
