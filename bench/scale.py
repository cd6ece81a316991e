"""Scale: the held-out queries against banks of 1,000 to 100,000 unrelated references.

`python -m bench --only scale [--scale-sizes 1000,10000] [--scale-queries 400]`.

The flagged set is the held-out split's (`bench/corpus.py`: Debian wallpapers and illustrations).
Each size adds that many *filler* references in a second bank: crops at varied scales and places of
pictures unrelated to it (plasma and lomiri wallpapers, scikit-image and opencv-doc photos), added
the way a team grows a bank, `moderate bank add GROWN FOLDER` one folder of FOLDER_SIZE at a time
(each a fresh CLI process, timed from spawn to exit).

Built banks are cached under `bench/out/scale-cache/KEY/SIZE`, KEY being a digest of the flagged
set, the filler pictures, the filler recipe and the source of `moderate.signals` with the package's
version: a rerun reuses them, a bigger size starts from a copy of the largest smaller one and adds
only the missing folders, and a change to the signals builds anew. A cached bank that no longer
opens or holds the wrong count is built again.

Per size, a stratified sample of the held-out queries (every edit, flagged and distractor alike) is
checked in a child process pinned to one core under `policies/default.yaml`; it reports verdicts,
ms per check and its peak RSS. The baseline is the same queries against the bare flagged bank,
measured in the same run the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import corpus, edits, heldout
from .common import OUT, SEED, Row, Scale, Section, moderate_script, run

FOLDER = OUT / "scale"
CACHE = OUT / "scale-cache"
FOLDER_SIZE = 500  # images per `bank add`, as a moderator adds one case or one batch
FILLER_RECIPE = "crops-v2"  # change when `corpus.filler_crop` changes what it makes
GROWN = "GROWN"
TARGETS = {"recall_drop": 0.01, "p50_ms": 150.0, "p99_ms": 500.0, "rss_mb": 2048.0, "disk_kb": 40.0, "add_per_s": 50.0}


def run_section(scale: Scale) -> Section:
    shutil.rmtree(FOLDER, ignore_errors=True)
    split = corpus.split(corpus.held_out_series())
    prepared = heldout.prepare(FOLDER / "queries", split)
    cases = sample(prepared.cases, scale.scale_queries)
    sources = corpus.filler_sources()
    key = cache_key(split.flagged, sources)
    print(f"[bench] scale: {len(cases)} queries, {len(sources)} filler pictures, cache {CACHE / key}", flush=True)

    section = Section("scale")
    baseline = check_in_child(prepared.data, cases)
    baseline["disk_kb_per_reference"] = disk_bytes(prepared.data) / 1024 / max(1, len(split.flagged) - len(prepared.refused))
    section.data["baseline"] = baseline
    results = {}
    for size in sorted(scale.scale_sizes):
        data, build = grown_bank(CACHE / key, size, prepared.data, sources)
        result = check_in_child(data, cases)
        result["build"] = build
        result["disk_kb_per_reference"] = disk_bytes(data) / 1024 / (build["references"] + len(split.flagged) - len(prepared.refused))
        results[size] = result
        print(f"[bench] scale: {size:,} checked: recall {result['score']['overall']:.3f}, "
              f"p50 {result['ms']['p50']:.0f} ms, rss {result['rss_mb']:.0f} MB", flush=True)
    section.data["sizes"] = {str(k): v for k, v in results.items()}
    section.rows += rows(baseline, results)
    return section


def sample(cases: list[heldout.Case], total: int) -> list[heldout.Case]:
    """Up to `total` cases, the same number per edit and per side (flagged, distractor): every edit
    is measured, and a 10k check at ~2 s stays within minutes."""
    edits_seen = list(dict.fromkeys(c.edit for c in cases))
    per_group = max(1, total // (2 * len(edits_seen)))
    rng = random.Random(SEED)
    picked = []
    for edit in edits_seen:
        for flagged in (True, False):
            group = [c for c in cases if c.edit == edit and c.flagged == flagged]
            picked += rng.sample(group, min(per_group, len(group)))
    return picked


# -- banks ----------------------------------------------------------------------------------------------


def cache_key(flagged: list, sources: list) -> str:
    import moderate
    import moderate.signals

    digest = hashlib.sha256(f"{corpus.fingerprint(flagged)}:{corpus.fingerprint(sources)}:{FILLER_RECIPE}:"
                            f"{FOLDER_SIZE}:{moderate.__version__}".encode())
    for file in sorted(Path(moderate.signals.__file__).parent.rglob("*.py")):  # how references are computed
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def grown_bank(root: Path, size: int, flagged_data: Path, sources: list) -> tuple[Path, dict]:
    """The data folder of the flagged bank plus `size` filler references, built or taken from cache."""
    target = root / str(size)
    if _valid(target, size):
        build = json.loads((target / "build.json").read_text())
        build["cached"] = True
        return target / "data", build
    shutil.rmtree(target, ignore_errors=True)
    smaller = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit() and int(p.name) < size
                      and _valid(p, int(p.name))), reverse=True)
    target.mkdir(parents=True)
    if smaller:  # grow the largest cached bank, as a team adds to the one it has
        start = smaller[0]
        shutil.copytree(root / str(start) / "data", target / "data")
        folders = json.loads((root / str(start) / "build.json").read_text())["folders"]
    else:
        start, folders = 0, []
        shutil.copytree(flagged_data, target / "data")
        run([moderate_script(), "--data-dir", str(target / "data"), "bank", "create", GROWN, "--action", "block"])
    for first in range(start, size, FOLDER_SIZE):
        count = min(FOLDER_SIZE, size - first)
        with tempfile.TemporaryDirectory(dir=OUT) as tmp:
            for number in range(first, first + count):
                corpus.filler_crop(sources, number).save(Path(tmp) / f"filler-{number:06d}.jpg", quality=90)
            wall, done = run([moderate_script(), "--data-dir", str(target / "data"), "bank", "add", GROWN, tmp,
                              "--skip-invalid", "--json"])
        added = len(json.loads(done.stdout.strip().splitlines()[-1])["added"])
        folders.append({"first": first, "images": count, "added": added, "seconds": wall})
        print(f"[bench] scale: bank add {first + count:,}/{size:,}: {count / wall:.1f} images/s", flush=True)
    added = [f for f in folders if f["first"] >= start]
    build = {"size": size, "folders": folders, "grown_from": start, "references": sum(f["added"] for f in folders),
             "images_per_s": sum(f["images"] for f in added) / sum(f["seconds"] for f in added),
             "images_per_s_last_folder": folders[-1]["images"] / folders[-1]["seconds"]}
    (target / "build.json").write_text(json.dumps(build, indent=1) + "\n")
    return target / "data", build | {"cached": False}


def _valid(target: Path, size: int) -> bool:
    """A finished build whose bank opens and holds the filler references it added (a few crops of
    `size` may have been refused as too flat)."""
    if not (target / "build.json").exists():
        return False
    from moderate import Engine

    try:
        expected = json.loads((target / "build.json").read_text())["references"]
        return sum(1 for _ in Engine(target / "data", audit=False).banks.references(GROWN)) == expected
    except Exception as exc:  # noqa: BLE001 - any failure to open means: build it again
        print(f"[bench] scale: cached bank {target} unusable ({exc}); building it again", flush=True)
        return False


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk under `folder` (sparse files count as what they use)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


# -- checking in a child process --------------------------------------------------------------------------


def check_in_child(data: Path, cases: list[heldout.Case]) -> dict:
    """Score, ms per check and peak RSS of a fresh process checking `cases` against `data` on one core."""
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        todo, done = Path(tmp) / "cases.json", Path(tmp) / "records.json"
        todo.write_text(json.dumps([str(c.path) for c in cases]))
        run([sys.executable, "-m", "bench.scale", str(data), str(todo), str(done)])
        out = json.loads(done.read_text())
    return {"score": heldout.score(cases, out["records"]), "ms": out["ms"], "rss_mb": out["rss_mb"],
            "rss_mb_loaded": out["rss_mb_loaded"]}


def _child(data: str, todo: str, done: str) -> None:
    # One core, as the latencies are: the first, as `heldout` takes the last, so the two
    # sections can run side by side without sharing one.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from moderate import Engine

    paths = json.loads(Path(todo).read_text())
    engine = Engine(data, policy=heldout.DEFAULT_POLICY, audit=False)
    engine.check(paths[0])  # load the index and OpenCV once, outside the timings
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    records, times = [], []
    for path in paths:
        start = time.perf_counter()
        verdict = engine.check(path)
        times.append((time.perf_counter() - start) * 1000)
        records.append(heldout.record(verdict))
    p50, p99 = np.percentile(times, [50, 99])
    Path(done).write_text(json.dumps({
        "records": records, "ms": {"p50": float(p50), "p99": float(p99), "n": len(times)},
        "rss_mb_loaded": loaded, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# -- table ----------------------------------------------------------------------------------------------


def rows(baseline: dict, results: dict) -> list[Row]:
    sizes = sorted(results)
    label = " | ".join(f"{s // 1000:,}k" if s >= 1000 else str(s) for s in sizes)
    base = baseline["score"]
    out = []
    for edit in edits.HELD_OUT_EDITS:
        values = [results[s]["score"]["per_edit"].get(edit, 0.0) for s in sizes]
        b = base["per_edit"].get(edit, 0.0)
        out.append(Row("scale", f"recall {edit} at {label}", " | ".join(f"{v:.2f}" for v in values), f"{b:.2f} bare",
                       "", f">= bare - {TARGETS['recall_drop']}", values[-1] >= b - TARGETS["recall_drop"]))
    overall = [results[s]["score"]["overall"] for s in sizes]
    out.append(Row("scale", f"recall overall at {label}", " | ".join(f"{v:.3f}" for v in overall),
                   f"{base['overall']:.3f} bare", f"{overall[-1] / base['overall']:.2f}x" if base["overall"] else "",
                   f">= bare - {TARGETS['recall_drop']}", overall[-1] >= base["overall"] - TARGETS["recall_drop"]))
    flagged = [results[s]["score"]["distractors_flagged"] for s in sizes]
    out.append(Row("scale", f"distractors flagged at {label} (review included)", " | ".join(map(str, flagged)),
                   f"{base['distractors_flagged']} bare", "", "0", flagged[-1] == 0))
    wrong = [results[s]["score"]["wrong_reference"] for s in sizes]
    out.append(Row("scale", f"positives matched to a wrong reference at {label}", " | ".join(map(str, wrong)),
                   f"{base['wrong_reference']} bare", "", "0", wrong[-1] == 0))
    for stat, target in (("p50", TARGETS["p50_ms"]), ("p99", TARGETS["p99_ms"])):
        values = [results[s]["ms"][stat] for s in sizes]
        out.append(Row("scale", f"check ms {stat}, one core, at {label}", " | ".join(f"{v:.0f}" for v in values),
                       f"{baseline['ms'][stat]:.0f} bare", f"{baseline['ms'][stat] / values[-1]:.2f}x",
                       f"< {target:.0f}", values[-1] < target))
    rss = [results[s]["rss_mb"] for s in sizes]
    out.append(Row("scale", f"checking process peak RSS MB at {label}", " | ".join(f"{v:,.0f}" for v in rss),
                   f"{baseline['rss_mb']:,.0f} bare", f"{baseline['rss_mb'] / rss[-1]:.2f}x", f"< {TARGETS['rss_mb']:,.0f}",
                   rss[-1] < TARGETS["rss_mb"]))
    disk = [results[s]["disk_kb_per_reference"] for s in sizes]
    out.append(Row("scale", f"disk kB per reference at {label}", " | ".join(f"{v:.1f}" for v in disk),
                   f"{baseline['disk_kb_per_reference']:.1f} bare", "", f"<= {TARGETS['disk_kb']:.0f}",
                   disk[-1] <= TARGETS["disk_kb"]))
    rates = [results[s]["build"]["images_per_s"] for s in sizes]
    cached = ["cached" if results[s]["build"].get("cached") else "built" for s in sizes]
    out.append(Row("scale", f"bank add images/s (each size's new folders) at {label}",
                   " | ".join(f"{v:.1f} ({c})" for v, c in zip(rates, cached)), "", "",
                   f">= {TARGETS['add_per_s']:.0f}", rates[-1] >= TARGETS["add_per_s"]))
    out.append(Row("scale", f"bank add images/s, last folder at {label}",
                   " | ".join(f"{results[s]['build']['images_per_s_last_folder']:.1f}" for s in sizes)))
    out.append(Row("scale", f"filler references bank add took at {label} (flat crops are refused)",
                   " | ".join(f"{results[s]['build']['references']:,}" for s in sizes)))
    if sizes[-1] < 100_000:
        out.append(Row("scale", "note", f"targets are for 100,000 references; largest measured here: {sizes[-1]:,}"))
    return out


if __name__ == "__main__":  # the child of `check_in_child`: DATA CASES_JSON OUT_JSON
    _child(*sys.argv[1:4])
