"""The edited-copies corpus: real photos split into flagged and distractors, and the edits uploads carry.

Photos come from scikit-image's wheel and, when present, Debian's opencv-doc examples (installed,
or unpacked under `bench/out/opencv-doc`; `make bench-data` does that). Each photo is one item: a
second view of the same scene (stereo pairs, before/after shots) is left out rather than risk it
landing on the other side of the split. Every photo is brought to 1024 px on its longest side, the
size of a typical upload, and the split alternates over a fixed shuffle so both sides mix sources.

Edits follow what the issue lists and Thorn's perception benchmark measures: re-encoding, scaling,
crops (centred and off-centre), small and 90-degree rotations, mirroring, colour changes, blur,
noise, meme captions, borders, stretching, and the photo pasted at 30-50% scale into another picture.
Negative queries are the same edits of distractors, so a matcher that flags edits in general fails.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from .common import OUT, SEED

BASE = 1024
OPENCV_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"), OUT / "opencv-doc")
# One file per photographed scene; partner views (aloeR, graf3, leuvenB, ...) are left out.
OPENCV_PHOTOS = (
    "HappyFish.jpg", "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
    "box_in_scene.png", "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg",
    "left.jpg", "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png",
    "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "sudoku.png",
)
SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "stereo_motorcycle",
)


@dataclass(frozen=True)
class Photo:
    name: str
    image: Image.Image  # RGB, longest side BASE


@dataclass(frozen=True)
class Query:
    path: Path
    photo: str  # the photo the query was made from
    edit: str
    flagged: bool  # made from a flagged photo: it should be caught


def photos(limit: int | None = None) -> list[Photo]:
    """Every available photo at BASE px, in a fixed shuffled order."""
    from skimage import data

    found = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(data, name)()
        array = array[0] if isinstance(array, tuple) else array
        found.append(Photo(name, _base(Image.fromarray(np.asarray(array)))))
    for file in OPENCV_PHOTOS:
        folder = next((d for d in OPENCV_DIRS if (d / file).is_file()), None)
        if folder is not None:
            with Image.open(folder / file) as image:
                found.append(Photo(Path(file).stem, _base(image)))
    random.Random(SEED).shuffle(found)
    return found[:limit] if limit else found


def split(all_photos: list[Photo]) -> tuple[list[Photo], list[Photo]]:
    """(flagged, distractors): alternating over the shuffled photos."""
    return all_photos[0::2], all_photos[1::2]


def _base(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image).convert("RGB")
    scale = BASE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


# -- edits --------------------------------------------------------------------------------------------


def _scale(factor: float) -> Callable:
    return lambda image, rng, backgrounds: image.resize(
        (round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def _crop(area: float, centred: bool) -> Callable:
    def edit(image, rng, backgrounds):
        side = area ** 0.5
        w, h = round(image.width * side), round(image.height * side)
        if centred:
            x, y = (image.width - w) // 2, (image.height - h) // 2
        else:  # against a corner picked at random: the part a user keeps is rarely the middle
            x, y = rng.choice([0, image.width - w]), rng.choice([0, image.height - h])
        return image.crop((x, y, x + w, y + h))
    return edit


def _caption(image, rng, backgrounds):
    """Meme captions: white capitals with a black outline, top and bottom."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = max(12, image.height // 10)
    font = ImageFont.load_default(size=size)
    for text, y in (("WHEN THE UPLOAD", size // 4), ("GETS PAST MODERATION", image.height - size * 5 // 4)):
        width = draw.textlength(text, font=font)
        draw.text(((image.width - width) / 2, y), text, font=font, fill="white", stroke_width=max(2, size // 12),
                  stroke_fill="black")
    return out


def _border(image, rng, backgrounds):
    pad_x, pad_y = image.width // 10, image.height // 10
    return ImageOps.expand(image, border=(pad_x, pad_y, pad_x, pad_y), fill=rng.choice(["white", "black", (40, 40, 40)]))


def _pasted(image, rng, backgrounds):
    """The photo at 30-50% of the background's width, pasted somewhere into another picture."""
    background = rng.choice(backgrounds).image.copy()
    scale = rng.uniform(0.3, 0.5) * background.width / image.width
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    small = small.crop((0, 0, min(small.width, background.width), min(small.height, background.height)))
    x = rng.randint(0, background.width - small.width)
    y = rng.randint(0, background.height - small.height)
    background.paste(small, (x, y))
    return background


def _noise(image, rng, backgrounds):
    array = np.asarray(image, dtype=np.float32)
    noisy = array + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 12, array.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


EDITS: dict[str, Callable] = {
    "jpeg_q30": lambda image, rng, bg: image,  # the quality is the saving's (see `queries`)
    "jpeg_q70": lambda image, rng, bg: image,
    "scale_25": _scale(0.25),
    "scale_50": _scale(0.5),
    "scale_150": _scale(1.5),
    "crop_90_centre": _crop(0.9, True),
    "crop_90_corner": _crop(0.9, False),
    "crop_70_centre": _crop(0.7, True),
    "crop_70_corner": _crop(0.7, False),
    "crop_50_centre": _crop(0.5, True),
    "crop_50_corner": _crop(0.5, False),
    "rotate_5": lambda image, rng, bg: image.rotate(5, Image.Resampling.BICUBIC, expand=True),
    "rotate_90": lambda image, rng, bg: image.transpose(Image.Transpose.ROTATE_90),
    "flip_horizontal": lambda image, rng, bg: ImageOps.mirror(image),
    "grayscale": lambda image, rng, bg: ImageOps.grayscale(image).convert("RGB"),
    "brightness": lambda image, rng, bg: ImageEnhance.Brightness(image).enhance(1.35),
    "contrast": lambda image, rng, bg: ImageEnhance.Contrast(image).enhance(0.6),
    "saturation": lambda image, rng, bg: ImageEnhance.Color(image).enhance(1.8),
    "blur": lambda image, rng, bg: image.filter(ImageFilter.GaussianBlur(3)),
    "noise": _noise,
    "caption": _caption,
    "border_10": _border,
    "stretch_1.4": lambda image, rng, bg: image.resize((round(image.width * 1.4), image.height), Image.Resampling.LANCZOS),
    "pasted_30_50": _pasted,
    "pasted_mirrored": lambda image, rng, bg: _pasted(ImageOps.mirror(image), rng, bg),
}


def queries(flagged: list[Photo], distractors: list[Photo], folder: Path, edits: list[str] | None = None) -> list[Query]:
    """Every edit of every photo, saved as JPEG q90 (the `jpeg_qN` edits at quality N)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    out = []
    for photo, is_flagged in [(p, True) for p in flagged] + [(p, False) for p in distractors]:
        others = [d for d in distractors if d.name != photo.name]  # pasted into a picture it is not
        for edit in edits or EDITS:
            image = EDITS[edit](photo.image, rng, others)
            path = folder / f"{'flagged' if is_flagged else 'distractor'}-{photo.name}-{edit}.jpg"
            image.save(path, "JPEG", quality=int(edit.removeprefix("jpeg_q")) if edit.startswith("jpeg_q") else 90)
            out.append(Query(path, photo.name, edit, is_flagged))
    return out
