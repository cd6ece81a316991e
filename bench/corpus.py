"""Corpora of the held-out evaluation and the scale section: pictures grouped into series.

A *series* is one picture and its siblings: other photos of the same scene (stereo pairs, a second
shot) or other versions of one wallpaper (light and dark). A series is never split: a flagged series
gives one flagged reference, and its siblings are *hard negatives* (distractors that look alike);
every picture of a distractor series is a distractor.

- Tuning split: scikit-image and Debian opencv-doc photos (`bench/edits.py`), with the partner views
  `edits.py` leaves out brought back as siblings.
- Held-out split: Debian wallpapers and illustrations (gnome-backgrounds, mate-backgrounds,
  ukui-wallpapers): gradients, flat areas and repeated patterns, unlike the tuning photos.
- Filler for the scale section: crops of pictures unrelated to the held-out split (plasma and
  lomiri wallpapers, and every tuning photo).

Debian packages are fetched with `apt-get download` and unpacked with `dpkg -x` under
`bench/out/debian` (no installation, no dependencies); SVG wallpapers are rasterized with
`rsvg-convert` (Debian's librsvg2-bin), and skipped with a note when it is missing.
`python -m bench.corpus` fetches everything, as `make bench-data` does.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import edits
from .common import OUT, SEED
from .edits import Photo

DEBIAN = OUT / "debian"
HELD_OUT_PACKAGES = ("gnome-backgrounds", "mate-backgrounds", "ukui-wallpapers")
FILLER_PACKAGES = ("plasma-workspace-wallpapers", "lomiri-wallpapers")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".svg")
# Series of the tuning split: the flagged member first, then its siblings (other views of the scene).
OPENCV_SIBLINGS = {
    "aero1.jpg": ("aero3.jpg",), "aloeL.jpg": ("aloeR.jpg",), "basketball1.png": ("basketball2.png",),
    "graf1.png": ("graf3.png",), "leuvenA.jpg": ("leuvenB.jpg",), "rubberwhale1.png": ("rubberwhale2.png",),
    "left.jpg": ("right.jpg",),
}
# Held-out files that are the same picture at other sizes: not a second item.
RESIZED_COPIES = ("Elephants_3840x2160.jpg", "Elephants_5640x3172.jpg")
FILLER_MIN_QUALITY = 60  # PDQ quality of a filler crop: above the bank's 50, so its JPEG still gets in


@dataclass(frozen=True)
class Series:
    name: str
    source: str  # package or library it comes from
    members: tuple[Photo, ...]  # the first is the one flagged when the series is


@dataclass(frozen=True)
class Split:
    """Flagged references, and distractors of two kinds: siblings of flagged pictures and unrelated ones."""

    flagged: list[Photo]
    siblings: list[Photo]
    unrelated: list[Photo]
    source: dict[str, str]  # photo name -> package or library

    @property
    def distractors(self) -> list[Photo]:
        return self.siblings + self.unrelated


def split(series: list[Series]) -> Split:
    """Alternating over the series in a fixed shuffle, so both sides mix sources."""
    order = sorted(series, key=lambda s: s.name)
    random.Random(SEED).shuffle(order)
    flagged, siblings, unrelated = [], [], []
    for i, s in enumerate(order):
        if i % 2 == 0:
            flagged.append(s.members[0])
            siblings.extend(s.members[1:])
        else:
            unrelated.extend(s.members)
    return Split(flagged, siblings, unrelated, {p.name: s.source for s in series for p in s.members})


# -- tuning split -------------------------------------------------------------------------------------


def tuning_series() -> list[Series]:
    from skimage import data

    out = []
    for photo in edits.photos():
        members = [photo]
        if photo.name == "stereo_motorcycle":  # the other view of the stereo pair
            members.append(Photo("stereo_motorcycle_right", edits.at_base(Image.fromarray(data.stereo_motorcycle()[1]))))
        for partner in OPENCV_SIBLINGS.get(_opencv_file(photo.name) or "", ()):
            folder = next((d for d in edits.OPENCV_DIRS if (d / partner).is_file()), None)
            if folder is not None:
                with Image.open(folder / partner) as image:
                    members.append(Photo(Path(partner).stem, edits.at_base(image)))
        out.append(Series(photo.name, "opencv-doc" if _opencv_file(photo.name) else "scikit-image", tuple(members)))
    return out


def _opencv_file(name: str) -> str | None:
    return next((f for f in edits.OPENCV_PHOTOS if Path(f).stem == name), None)


# -- held-out split -----------------------------------------------------------------------------------


def held_out_series() -> list[Series]:
    """Every picture of HELD_OUT_PACKAGES, grouped into series by name."""
    out: dict[str, list[Photo]] = {}
    source: dict[str, str] = {}
    for package in HELD_OUT_PACKAGES:
        for file in package_images(package):
            if file.name in RESIZED_COPIES:
                continue
            stem = file.name.removesuffix(".svg.png") if file.name.endswith(".svg.png") else file.stem
            photo = Photo(f"{package.split('-')[0]}-{stem}", edits.at_base(_open(file)))
            if _blank(photo):
                continue
            key = f"{package}:{_series_key(stem)}"
            out.setdefault(key, []).append(photo)
            source[key] = package
    # Light before dark, so a flagged series flags its light version and its dark one is the sibling.
    return [Series(key, source[key], tuple(sorted(members, key=lambda p: (_is_dark(p.name), p.name))))
            for key, members in sorted(out.items())]


def _blank(photo: Photo) -> bool:
    """One flat colour as a viewer shows it: MATE's abstract wallpapers are white shapes in an
    alpha channel, meant to be laid over a desktop colour; over white they are blank, all alike,
    and every copy of one is, rightly, a pixel-exact copy of the others."""
    return float(np.asarray(photo.image).std()) < 1.0


def _series_key(stem: str) -> str:
    """gnome's adwaita-l/adwaita-d, MATE-Stripes-Dark/Light, Ubuntu-Mate-Warm-no-logo and its colours."""
    lower = stem.lower()
    if lower.startswith("ubuntu-mate-") and lower.endswith("-no-logo"):
        return "ubuntu-mate-no-logo"
    for suffix in ("-l", "-d", "-light", "-dark"):
        if lower.endswith(suffix):
            return lower.removesuffix(suffix)
    return lower


def _is_dark(name: str) -> bool:
    return name.lower().endswith(("-d", "-dark")) or "dark" in name.lower()


# -- filler of the scale section ------------------------------------------------------------------


def filler_sources() -> list[Photo]:
    """Pictures unrelated to the held-out split: FILLER_PACKAGES' wallpapers and every tuning photo."""
    found = []
    for package in FILLER_PACKAGES:
        for file in package_images(package):
            if file.stem != "screenshot":  # plasma's previews of its own wallpapers
                found.append(Photo(f"{package.split('-')[0]}-{file.parent.parent.parent.name}-{file.parent.name}-{file.stem}",
                                   edits.at_base(_open(file))))
    found += [p for s in tuning_series() for p in s.members]
    return found


def filler_crop(sources: list[Photo], number: int) -> Image.Image:
    """Filler picture `number`: a crop of 15-80% of a source's area at a random place, shown at
    320-1024 px on its longest side, redrawn until PDQ finds enough detail in it (`bank add` refuses
    flat pictures). The same number always gives the same picture."""
    from moderate.signals import PDQ

    rng = random.Random(f"{SEED}:{number}")
    photo = sources[number % len(sources)].image
    for _ in range(20):
        area, aspect = rng.uniform(0.15, 0.80), rng.uniform(0.6, 1.6)
        w = max(32, min(photo.width, round((photo.width * photo.height * area * aspect) ** 0.5)))
        h = max(32, min(photo.height, round(photo.width * photo.height * area / w)))
        x, y = rng.randint(0, photo.width - w), rng.randint(0, photo.height - h)
        crop = photo.crop((x, y, x + w, y + h))
        longest = rng.randint(320, 1024)
        scale = longest / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.LANCZOS)
        if PDQ.compute(np.asarray(crop))[0].quality >= FILLER_MIN_QUALITY:
            break
    return crop


def fingerprint(photos: list[Photo]) -> str:
    """A short digest of pictures' names and pixels: what a cache of anything made from them keys on."""
    digest = hashlib.sha256()
    for photo in photos:
        digest.update(photo.name.encode())
        digest.update(np.asarray(photo.image.resize((16, 16))).tobytes())
    return digest.hexdigest()[:16]


# -- Debian packages ------------------------------------------------------------------------------


def package_images(package: str) -> list[Path]:
    """The image files of a Debian package (installed, or downloaded and unpacked), SVGs rasterized."""
    root = _unpacked(package)
    if root is None:
        return []
    files = []
    for file in sorted(root.rglob("*")):
        if (file.suffix.lower() not in IMAGE_SUFFIXES or not file.is_file() or "/doc/" in file.as_posix()
                or file.name.endswith(".svg.png")):  # our own rasterization, listed through its SVG
            continue
        if file.suffix.lower() == ".svg":
            file = _rasterized(file)
            if file is None:
                continue
        files.append(file)
    return _largest_per_folder(files) if package == "plasma-workspace-wallpapers" else files


def _largest_per_folder(files: list[Path]) -> list[Path]:
    """Plasma ships each wallpaper at several sizes in one folder: keep the largest file of each."""
    best: dict[Path, Path] = {}
    for file in files:
        if file.parent not in best or file.stat().st_size > best[file.parent].stat().st_size:
            best[file.parent] = file
    return sorted(best.values())


def _unpacked(package: str) -> Path | None:
    target = DEBIAN / package
    if (target / ".done").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            print(f"note: {package} unavailable (apt-get download: {done.stderr.strip()[-200:]}); "
                  f"run `apt-get update` first", file=sys.stderr)
            return None
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(debs[0]), str(target)], check=True)
    (target / ".done").write_text(debs[0].name + "\n")
    return target


def _rasterized(svg: Path) -> Path | None:
    """`svg` rendered to PNG 2048 px wide beside it (cached), or None without rsvg-convert."""
    png = svg.with_suffix(".svg.png")
    if png.exists():
        return png
    if shutil.which("rsvg-convert") is None:
        print(f"note: rsvg-convert (Debian's librsvg2-bin) is missing; {svg.name} is skipped", file=sys.stderr)
        return None
    subprocess.run(["rsvg-convert", "--width", "2048", "--keep-aspect-ratio", str(svg), "-o", str(png)], check=True)
    return png


def _open(file: Path) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = None  # 5640x3172 wallpapers are over Pillow's bomb warning, and trusted
    image = Image.open(file)
    image.draft("RGB", (2 * edits.BASE, 2 * edits.BASE))  # JPEG: decode at a reduced size, still above BASE
    return image


if __name__ == "__main__":  # `make bench-data`: fetch and unpack every package the corpora use
    for name in HELD_OUT_PACKAGES + FILLER_PACKAGES:
        print(f"{name}: {len(package_images(name))} pictures")
