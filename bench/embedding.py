"""Embeddings: speed of EfficientNet-Lite0, search latency in Chroma, dedup wall time, retrieval quality.

- Speed: images per second through `load_model().compute` (one thread, the default), batches of 1
  and 8, against PDQ on the same decoded frames.
- Search: p50/p99 of `Store.nearest_embeddings` (Chroma's HNSW, cosine) at `scale.embedding_refs`
  references (real embeddings of the corpus plus noisy copies), against exact numpy search.
- Dedup: wall time of `moderate.engine.dedup` scan + group over `scale.dedup_files` JPEGs made from the
  corpus (crops and resizes of 41 photos), in one process and one per core, against bare decoding.
- Memory: peak RSS of a process with the model loaded (each worker carries one).
- Quality: recall@1 and mAP@10 (one relevant item per query, so the mean reciprocal rank in the top
  10) of finding each edited photo's original among all originals of the robustness corpus
  (`bench/edits.py`), EfficientNet-Lite0 cosine against PDQ Hamming distance.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

from . import edits
from .common import OUT, SEED, Row, Scale, Section, percentiles_ms


def run_section(scale: Scale) -> Section:
    from moderate.media import decode
    from moderate.signals import PDQ
    from moderate.signals.embedding import load_model

    section = Section("embedding")
    folder = OUT / "embedding"
    shutil.rmtree(folder, ignore_errors=True)
    photos = edits.photos(scale.robustness_photos)
    queries = edits.queries(*edits.split(photos), folder / "queries")  # every photo's edits; originals are the gallery
    model = load_model()
    frames = [decode(q.path).frames[0].pixels for q in queries[:64]]

    start = time.perf_counter()
    for pixels in frames:
        PDQ.compute(pixels)
    pdq_rate = len(frames) / (time.perf_counter() - start)
    rates = {}
    for batch in (1, 8):
        start = time.perf_counter()
        for i in range(0, len(frames), batch):
            model.compute(frames[i : i + batch])
        rates[batch] = len(frames) / (time.perf_counter() - start)
    section.data["images_per_s"] = {"pdq": pdq_rate, **{f"batch_{b}": r for b, r in rates.items()}}
    section.rows.append(Row("embedding", "EfficientNet-Lite0 img/s, batch 1 (batch 8), 1 thread",
                            f"{rates[1]:.1f} ({rates[8]:.1f})", f"PDQ {pdq_rate:.1f}", f"{rates[1] / pdq_rate:.2f}x"))

    section.rows += _quality(model, photos, queries, section.data)
    section.rows += _search(model, frames, scale.embedding_refs, folder, section.data)
    section.rows += _dedup(photos, scale.dedup_files, folder, section.data)
    section.rows += _memory(section.data)
    return section


def _quality(model, photos, queries, out: dict) -> list[Row]:
    from moderate.media import decode
    from moderate.signals import PDQ

    originals = [np.asarray(p.image) for p in photos]
    names = [p.name for p in photos]
    gallery_vectors = np.concatenate([model.compute(originals[i : i + 8]) for i in range(0, len(originals), 8)])
    gallery_codes = np.stack([np.frombuffer(PDQ.compute(o)[0].to_bytes(), np.uint8) for o in originals])
    ranks = defaultdict(list)
    flagged = np.array([p.name in {q.photo for q in queries if q.flagged} for p in photos])
    own, distractor_best = defaultdict(list), []  # cosine to the own original; distractors: to any flagged one
    for q in queries:
        pixels = decode(q.path).frames[0].pixels
        (vector,) = model.compute([pixels])
        cosines = gallery_vectors @ vector
        if q.flagged:
            own[q.edit].append(float(cosines[names.index(q.photo)]))
        else:
            distractor_best.append(float(cosines[flagged].max()))
        by_embedding = np.argsort(-(gallery_vectors @ vector), kind="stable")
        code = np.frombuffer(PDQ.compute(pixels)[0].to_bytes(), np.uint8)
        by_pdq = np.argsort(np.bitwise_count(gallery_codes ^ code).sum(axis=1), kind="stable")
        truth = names.index(q.photo)
        ranks["embedding"].append(int(np.flatnonzero(by_embedding == truth)[0]) + 1)
        ranks["pdq"].append(int(np.flatnonzero(by_pdq == truth)[0]) + 1)
    scores = {signal: {"recall_at_1": float(np.mean([r == 1 for r in rs])),
                       "map_at_10": float(np.mean([1.0 / r if r <= 10 else 0.0 for r in rs]))}
              for signal, rs in ranks.items()}
    per_edit = defaultdict(lambda: defaultdict(list))
    for q, e, p in zip(queries, ranks["embedding"], ranks["pdq"]):
        per_edit[q.edit]["embedding"].append(e == 1)
        per_edit[q.edit]["pdq"].append(p == 1)
    out["quality"] = {**scores, "per_edit_recall_at_1": {
        edit: {s: float(np.mean(v)) for s, v in signals.items()} for edit, signals in per_edit.items()}}
    ceiling = max(distractor_best)
    bands = {f">= {t}": float(np.mean([c >= t for v in own.values() for c in v])) for t in (0.92, 0.85)}
    out["calibration"] = {"distractor_max_cosine": ceiling, "flagged_share_in_band": bands,
                          "per_edit_min_cosine": {e: min(v) for e, v in own.items()}}
    e, p = scores["embedding"], scores["pdq"]
    return [
        Row("embedding", "calibration: distractor edits' best cosine to a flagged original", f"{ceiling:.3f}",
            "", "", "< 0.85 (default review band)", ceiling < 0.85),
        Row("embedding", "edited flagged photos at >= 0.92 (>= 0.85)",
            f"{bands['>= 0.92']:.2f} ({bands['>= 0.85']:.2f})"),
        Row("embedding", f"recall@1, {len(queries)} edited queries, {len(photos)} originals",
            f"{e['recall_at_1']:.3f}", f"PDQ {p['recall_at_1']:.3f}", f"{e['recall_at_1'] / p['recall_at_1']:.2f}x"),
        Row("embedding", "mAP@10", f"{e['map_at_10']:.3f}", f"PDQ {p['map_at_10']:.3f}",
            f"{e['map_at_10'] / p['map_at_10']:.2f}x"),
    ]


def _search(model, frames, references: int, folder, out: dict) -> list[Row]:
    from moderate.store import Store

    rng = np.random.default_rng(SEED)
    real = model.compute(frames)
    vectors = np.repeat(real, references // len(real) + 1, axis=0)[:references]
    vectors = vectors + rng.normal(0, 0.02, vectors.shape).astype(np.float32)  # other pictures, nearby
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = Store(folder / "data")
    collection = {"key": "bench-efficientnet", "model": "efficientnet-lite0", "dimension": vectors.shape[1]}
    start = time.perf_counter()
    store.add_embeddings(collection, [(f"B::{i}::0", v.tolist(), {"bank": "B", "reference_id": str(i)})
                                      for i, v in enumerate(vectors)])
    insert_s = time.perf_counter() - start
    probes = real[:32]
    chroma, exact = [], []
    for probe in probes:
        start = time.perf_counter()
        store.nearest_embeddings(collection, probe.tolist(), 10)
        chroma.append(time.perf_counter() - start)
        start = time.perf_counter()
        np.argpartition(-(vectors @ probe), 10)[:10]
        exact.append(time.perf_counter() - start)
    c, x = percentiles_ms(chroma), percentiles_ms(exact)
    out["search"] = {"references": references, "insert_s": insert_s, "chroma": c, "numpy": x}
    return [
        Row("embedding", f"search top 10 in Chroma at {references:,} refs, p50 (p99)",
            f"{c['p50_ms']:.1f} ({c['p99_ms']:.1f}) ms", f"numpy exact {x['p50_ms']:.1f} ms",
            f"{x['p50_ms'] / c['p50_ms']:.2f}x"),
        Row("embedding", f"insert {references:,} embeddings into Chroma", f"{insert_s:.0f} s",
            "", "", "", None),
    ]


def _dedup(photos, files: int, folder, out: dict) -> list[Row]:
    from PIL import Image

    from moderate.engine import dedup
    from moderate.media import decode

    library = folder / "library"
    library.mkdir(parents=True)
    rng = random.Random(SEED)
    for i in range(files):
        photo = rng.choice(photos).image
        side = rng.randint(240, 480)  # small files: the benchmark is the pipeline, not JPEG decoding
        x, y = rng.randint(0, photo.width // 3), rng.randint(0, photo.height // 3)
        picture = photo.crop((x, y, x + photo.width * 2 // 3, y + photo.height * 2 // 3))
        picture.thumbnail((side, side), Image.Resampling.BILINEAR)
        picture.save(library / f"{i:06d}.jpg", quality=rng.choice([70, 85, 95]))
    paths = sorted(library.iterdir())
    start = time.perf_counter()
    for path in paths:
        decode(path)
    bare_s = time.perf_counter() - start
    rows = []
    for workers in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        groups = dedup.group(dedup.scan(paths, workers=workers))
        wall_s = time.perf_counter() - start
        out[f"dedup_{workers}_workers"] = {"files": files, "wall_s": wall_s, "bare_decode_s": bare_s,
                                           "groups": len(groups), "duplicates": sum(len(g.duplicates) for g in groups)}
        rows.append(Row("embedding", f"dedup (PDQ) of {files:,} JPEGs, {workers} worker(s), wall",
                        f"{wall_s:.0f} s ({files / wall_s:.0f} files/s)", f"decode only, 1 core {bare_s:.0f} s",
                        f"{bare_s / wall_s:.2f}x"))
    return rows


def _memory(out: dict) -> list[Row]:
    """Peak RSS of a process that loaded EfficientNet-Lite0 (what each worker carries), against one
    that only imported moderate's engine."""
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report the bench's own peak
    code = ("from moderate import Engine; {load}; "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])")
    rss = {}
    for name, load in (("engine", "pass"), ("model", "from moderate.signals.embedding import load_model; load_model()")):
        done = subprocess.run([sys.executable, "-c", code.format(load=load)], capture_output=True, text=True, check=True)
        rss[name] = int(done.stdout.split()[-1]) / 1024
    out["rss_mb"] = rss
    return [Row("embedding", "peak RSS of a process with the model loaded", f"{rss['model']:.0f} MB",
                f"engine only {rss['engine']:.0f} MB", f"+{rss['model'] - rss['engine']:.0f} MB")]
