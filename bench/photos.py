"""The photo corpus of the throughput benchmark: real photos at realistic upload sizes.

scikit-image's bundled photos (no download) are resized with Lanczos to 1024 px and 2048 px on the
longest side and cropped to 4:3 and resized to 4000x3000 (a 12 MP phone photo), then saved as
JPEG quality 90, which is what uploads mostly are and where DCT-scaled decoding matters. Debian's
opencv-doc photos are added as they are when installed (or copied under `bench/out/opencv-doc`).

The originals of a few photos are written separately as PNG: they are the flagged references of the
bank the checks run against, so some checks match (block) and most do not (allow).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from .common import OUT

PHOTOS = {
    "astronaut": data.astronaut,
    "coffee": data.coffee,
    "chelsea": data.chelsea,
    "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
    "hubble": data.hubble_deep_field,
    "ihc": data.immunohistochemistry,
    "retina": data.retina,
}
FLAGGED = ("astronaut", "coffee", "rocket")
SIZES = ("1024px", "2048px", "4000x3000")
OPENCV_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"), OUT / "opencv-doc")
OPENCV_MIN_SIDE = 256  # skip icons, masks and tiny test patterns


@dataclass(frozen=True)
class Photo:
    path: Path
    name: str
    size: str  # size class: one of SIZES or "opencv-doc"
    width: int
    height: int
    bytes: int


def build(folder: Path, photos: int, opencv_photos: int) -> tuple[list[Photo], Path]:
    """Write the corpus into `folder/photos` and the flagged originals into `folder/flagged`."""
    out, flagged = folder / "photos", folder / "flagged"
    out.mkdir(parents=True)
    flagged.mkdir(parents=True)
    corpus: list[Photo] = []
    for name in list(PHOTOS)[:photos]:
        original = Image.fromarray(np.asarray(_rgb(PHOTOS[name]())))
        if name in FLAGGED:
            original.save(flagged / f"{name}.png")
        for size in SIZES:
            corpus.append(_save(resized(original, size), out / f"{name}-{size}.jpg", name, size))
    corpus.extend(_opencv_photos(out, opencv_photos))
    return corpus, flagged


def _rgb(array: np.ndarray) -> np.ndarray:
    return np.stack([array] * 3, axis=-1) if array.ndim == 2 else array[..., :3]


def resized(image: Image.Image, size: str) -> Image.Image:
    """`image` at one of SIZES."""
    if size == "4000x3000":
        return _cover(image, 4000, 3000)
    longest = int(size.removesuffix("px"))
    w, h = image.size
    scale = longest / max(w, h)
    return image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Crop the centre to the target's aspect ratio, then resize to exactly the target."""
    w, h = image.size
    if w * height > h * width:
        crop_w = h * width // height
        box = ((w - crop_w) // 2, 0, (w - crop_w) // 2 + crop_w, h)
    else:
        crop_h = w * height // width
        box = (0, (h - crop_h) // 2, w, (h - crop_h) // 2 + crop_h)
    return image.crop(box).resize((width, height), Image.Resampling.LANCZOS)


def _save(image: Image.Image, path: Path, name: str, size: str) -> Photo:
    image.save(path, quality=90)
    return Photo(path, name, size, image.width, image.height, path.stat().st_size)


def _opencv_photos(out: Path, limit: int) -> list[Photo]:
    """Debian opencv-doc photos, when present: copied as they are (real camera JPEGs and PNGs)."""
    found: list[Photo] = []
    for folder in OPENCV_DIRS:
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if len(found) >= limit:
                return found
            photo = _usable(file, out)
            if photo is not None and all(p.name != photo.name for p in found):
                found.append(photo)
    return found


def _usable(file: Path, out: Path) -> Photo | None:
    if file.suffix.lower() not in (".jpg", ".jpeg", ".png") or not file.is_file():
        return None
    try:
        with Image.open(file) as image:
            if image.mode not in ("RGB", "L") or min(image.size) < OPENCV_MIN_SIDE:
                return None
            width, height = image.size
    except (OSError, ValueError):
        return None
    target = out / f"opencv-{file.name}"
    shutil.copyfile(file, target)
    return Photo(target, file.stem, "opencv-doc", width, height, target.stat().st_size)
