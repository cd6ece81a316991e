"""Cost of signing and verifying an image, against the work no signature scheme can avoid.

Photos: scikit-image's `coffee`, cropped to 4:3 and resized with Lanczos to 1152x864 (1 MP) and
4000x3000 (12 MP), saved as JPEG quality 90 and as PNG. For each, the median wall time of several
calls (after one untimed warm-up round; the order of the methods rotates between rounds) of:
- `Signatures.sign(..., digest_type=T, out=...)` and `Engine.verify(signed)` for the own scheme, with
  `pixels-v1` (JPEG and PNG) and `jpeg-scan-v1` (JPEG only), the signature embedded in the image;
- `Signatures.sign_c2pa(..., out=...)` and `Engine.verify(signed)` for C2PA, with a test PKI made as
  `tests/pki.py` makes it and its root installed as the only trust anchor. `sign_c2pa` also reads
  the signed output back (a C2PA verify and a pixels-v1 digest for its record), so the SDK's
  `Builder.sign` alone is reported too, for scale.
Every verify must end `verified` (a fresh data folder, an own key generated and trusted).

Baselines, in the same rounds on the same files: SHA-256 over the file bytes (read + hashlib), the
floor of any byte-bound digest (`jpeg-scan-v1`, C2PA's data hash), and a full Pillow decode
(`Image.open(path).load()`), the floor of any pixel digest (`pixels-v1`). The ratio is
baseline/moderate, as elsewhere in the table: 0.50x means twice the unavoidable work. For scale,
a decode followed by SHA-256 over the decoded pixels (`tobytes()`) is reported too: what a pixel
digest costs at best when the hash is over raw pixels, as `pixels-v1`'s is.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import photos
from .common import Row, Scale, Section, fmt_ms, fmt_ratio, timed_cpu

PHOTO = "coffee"
SIZES = {"1 MP": (1152, 864), "12 MP": (4000, 3000)}
FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
JPEG_QUALITY = 90
KEY, SIGNER = "bench", "Bench Signer"
PKI_ORG = "Bench News"
# scheme -> (baseline it is measured against, formats it applies to)
SCHEMES = {
    "pixels-v1": ("decode", ("JPEG", "PNG")),
    "jpeg-scan-v1": ("sha256", ("JPEG",)),
    "c2pa": ("sha256", ("JPEG", "PNG")),
}
BASELINE_LABEL = {"sha256": "sha256 of file", "decode": "Pillow decode"}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pillow_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def decode_and_hash_pixels(path: Path) -> str:
    with Image.open(path) as image:
        image.load()
        return hashlib.sha256(image.tobytes()).hexdigest()


def run_section(scale: Scale) -> Section:
    from moderate import Engine

    from tests.pki import make_pki  # the repository root is on sys.path under `python -m bench`

    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        folder = Path(tmp)
        engine = Engine(data_dir=folder / "data")
        engine.keys.generate(KEY, signer=SIGNER)
        engine.keys.trust(engine.keys.dir / f"{KEY}.pub", SIGNER)
        pki = make_pki(folder / "pki", PKI_ORG)
        engine.signatures.credentials.set_trust_anchors(pki["root"])
        (folder / "signed").mkdir()
        cases = [_measure(engine, pki, image, folder / "signed", scale.provenance_runs)
                 for image in _images(folder / "images")]
    data = {"photo": PHOTO, "runs": scale.provenance_runs, "jpeg_quality": JPEG_QUALITY, "cases": cases}
    return Section("provenance", _rows(data), data)


def _images(folder: Path) -> list[dict]:
    folder.mkdir()
    original = Image.fromarray(np.asarray(photos._rgb(photos.PHOTOS[PHOTO]())))
    out = []
    for size, (width, height) in SIZES.items():
        picture = photos._cover(original, width, height)
        for fmt, suffix in FORMATS.items():
            path = folder / f"{PHOTO}-{width}x{height}{suffix}"
            picture.save(path, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
            out.append({"path": path, "size": size, "format": fmt, "width": width, "height": height,
                        "bytes": path.stat().st_size})
    return out


def _methods(engine, pki: dict, image: dict, signed_dir: Path) -> dict[str, Callable[[], object]]:
    source: Path = image["path"]
    methods: dict[str, Callable[[], object]] = {
        "sha256": lambda: sha256_file(source),
        "decode": lambda: pillow_decode(source),
        "decode+sha256 pixels": lambda: decode_and_hash_pixels(source),
    }
    for scheme, (_, formats) in SCHEMES.items():
        if image["format"] not in formats:
            continue
        target = signed_dir / f"{source.stem}.{scheme}{source.suffix}"
        if scheme == "c2pa":
            methods["sign c2pa"] = _sign_c2pa(engine, pki, source, target)
            methods["c2pa sdk sign"] = _sdk_sign(engine, pki, image)
        else:
            methods[f"sign {scheme}"] = _sign(engine, source, target, scheme)
        methods[f"verify {scheme}"] = _verify(engine, target, scheme)
    return methods


def _sign(engine, source: Path, target: Path, digest_type: str) -> Callable[[], object]:
    def sign():
        signed = engine.signatures.sign(source, KEY, out=target, digest_type=digest_type)
        assert signed.record["digest_type"] == digest_type, signed.record
        return signed

    return sign


def _sign_c2pa(engine, pki: dict, source: Path, target: Path) -> Callable[[], object]:
    def sign():
        signed = engine.signatures.sign_c2pa(source, pki["chain"], pki["key"], out=target)
        assert signed.record["state"] == "verified", signed.record
        return signed

    return sign


def _sdk_sign(engine, pki: dict, image: dict) -> Callable[[], object]:
    """The SDK's embedding alone, on bytes already read: what `sign_c2pa` cannot avoid."""
    data = image["path"].read_bytes()

    def sign():
        return engine.signatures.credentials.sign(data, image["format"], pki["chain"], pki["key"], image["path"].name)

    return sign


def _verify(engine, target: Path, scheme: str) -> Callable[[], object]:
    def verify():
        found = engine.verify(target)
        if found.state != "verified" or found.digest_type != scheme:
            raise AssertionError(f"verify {target.name}: {found.state} ({found.digest_type}): {found.detail} {found.codes}")
        return found

    return verify


def _measure(engine, pki: dict, image: dict, signed_dir: Path, runs: int) -> dict:
    """Median wall and CPU ms per method over `runs` rounds after a warm-up round in fixed order."""
    methods = _methods(engine, pki, image, signed_dir)
    names = list(methods)
    for name in names:  # warm-up: imports, SDK set-up, page cache; signs before verifies
        methods[name]()
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu, _ = timed_cpu(methods[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    signed_bytes = {p.name: p.stat().st_size for p in signed_dir.glob(f"{image['path'].stem}.*")}
    return {
        "file": image["path"].name, "size": image["size"], "format": image["format"], "width": image["width"],
        "height": image["height"], "bytes": image["bytes"], "signed_bytes": signed_bytes,
        "median_ms": {n: float(np.median(v)) * 1000 for n, v in walls.items()},
        "median_cpu_ms": {n: float(np.median(v)) * 1000 for n, v in cpus.items()},
        "walls_ms": {n: [x * 1000 for x in v] for n, v in walls.items()},
    }


def _rows(data: dict) -> list[Row]:
    rows = []
    for case in data["cases"]:
        ms = case["median_ms"]
        label = f"{case['format']} q{JPEG_QUALITY}" if case["format"] == "JPEG" else case["format"]
        rows.append(Row("provenance", f"{case['size']} {label} {case['width']}x{case['height']} (file; median of {data['runs']})",
                        _size(case["bytes"]), f"sha256 {fmt_ms(ms['sha256'])}, decode {fmt_ms(ms['decode'])}"))
        for scheme, (baseline, formats) in SCHEMES.items():
            if case["format"] not in formats:
                continue
            base = ms[baseline]
            for op in ("sign", "verify"):
                value = ms[f"{op} {scheme}"]
                rows.append(Row("provenance", f"  {op} {scheme}", fmt_ms(value),
                                f"{BASELINE_LABEL[baseline]} {fmt_ms(base)}", fmt_ratio(base / value)))
            if scheme == "pixels-v1":
                floor = ms["decode+sha256 pixels"]
                rows.append(Row("provenance", "    decode + sha256 of pixels (floor)", fmt_ms(floor),
                                f"{BASELINE_LABEL[baseline]} {fmt_ms(base)}", fmt_ratio(base / floor)))
            if scheme == "c2pa":
                rows.append(Row("provenance", "    c2pa SDK Builder.sign alone", fmt_ms(ms["c2pa sdk sign"]),
                                f"{BASELINE_LABEL[baseline]} {fmt_ms(base)}", fmt_ratio(base / ms["c2pa sdk sign"])))
    return rows


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"
