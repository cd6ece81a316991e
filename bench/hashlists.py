"""Industry hash lists at scale (issue #13): exact lookups in 1M and 10M PDQ codes, and import rate.

Lookup: random 256-bit codes in a `PdqIndex` with its multi-index tables (`moderate.signals.mih`),
saved as the catalog saves a snapshot and memory-mapped back as a checking process loads it,
against brute force: faiss `IndexBinaryFlat` range search on one thread over the same codes and
queries. Both must return the same (position, distance) pairs for every query. Radii 31 (the
block band) and 52 (the review band: the radius a check searches). Half the queries are
near-duplicates of stored codes (10 bits flipped), half random codes (they match nothing).
Random codes are the even case for the tables; real lists are clustered, which crowds some buckets.

Check process: a fresh interpreter loads the saved index and answers one query at radius 52 (its
wall time from spawn is the start-up a check against the bank pays for the index), then every
query; its peak RSS. Import: `moderate bank import` into a fresh data folder of random `pdq HEX`
lines (hashes/s; 1M, then 10M for the sustained rate) and of a mixed dataset CSV as an exchange's
export looks (`mixed_list`: PDQ, MD5 and SHA-256 rows of one reference, flat hashes, repeated rows;
rows/s), and where the time goes: the same import in-process under cProfile, split into parsing,
de-duplication, Chroma writes, the index update and the snapshot save.

Hook: the pre-commit hook environment's installed size, as the `hook` section measures it.

Targets: p99 < 5 ms at 10M, check RSS < 2 GB and start-up < 1 s at 10M, import >= 20,000 hashes/s,
hook environment < 600 MB.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import (REPO, SEED, Row, Scale, Section, fmt_ms, fmt_rate, fmt_ratio, moderate_script, percentiles_ms,
                     run, timed)
from .lookup import queries_for, random_codes

RADII = (31, 52)
TARGET_P99_MS = 5.0
TARGET_AT = 10_000_000
TARGET_RSS_MB = 2048
TARGET_STARTUP_S = 1.0
TARGET_IMPORT = 20_000  # hashes/s
STEM = "bench.pdq"
# Where an import's time goes: (label, the function whose cumulative time it is).
STAGES = (("parse lines", "parse"), ("de-duplicate", "_new_rows"), ("Chroma writes", "add_packs"),
          ("index update", "appended"), ("snapshot save", "_save"))


def run_section(scale: Scale) -> Section:
    from dataclasses import replace

    from . import hook

    rng = np.random.default_rng(SEED + 13)
    data = {"lookup": {str(n): _lookup(rng, n, scale.queries) for n in scale.hashlist_sizes}}
    data["import"] = _import(scale.hashlist_import, scale.hashlist_import_large)
    hooked = hook.run_section(scale)  # the install weight a hook pays: the last hashlists figure
    data["hook"] = hooked.data
    return Section("hashlists", _rows(data) + [replace(row, section="hashlists") for row in hooked.rows], data)


# -- lookup ---------------------------------------------------------------------------------------

def _lookup(rng: np.random.Generator, n: int, per_kind: int) -> dict:
    from moderate.signals.pdq import PdqIndex

    codes = random_codes(rng, n)
    ids = [f"B::{i}::0" for i in range(n)]
    index = PdqIndex.of_codes(codes, ids)
    del ids
    build_s, index = timed(index.indexed)
    queries, origin = queries_for(rng, codes, per_kind)
    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        folder = Path(tmp)
        save_s, disk = timed(_save, index, folder)
        del index
        load_s, loaded = timed(_load, folder)
        brute = _Brute(codes)
        out = {"codes": n, "queries": len(queries), "widths": [int(w) for w in loaded.tables.widths],
               "build_s": build_s, "save_s": save_s, "load_s": load_s, "disk_mb": disk / 2**20}
        for radius in RADII:
            out[str(radius)] = _timings(loaded, brute, queries, origin, radius)
        del brute, loaded
        np.save(folder / "queries.npy", queries)
        out["check_process"] = _check_process(folder)
    return out


def _save(index, folder: Path) -> int:
    """The index's files as `Catalog._save` writes them; their total bytes."""
    total = 0
    for name, value in index.arrays().items():
        path = folder / f"{STEM}-{name}"
        if isinstance(value, np.ndarray):
            path = path.with_name(path.name + ".npy")
            np.save(path, value)
        else:
            path.write_bytes(bytes(value))
        total += path.stat().st_size
    return total


def _load(folder: Path):
    from moderate.signals.pdq import PdqIndex
    from moderate.store.catalog import SavedFiles

    return PdqIndex.load(SavedFiles(folder, STEM))


class _Brute:
    """faiss `IndexBinaryFlat` over the same codes, one OpenMP thread: exhaustive, exact."""

    def __init__(self, codes: np.ndarray):
        import faiss

        faiss.omp_set_num_threads(1)
        self.index = faiss.IndexBinaryFlat(256)
        self.index.add(codes)

    def search(self, query: np.ndarray, radius: int) -> list[tuple[int, int]]:
        lims, distances, positions = self.index.range_search(query[None, :], radius + 1)
        return sorted(zip(positions.tolist(), distances.tolist()))


def _timings(index, brute: _Brute, queries: np.ndarray, origin: np.ndarray, radius: int) -> dict:
    """Interleaved per-query latencies of the index, of the index with numpy's inner loop where the
    compiled one (`_mih.c`) is built, and of brute force; their results must be equal."""
    from moderate.signals import mih

    loops = {"index": mih.NATIVE, "index_numpy": None} if mih.NATIVE is not None else {"index": None}
    times: dict[str, list[float]] = {name: [] for name in [*loops, "brute_force"]}
    for name, loop in loops.items():
        mih.NATIVE = loop
        index.search(queries[:1], radius)
    built = mih.NATIVE = next(iter(loops.values()))
    for query, source in zip(queries, origin):
        seconds, expected = timed(brute.search, query, radius)
        times["brute_force"].append(seconds)
        for name, loop in loops.items():
            mih.NATIVE = loop
            seconds, found = timed(index.search, query[None, :], radius)
            times[name].append(seconds)
            got = [(position, distance) for _, position, distance in found]
            assert got == expected, f"radius {radius}: index ({name}) found {got}, brute force {expected}"
            assert source < 0 or (int(source), 10) in got, f"radius {radius}: near-duplicate of {source} missed"
    mih.NATIVE = built
    return {"compiled": built is not None, **{name: percentiles_ms(values) for name, values in times.items()}}


# Peak RSS from /proc's VmHWM: `ru_maxrss` keeps the high-water mark across exec, so a child
# started by this (multi-GB) benchmark would report the benchmark's own peak.
CHECK_SCRIPT = """
import json, re, sys, time
started = time.perf_counter()
import numpy as np
from moderate.signals.pdq import PdqIndex
from moderate.store.catalog import SavedFiles
index = PdqIndex.load(SavedFiles(__import__("pathlib").Path(sys.argv[1]), sys.argv[2]))
queries = np.load(sys.argv[1] + "/queries.npy")
index.search(queries[:1], 52)
first = time.perf_counter() - started
for query in queries:
    index.search(query[None, :], 52)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"first_answer_s": first, "rss_mb": peak_kb / 1024}))
"""


def _check_process(folder: Path) -> dict:
    """A fresh interpreter: load, first answer (wall from spawn), every query, peak RSS."""
    wall, done = run([sys.executable, "-c", CHECK_SCRIPT, str(folder), STEM], env={"PYTHONPATH": str(REPO)})
    python_s, _ = run([sys.executable, "-c", "pass"])
    return {**json.loads(done.stdout), "spawn_to_first_answer_s": python_s + json.loads(done.stdout)["first_answer_s"],
            "python_start_s": python_s, "wall_s": wall}


# -- import ---------------------------------------------------------------------------------------

def _import(n: int, large: int) -> dict:
    from .bank_import import random_hexes

    hexes = random_hexes(max(n, large))
    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        listed = Path(tmp) / "list.txt"
        listed.write_text("".join(f"pdq {h}\n" for h in hexes[:n]))
        wall = _cli_import(Path(tmp) / "data", listed)
        mixed = Path(tmp) / "mixed.csv"
        rows = mixed_list(hexes[:n], mixed)
        mixed_wall = _cli_import(Path(tmp) / "mixed", mixed)
        profile = _profiled_import(Path(tmp) / "profiled", listed.read_text(), min(n, 50_000))
        if large:
            with (Path(tmp) / "large.txt").open("w") as out:
                out.writelines(f"pdq {h}\n" for h in hexes[:large])
            del hexes
            large_wall = _cli_import(Path(tmp) / "large", Path(tmp) / "large.txt")
    return {"hashes": n, "cli_s": wall, "per_s": n / wall, "target_met": n / wall >= TARGET_IMPORT, "profile": profile,
            "mixed": {"rows": rows, "cli_s": mixed_wall, "per_s": rows / mixed_wall},
            **({"large": {"hashes": large, "cli_s": large_wall, "per_s": large / large_wall}} if large else {})}


def _cli_import(data_dir: Path, listed: Path) -> float:
    """Seconds `moderate bank import` takes for `listed` into a new bank."""
    cli = moderate_script()
    run([cli, "--data-dir", str(data_dir), "bank", "create", "SPAM", "--action", "review"])
    wall, _ = run([cli, "--data-dir", str(data_dir), "bank", "import", "SPAM", str(listed)])
    return wall


def mixed_list(hexes: list[str], path: Path) -> int:
    """A dataset CSV as an exchange's export looks: a reference per PDQ hash named by the exchange's
    id, with a photo_md5 row for 60% of them and a video_sha256 row for 10%, 5% of PDQ hashes too
    flat to match (quality column), collab and tags columns, and 2% of rows listed twice. Its rows."""
    rng = np.random.default_rng(SEED + 14)
    digests = rng.integers(0, 256, size=(len(hexes), 48), dtype=np.uint8)
    lines = ["signal_type,signal_str,reference_id,quality,collab,tags"]
    for i, (hx, digest) in enumerate(zip(hexes, digests)):
        draw = rng.random(4)
        lines.append(f"pdq,{hx},te-{i},{30 if draw[0] < 0.05 else 90},TAT,terror propaganda")
        if draw[1] < 0.6:
            lines.append(f"photo_md5,{digest[:16].tobytes().hex()},te-{i},,TAT,")
        if draw[2] < 0.1:
            lines.append(f"video_sha256,{digest[16:].tobytes().hex()},te-{i},,TAT,")
        if draw[3] < 0.02:
            lines.append(lines[-1])
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def _profiled_import(data_dir: Path, text: str, n: int) -> dict:
    """Seconds per stage (cumulative) of an in-process import of the first `n` lines, under cProfile."""
    from moderate import Engine

    engine = Engine(data_dir=data_dir)
    engine.banks.create("SPAM", action="review")
    lines = "".join(text.splitlines(keepends=True)[:n])
    profiler = cProfile.Profile()
    total, _ = timed(profiler.runcall, engine.banks.import_hashes, "SPAM", lines)
    stats = pstats.Stats(profiler).stats
    by_name: dict[str, float] = {}
    for (path, _, name), (_, _, _, cumulative, _) in stats.items():
        if "moderate" in path:
            by_name[name] = max(by_name.get(name, 0.0), cumulative)
    return {"hashes": n, "total_s": total, **{label: by_name.get(name, 0.0) for label, name in STAGES}}


# -- table ----------------------------------------------------------------------------------------

def _rows(data: dict) -> list[Row]:
    rows = []
    for m in data["lookup"].values():
        n = m["codes"]
        for radius in RADII:
            idx, ref = m[str(radius)]["index"], m[str(radius)]["brute_force"]
            met = idx["p99_ms"] < TARGET_P99_MS if n == TARGET_AT else None
            rows.append(Row("hashlists", f"lookup r={radius} p50 @ {n:,}", fmt_ms(idx["p50_ms"]),
                            f"brute {fmt_ms(ref['p50_ms'])}", fmt_ratio(ref["p50_ms"] / idx["p50_ms"])))
            rows.append(Row("hashlists", f"lookup r={radius} p99 @ {n:,}", fmt_ms(idx["p99_ms"]),
                            f"brute {fmt_ms(ref['p99_ms'])}", fmt_ratio(ref["p99_ms"] / idx["p99_ms"]),
                            f"p99 < {TARGET_P99_MS:g} ms" if met is not None else "", met))
            plain = m[str(radius)].get("index_numpy")
            rows.append(Row("hashlists", f"  r={radius} inner loop @ {n:,}", "compiled" if plain else "numpy (no _mih.c)",
                            f"numpy p50 {fmt_ms(plain['p50_ms'])} p99 {fmt_ms(plain['p99_ms'])}" if plain else "",
                            fmt_ratio(plain["p99_ms"] / idx["p99_ms"]) if plain else ""))
        rows.append(Row("hashlists", f"  tables build / save / load @ {n:,}",
                        f"{m['build_s']:.1f} s / {m['save_s']:.1f} s / {fmt_ms(m['load_s'] * 1000)}",
                        f"{m['disk_mb']:,.0f} MB on disk", "", f"{m['queries']} queries identical", True))
        check = m["check_process"]
        big = n == TARGET_AT
        rows.append(Row("hashlists", f"  check process: spawn to first answer @ {n:,}",
                        fmt_ms(check["spawn_to_first_answer_s"] * 1000), f"python {fmt_ms(check['python_start_s'] * 1000)}",
                        "", f"< {TARGET_STARTUP_S:g} s" if big else "",
                        check["spawn_to_first_answer_s"] < TARGET_STARTUP_S if big else None))
        rows.append(Row("hashlists", f"  check process: peak RSS @ {n:,}", f"{check['rss_mb']:,.0f} MB", "", "",
                        f"< {TARGET_RSS_MB:,} MB" if big else "", check["rss_mb"] < TARGET_RSS_MB if big else None))
    imp = data["import"]
    rows.append(Row("hashlists", f"bank import, {imp['hashes']:,} random pdq lines", fmt_rate(imp["per_s"], "h/s"),
                    f"{imp['cli_s']:.1f} s", "", f">= {TARGET_IMPORT:,} h/s", imp["target_met"]))
    if "large" in imp:
        big = imp["large"]
        rows.append(Row("hashlists", f"bank import, {big['hashes']:,} random pdq lines", fmt_rate(big["per_s"], "h/s"),
                        f"{big['cli_s']:.0f} s", "", f">= {TARGET_IMPORT:,} h/s sustained",
                        big["per_s"] >= TARGET_IMPORT))
    mixed = imp["mixed"]
    rows.append(Row("hashlists", f"bank import, mixed CSV of {mixed['rows']:,} rows (pdq, photo_md5, video_sha256)",
                    fmt_rate(mixed["per_s"], "rows/s"), f"{mixed['cli_s']:.1f} s", "", f">= {TARGET_IMPORT:,} rows/s",
                    mixed["per_s"] >= TARGET_IMPORT))
    profile = imp["profile"]
    rows.append(Row("hashlists", f"  where {profile['hashes']:,} go (in-process, profiled)",
                    f"{profile['total_s']:.1f} s",
                    ", ".join(f"{label} {profile[label]:.1f} s" for label, _ in STAGES)))
    return rows
