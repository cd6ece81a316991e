"""Benchmarks of `moderate`, each measured against a baseline in the same run on the same inputs.

    python -m bench            # full run (< 15 min on 2 cores)
    python -m bench --quick    # smaller sizes (< 2 min), for a smoke test

Sections, one module each:
- `throughput`: images/s of `Engine.check_frames` (DCT-scaled decode + PDQ + lookup + policy) and of
  `moderate check DIR` as a subprocess, against bare full-decode PDQ and `imagehash.phash`.
- `lookup`: latency of the exact PDQ index (`PdqIndex.search`) against numpy brute force.
- `bank_import`: hashes/s of `banks.import_hashes` against Chroma's own `collection.add`.
- `startup`: wall time of `moderate --help` and of a one-image check, and which heavy modules a check
  imports (none of torch, transformers, onnxruntime, chromadb is expected).
- `provenance`: ms per sign and verify (own scheme with pixels-v1 and jpeg-scan-v1, and C2PA) of
  1 MP and 12 MP JPEG and PNG photos, against SHA-256 of the file and a full Pillow decode.
- `load`: a real `moderate serve` under 32 concurrent clients for 60 s (15 s with --quick), uploads
  being checked while moderators race for the review queue: requests/s and p50/p99 per kind, status
  codes, peak RSS and integrity of queue, decisions and audit log, against `GET /healthz` throughput.
- `hook`: the pre-commit hook's environment as `pre-commit install-hooks` builds it from the package
  index (installed MB, install seconds), against the 600 MB a hook may cost.
- `heldout`: bands tuned by code on photos (`bench/out/heldout/tuned.yaml`), then recall per edit,
  distractors flagged and wrong references on Debian wallpapers and illustrations, for the shipped
  default policy and the tuned one (`bench/heldout.py`, corpora in `bench/corpus.py`).
- `scale`: the held-out queries against banks grown to `--scale-sizes` filler references (cached in
  `bench/out/scale-cache`): recall, distractors, check p50/p99 on one core, RSS, disk per
  reference and `bank add` images/s, against the bare flagged bank.
- `hashlists`: exact PDQ lookups (radius 31 and 52) in 1M and 10M random codes with the index's
  multi-index tables against brute force, their build/load time and disk, a checking process's
  start-up and RSS, and `moderate bank import` hashes/s with where the time goes.

Ratios are printed as a table and written with every raw number to `bench/out/results.json`.
"""
