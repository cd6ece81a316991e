"""Import rate of an industry hash list into a fresh embedded bank, against Chroma's own write path.

`Engine(data_dir).banks.import_hashes("SPAM", text)` with `pdq <hex>` lines of random hashes:
parsing and validating every line, de-duplicating against the bank, writing to Chroma in pages,
extending and saving the derived index. The baseline is raw chromadb, no moderate code: a fresh
`PersistentClient` collection and `collection.add` of the same ids, 16-dim vectors and 2-key
metadata in batches of 5000, so the ratio is moderate's overhead over what Chroma itself costs.
The same add with the five metadata keys moderate writes per hash (bank, reference_id, added_at,
added_by, imported_from) tells its own Python overhead apart from the cost of its data model.
A second import of the same list must import nothing (idempotent) and is timed too. CPU times are
kept beside wall times: Chroma's writes are CPU-bound, and CPU time shrugs off other processes' load.
Target: at least 20k hashes/s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .common import SEED, Row, Scale, Section, fmt_ms, fmt_rate, fmt_ratio, timed_cpu

BANK = "SPAM"
BATCH = 5000
TARGET = 20_000  # hashes/s


def run_section(scale: Scale) -> Section:
    hexes = random_hexes(scale.import_hashes)
    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        baseline_s, baseline_cpu = chroma_baseline(Path(tmp) / "chroma-2-keys", hexes, two_keys)
        same_keys_s, same_keys_cpu = chroma_baseline(Path(tmp) / "chroma-5-keys", hexes, five_keys)
        (first_s, first_cpu, first), (second_s, _, second) = moderate_import(Path(tmp) / "data", hexes)
    n = len(hexes)
    assert first.imported == n and not first.skipped, f"first import: {first}"
    assert second.imported == 0 and second.already_present == n, f"second import: {second}"
    data = {
        "hashes": n, "moderate_s": first_s, "moderate_per_s": n / first_s, "chroma_add_s": baseline_s,
        "chroma_add_per_s": n / baseline_s, "ratio": baseline_s / first_s,
        "chroma_add_5_keys_s": same_keys_s, "chroma_add_5_keys_per_s": n / same_keys_s,
        "cpu_s": {"moderate": first_cpu, "chroma_add": baseline_cpu, "chroma_add_5_keys": same_keys_cpu},
        "second_import_s": second_s,
        "second_import_imported": second.imported, "target_per_s": TARGET, "target_met": n / first_s >= TARGET,
    }
    return Section("bank_import", _rows(data), data)


def random_hexes(n: int) -> list[str]:
    codes = np.random.default_rng(SEED + 1).integers(0, 256, size=(n, 32), dtype=np.uint8)
    codes[:, 0] |= 1  # never the all-zero hash, which import refuses
    return [row.tobytes().hex() for row in codes]


def two_keys(hex_value: str) -> dict:
    return {"bank": BANK, "reference_id": hex_value}


def five_keys(hex_value: str) -> dict:
    """The keys moderate writes for each imported hash, with values of the same length."""
    return {**two_keys(hex_value), "added_at": "2024-05-17T12:00:00+00:00", "added_by": "bench",
            "imported_from": "<hash list>"}


def chroma_baseline(path: Path, hexes: list[str], metadata: Callable[[str], dict]) -> tuple[float, float]:
    """(wall, CPU) seconds of raw `collection.add` of the records an import writes (same ids and vectors)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("baseline", embedding_function=None)
    vectors = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u2").astype(np.float32).reshape(-1, 16)
    ids = [f"{BANK}::{h}::0" for h in hexes]
    metadatas = [metadata(h) for h in hexes]

    def add_all() -> None:
        for start in range(0, len(hexes), BATCH):
            end = start + BATCH
            collection.add(ids=ids[start:end], embeddings=vectors[start:end], metadatas=metadatas[start:end])

    wall, cpu, _ = timed_cpu(add_all)
    assert collection.count() == len(hexes)
    return wall, cpu


def moderate_import(data_dir: Path, hexes: list[str]):
    """(wall, CPU, report) of the first import of `hexes` into a new bank, and of the second."""
    from moderate import Engine

    engine = Engine(data_dir=data_dir)
    engine.banks.create(BANK, action="review")
    text = "".join(f"pdq {h}\n" for h in hexes)
    first = timed_cpu(engine.banks.import_hashes, BANK, text)
    second = timed_cpu(engine.banks.import_hashes, BANK, text)
    return first, second


def _rows(data: dict) -> list[Row]:
    n = data["hashes"]
    return [
        Row("bank_import", f"import_hashes, {n:,} new (hashes/s)", fmt_rate(data["moderate_per_s"], "h/s"),
            f"chroma add {fmt_rate(data['chroma_add_per_s'], 'h/s')}", fmt_ratio(data["ratio"]),
            f">= {TARGET:,} h/s", data["target_met"]),
        Row("bank_import", f"  wall, {n:,} new", fmt_ms(data["moderate_s"] * 1000),
            f"chroma add {fmt_ms(data['chroma_add_s'] * 1000)}"),
        Row("bank_import", f"  cpu, {n:,} new", fmt_ms(data["cpu_s"]["moderate"] * 1000),
            f"chroma add {fmt_ms(data['cpu_s']['chroma_add'] * 1000)}",
            fmt_ratio(data["cpu_s"]["chroma_add"] / data["cpu_s"]["moderate"])),
        Row("bank_import", "  vs chroma add with moderate's 5 keys", fmt_rate(data["moderate_per_s"], "h/s"),
            f"chroma add {fmt_rate(data['chroma_add_5_keys_per_s'], 'h/s')}",
            fmt_ratio(data["chroma_add_5_keys_s"] / data["moderate_s"])),
        Row("bank_import", f"re-import same {n:,} (idempotent)", fmt_ms(data["second_import_s"] * 1000),
            f"imported {data['second_import_imported']}", "", "imports 0", data["second_import_imported"] == 0),
    ]
