"""Throughput (images/s) of checking real photos, end to end against bare hashing.

Measured on the same JPEGs in the same run, one core, the median time per image over several passes:
- bare: a full Pillow decode converted to RGB numpy, then `pdqhash.compute` (no downscale). This is
  the floor of any PDQ checker that decodes naively; `moderate` should be at least 90% as fast.
- end to end: `Engine(data_dir).check_frames(path)` against a bank of a few references with the
  default policy: read + sha256, DCT-scaled decode, PDQ, exact lookup, policy, verdict.
- phash: `imagehash.phash` on a full Pillow decode, the usual Python perceptual hash, for scale.
And `moderate check DIR --json --workers 2` as a subprocess, wall time including start-up and the
worker processes, which is what a batch job sees.

DCT scaling hashes a smaller decode than the bare path, so the benchmark also reports how far its
hashes are from the full-decode hashes (Hamming distance, of 256 bits): speed must not cost matches.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from . import photos
from .common import Row, Scale, Section, fmt_rate, fmt_ratio, make_bank, moderate_script, run, timed

TARGET = 0.90  # end to end / bare
BANK = "BENCH"
WORKERS = 2


def bare_pdq(path: Path) -> str:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    vector, _quality = pdqhash.compute(pixels)
    return np.packbits(vector.astype(np.uint8)).tobytes().hex()


def phash(path: Path) -> str:
    with Image.open(path) as image:
        image.load()
        return str(imagehash.phash(image))


def end_to_end(engine) -> Callable[[Path], object]:
    def check(path: Path):
        return engine.check_frames(path)

    return check


def run_section(scale: Scale) -> Section:
    from moderate import Engine

    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        folder = Path(tmp)
        corpus, flagged = photos.build(folder, scale.photos, scale.opencv_photos)
        make_bank(folder / "data", BANK, flagged)
        engine = Engine(data_dir=folder / "data")
        methods = {"bare": bare_pdq, "end_to_end": end_to_end(engine), "phash": phash}
        times, results = _time_methods(methods, corpus, scale.rounds)
        cli = _time_cli(folder / "data", folder / "photos", len(corpus), scale.cli_runs)
    verdicts = {str(p.path): [v.verdict for v in results["end_to_end"][i]] for i, p in enumerate(corpus)}
    cli["agrees_with_library"] = cli.pop("verdicts") == verdicts
    data = {
        "images": len(corpus),
        "corpus": [{"file": p.path.name, "size": p.size, "width": p.width, "height": p.height, "bytes": p.bytes}
                   for p in corpus],
        "rates": _rates(times, corpus),
        "pdq_distance_scaled_vs_full": _hash_agreement(results, corpus),
        "verdicts": {v: sum(vs.count(v) for vs in verdicts.values()) for v in ("allow", "review", "block")},
        "cli": cli,
    }
    return Section("throughput", _rows(data), data)


def _time_methods(methods: dict, corpus: list, rounds: int) -> tuple[dict, dict]:
    """Per method, the median seconds per image over `rounds` passes (after one warm-up call)."""
    samples = {name: [[] for _ in corpus] for name in methods}
    results = {name: [None] * len(corpus) for name in methods}
    for fn in methods.values():
        fn(corpus[0].path)  # imports, snapshot load, file cache
    names = list(methods)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order between passes
            for i, photo in enumerate(corpus):
                seconds, results[name][i] = timed(methods[name], photo.path)
                samples[name][i].append(seconds)
    times = {name: np.array([np.median(s) for s in per_image]) for name, per_image in samples.items()}
    return times, results


def _rates(times: dict, corpus: list) -> dict:
    """images/s per method, overall and per size class."""
    classes = ["all"] + sorted({p.size for p in corpus}, key=lambda s: (s == "opencv-doc", s))
    out = {}
    for size in classes:
        mask = np.array([size == "all" or p.size == size for p in corpus])
        out[size] = {name: float(mask.sum() / t[mask].sum()) for name, t in times.items()}
        out[size]["end_to_end_over_bare"] = out[size]["end_to_end"] / out[size]["bare"]
    return out


def _hash_agreement(results: dict, corpus: list) -> dict:
    distances = []
    for i, _ in enumerate(corpus):
        scaled = results["end_to_end"][i][0].signals[0].hex
        distances.append((int(scaled, 16) ^ int(results["bare"][i], 16)).bit_count())
    return {"mean": float(np.mean(distances)), "max": int(np.max(distances)),
            "per_image": dict(zip((p.path.name for p in corpus), distances))}


def _time_cli(data_dir: Path, folder: Path, images: int, runs: int) -> dict:
    cmd = [moderate_script(), "--data-dir", str(data_dir), "check", str(folder), "--json", "--workers", str(WORKERS)]
    walls, verdicts = [], {}
    for _ in range(runs):
        wall, done = run(cmd, ok=(0, 3, 4))
        walls.append(wall)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert len(lines) == images, f"moderate check printed {len(lines)} verdicts for {images} images"
        verdicts = {}
        for line in lines:
            verdicts.setdefault(line["source"], []).append(line["verdict"])
    wall = float(np.median(walls))
    return {"command": " ".join(cmd), "walls_s": walls, "wall_s": wall, "images_per_s": images / wall,
            "verdicts": verdicts}


def _rows(data: dict) -> list[Row]:
    rates, n = data["rates"], data["images"]
    overall = rates["all"]
    ratio = overall["end_to_end_over_bare"]
    rows = [
        Row("throughput", f"check_frames, {n} photos (img/s)", fmt_rate(overall["end_to_end"], "img/s"),
            f"bare PDQ {fmt_rate(overall['bare'], 'img/s')}", fmt_ratio(ratio), f">= {TARGET:.2f}x", ratio >= TARGET),
    ]
    for size, r in rates.items():
        if size != "all":
            rows.append(Row("throughput", f"  at {size}", fmt_rate(r["end_to_end"], "img/s"),
                            f"bare PDQ {fmt_rate(r['bare'], 'img/s')}", fmt_ratio(r["end_to_end_over_bare"])))
    rows.append(Row("throughput", "check_frames vs imagehash.phash", fmt_rate(overall["end_to_end"], "img/s"),
                    f"phash {fmt_rate(overall['phash'], 'img/s')}", fmt_ratio(overall["end_to_end"] / overall["phash"])))
    cli = data["cli"]
    rows.append(Row("throughput", f"CLI check DIR --workers {WORKERS} (wall)", fmt_rate(cli["images_per_s"], "img/s"),
                    f"bare PDQ {fmt_rate(overall['bare'], 'img/s')} (1 core)",
                    fmt_ratio(cli["images_per_s"] / overall["bare"]),
                    "same verdicts as library", cli["agrees_with_library"]))
    agreement = data["pdq_distance_scaled_vs_full"]
    rows.append(Row("throughput", "PDQ distance, DCT-scaled vs full decode", f"mean {agreement['mean']:.1f}",
                    f"max {agreement['max']}", "", "max <= 31", agreement["max"] <= 31))
    return rows
