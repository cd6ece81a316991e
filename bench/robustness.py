"""Robustness: recall per edit at zero false positives, plain PDQ against `moderate check` verdicts.

The corpus is `bench/edits.py`: real photos split into flagged references and distractors, and 25
edits of each. The flagged photos are added to one bank (`moderate bank add`); every edit of every
photo is checked in this process, one at a time, on one core (OpenCV and faiss run single-threaded).

- Baseline: plain PDQ of the whole query against the flagged photos' hashes, at the largest
  distance where no distractor query matches (the best threshold PDQ could have on this corpus).
- moderate: the verdicts of `Engine.check` under the default policy (what `moderate check` does
  without --policy) and `policies/strict.yaml`. A flagged query counts as caught when its verdict is
  review or block *and* a reason names the right reference; a distractor query counts as a false
  positive when its verdict is anything but allow because of a match. Non-allow verdicts without a
  match (strict reviews flat, low-quality images by design) are counted on their own line.

Also measured: the pooled keypoint index at bank scale (real descriptors plus noisy copies, up
to 1M descriptors, about 1,000 references) and the time to find a pasted photo in it.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np

from .common import OUT, REPO, Row, Scale, Section
from . import edits

TARGET_OVERALL = 0.98
TARGET_EDIT = 0.90
TARGET_MS = 150.0


def run_section(scale: Scale) -> Section:
    from moderate import Engine
    from moderate.signals import PDQ

    folder = OUT / "robustness"
    shutil.rmtree(folder, ignore_errors=True)
    photos = edits.photos(scale.robustness_photos)
    flagged, distractors = edits.split(photos)
    references = folder / "references"
    references.mkdir(parents=True)
    for photo in flagged:
        photo.image.save(references / f"{photo.name}.png")
    queries = edits.queries(flagged, distractors, folder / "queries")
    print(f"[bench] robustness: {len(flagged)} flagged photos, {len(distractors)} distractors, {len(queries)} queries",
          flush=True)

    section = Section("robustness")
    data = folder / "data"
    Engine(data, audit=False).banks.create("FLAGGED", "block", "robustness benchmark")
    Engine(data, audit=False).banks.add("FLAGGED", [references])

    baseline = _pdq_baseline(queries, references, PDQ)
    results = {"pdq": baseline}
    for name, policy in (("default", None), ("strict", REPO / "policies" / "strict.yaml")):
        engine = Engine(data, policy=policy, audit=False)
        engine.check(queries[0].path)  # load the index and OpenCV once, outside the timings
        results[name] = _verdicts(engine, queries)
        print(f"[bench] robustness: {name} policy done", flush=True)
    section.data.update({k: {e: v for e, v in r.items()} for k, r in results.items()})
    section.rows += _rows(results, queries)
    section.rows += _index_scale(data, queries, section.data)
    return section


def _pdq_baseline(queries, references, pdq) -> dict:
    """Recall per edit of whole-image PDQ at the zero-false-positive threshold."""
    from moderate.media import decode

    flagged = {p.stem: pdq.compute(decode(p).frames[0].pixels)[0] for p in references.iterdir()}
    nearest = []
    for q in queries:
        (value,) = pdq.compute(decode(q.path).frames[0].pixels)
        distances = {name: value.distance(ref) for name, ref in flagged.items()}
        nearest.append(distances[q.photo] if q.flagged else min(distances.values()))
    threshold = min(d for d, q in zip(nearest, queries) if not q.flagged) - 1
    per_edit = defaultdict(list)
    for d, q in zip(nearest, queries):
        if q.flagged:
            per_edit[q.edit].append(d <= threshold)
    out = {edit: float(np.mean(v)) for edit, v in per_edit.items()}
    out["_threshold"] = threshold
    out["_false_positives"] = 0
    return out


def _verdicts(engine, queries) -> dict:
    per_edit, blocked, times, false_positives, unmatched_reviews = defaultdict(list), [], [], [], []
    for q in queries:
        start = time.perf_counter()
        verdict = engine.check(q.path)
        times.append((time.perf_counter() - start) * 1000)
        if q.flagged:
            named = any(r.reference_id == q.photo and r.action != "allow" for r in verdict.reasons)
            per_edit[q.edit].append(verdict.verdict != "allow" and named)
            blocked.append(verdict.verdict == "block" and named)
        elif verdict.verdict != "allow" and any(r.bank for r in verdict.reasons):
            false_positives.append(f"{q.path.name}: {verdict.verdict} ({verdict.reasons[0].rule})")
        elif verdict.verdict != "allow":  # the policy's own choice, e.g. strict reviews flat images
            unmatched_reviews.append(f"{q.path.name}: {verdict.verdict} ({verdict.reasons[0].rule})")
    out = {edit: float(np.mean(v)) for edit, v in per_edit.items()}
    out["_blocked"] = float(np.mean(blocked))
    out["_false_positives"] = len(false_positives)
    out["_false_positive_queries"] = false_positives
    out["_unmatched_non_allow"] = unmatched_reviews
    out["_median_ms"] = statistics.median(times)
    out["_p90_ms"] = float(np.percentile(times, 90))
    return out


def _overall(result: dict, queries) -> float:
    counts = defaultdict(int)
    for q in queries:
        counts[q.edit] += q.flagged
    total = sum(counts.values())
    return sum(result[e] * n for e, n in counts.items()) / total


def _rows(results: dict, queries) -> list[Row]:
    rows = []
    base, default, strict = results["pdq"], results["default"], results["strict"]
    for edit in edits.EDITS:
        ratio = f"{default[edit] / base[edit]:.1f}x" if base[edit] else "inf"
        rows.append(Row("robustness", f"recall {edit}: default (strict)", f"{default[edit]:.2f} ({strict[edit]:.2f})",
                        f"{base[edit]:.2f}", ratio, f">= {TARGET_EDIT}", default[edit] >= TARGET_EDIT))
    overall = {k: _overall(r, queries) for k, r in results.items()}
    rows.append(Row("robustness", "recall overall: default (strict)", f"{overall['default']:.3f} ({overall['strict']:.3f})",
                    f"{overall['pdq']:.3f} (pdq <= {base['_threshold']})", f"{overall['default'] / overall['pdq']:.2f}x",
                    f">= {TARGET_OVERALL}", overall["default"] >= TARGET_OVERALL))
    rows.append(Row("robustness", "blocked (not only review): default (strict)",
                    f"{default['_blocked']:.3f} ({strict['_blocked']:.3f})"))
    rows.append(Row("robustness", "distractor queries not allowed without a match: default (strict)",
                    f"{len(default['_unmatched_non_allow'])} ({len(strict['_unmatched_non_allow'])})"))
    rows.append(Row("robustness", "distractor queries flagged by a match: default (strict)",
                    f"{default['_false_positives']} ({strict['_false_positives']})", "0", "", "0",
                    default["_false_positives"] == 0 and strict["_false_positives"] == 0))
    rows.append(Row("robustness", "verdict ms per query, median (p90): default",
                    f"{default['_median_ms']:.0f} ({default['_p90_ms']:.0f})", "", "", f"< {TARGET_MS:.0f}",
                    default["_median_ms"] < TARGET_MS))
    rows.append(Row("robustness", "verdict ms per query, median (p90): strict",
                    f"{strict['_median_ms']:.0f} ({strict['_p90_ms']:.0f})"))
    return rows


def _index_scale(data, queries, out: dict) -> list[Row]:
    """Retrieval time in a pooled descriptor index grown to bank scale with noisy copies."""
    from moderate import Engine
    from moderate.signals.keypoints import KeypointIndex
    from moderate.signals.keypoints.index import _ivf_bytes
    from moderate.media import decode
    from moderate.signals import KEYPOINTS
    from moderate.signals.keypoints.verification import retrieve

    real = Engine(data, audit=False).catalog.current().keypoints
    pasted = [q for q in queries if q.flagged and q.edit == "pasted_30_50"]
    described = []
    for q in pasted:
        frame = decode(q.path).frames[0]
        described.append(KEYPOINTS.compute(frame.pixels, frame.width, frame.height))
    rows = []
    rng = np.random.default_rng(0)
    for target in (100_000, 1_000_000):
        copies = max(1, target // len(real.pooled))
        records = []
        for copy in range(copies):
            noisy = real.descriptors.copy()
            bits = rng.integers(0, 256, size=(len(noisy), 2))
            for column in range(2):  # flip about 16 bits per copy: other corners, not the same ones
                noisy[np.arange(len(noisy)), bits[:, column] // 8] ^= (1 << (bits[:, column] % 8)).astype(np.uint8)
            noisy[:, :8] ^= rng.integers(0, 256, size=(len(noisy), 8), dtype=np.uint8) & 0x11
            records += [(f"B::{image}-{copy}::0", replace(_image(real, image), descriptors=noisy[real.rows(image)]))
                        for image in range(len(real))]
        index = KeypointIndex.build(records)
        images = len(index)
        start = time.perf_counter()
        index.nearest(described[0].descriptors[:2])
        build_s = time.perf_counter() - start
        saved = OUT / "robustness" / "scale.kp-ivf"
        saved.write_bytes(_ivf_bytes(index))
        reloaded = replace(index)
        reloaded.load_from(saved)
        start = time.perf_counter()
        reloaded.nearest(described[0].descriptors[:2])
        load_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        index = index.appended([("B::new::0", _image(real, 0))])
        append_ms = (time.perf_counter() - start) * 1000
        allowed = np.ones(len(index), bool)
        times = []
        for query in described:
            start = time.perf_counter()
            retrieve(index, query, allowed, 4, 12)
            times.append((time.perf_counter() - start) * 1000)
        out[f"index_{target}"] = {"descriptors": len(index.pooled), "images": images, "build_s": build_s,
                                  "load_ms": load_ms, "append_ms": append_ms, "median_ms": statistics.median(times)}
        rows.append(Row("robustness", f"keypoint retrieval, {len(index.pooled):,} pooled descriptors ({images:,} images)",
                        f"{statistics.median(times):.0f} ms", "", "", "", None))
        rows.append(Row("robustness", f"keypoint index at {len(index.pooled):,}: build / load saved / add a reference",
                        f"{build_s:.1f} s / {load_ms:.0f} ms / {append_ms:.0f} ms"))
    return rows


def _image(index, image: int):
    """The keypoints of one indexed image, as a reference would add them."""
    from moderate.signals import KeypointSet

    rows = index.rows(image)
    width, height = (int(v) for v in index.sizes[image])
    return KeypointSet(width, height, index.points[rows], index.descriptors[rows])
