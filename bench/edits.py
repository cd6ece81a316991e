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
        found.append(Photo(name, at_base(Image.fromarray(np.asarray(array)))))
    for file in OPENCV_PHOTOS:
        folder = next((d for d in OPENCV_DIRS if (d / file).is_file()), None)
        if folder is not None:
            with Image.open(folder / file) as image:
                found.append(Photo(Path(file).stem, at_base(image)))
    random.Random(SEED).shuffle(found)
    return found[:limit] if limit else found


def split(all_photos: list[Photo]) -> tuple[list[Photo], list[Photo]]:
    """(flagged, distractors): alternating over the shuffled photos."""
    return all_photos[0::2], all_photos[1::2]


def at_base(image: Image.Image) -> Image.Image:
    """Upright RGB at BASE px on the longest side (transparent pixels over white, as a viewer shows them)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    image = image.convert("RGB")
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


# -- edits uploads carry that EDITS lacks (issue #11), for the held-out evaluation ---------------------

COMBO_QUALITY = 50  # a meme saved again by a messaging app


def _keystone(image, rng, backgrounds):
    """A photo of a screen or print taken at an angle: one side 12-20% shorter, on a dark surround."""
    w, h = image.size
    inset = rng.uniform(0.12, 0.20)
    # Corners of the picture in the output, clockwise from top left; the short side is picked at random.
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    side = rng.randrange(4)
    a, b = side, (side + 1) % 4
    (ax, ay), (bx, by) = corners[a], corners[b]
    corners[a] = (ax + (bx - ax) * inset / 2, ay + (by - ay) * inset / 2)
    corners[b] = (bx + (ax - bx) * inset / 2, by + (ay - by) * inset / 2)
    coefficients = _perspective([(0, 0), (w, 0), (w, h), (0, h)], corners)
    surround = Image.new("RGB", image.size, (30, 30, 30))
    warped = image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)
    mask = Image.new("L", image.size, 255).transform(image.size, Image.Transform.PERSPECTIVE, coefficients)
    surround.paste(warped, (0, 0), mask)
    return surround


def _perspective(source: list, target: list) -> list[float]:
    """Pillow's PERSPECTIVE coefficients mapping output points `target` back to input points `source`."""
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    return np.linalg.solve(np.asarray(rows, float), np.asarray(values, float)).tolist()


def _screenshot(image, rng, backgrounds):
    """The picture as a phone or desktop app shows it: window chrome, a sidebar, text and buttons around."""
    width, height = 1280, 800
    dark = rng.random() < 0.5
    ui, ink, panel = ((32, 33, 36), (220, 220, 220), (45, 46, 50)) if dark else ((246, 246, 246), (40, 40, 40), (228, 228, 230))
    shot = Image.new("RGB", (width, height), ui)
    draw = ImageDraw.Draw(shot)
    draw.rectangle((0, 0, width, 36), fill=panel)  # title bar with its three buttons and a title
    for i, colour in enumerate(((237, 94, 90), (244, 190, 79), (98, 197, 84))):
        draw.ellipse((14 + 22 * i, 11, 28 + 22 * i, 25), fill=colour)
    font = ImageFont.load_default(size=15)
    draw.text((width // 2 - 60, 10), "Photos - IMG_2041.jpg", font=font, fill=ink)
    sidebar = rng.randint(200, 280)
    draw.rectangle((0, 36, sidebar, height), fill=panel)
    for i, label in enumerate(("Library", "Albums", "Shared", "Favourites", "Recently deleted", "Imports")):
        draw.text((20, 60 + 34 * i), label, font=font, fill=ink)
    # The picture fills most of the content area, fitted inside it.
    box_w, box_h = width - sidebar - 60, height - 36 - 110
    scale = min(box_w / image.width, box_h / image.height)
    shown = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    x = sidebar + 30 + (box_w - shown.width) // 2
    y = 36 + 20 + (box_h - shown.height) // 2
    shot.paste(shown, (x, y))
    draw.text((sidebar + 30, height - 70), "12 March, 14:02 - 4032 x 3024 - 2.4 MB", font=font, fill=ink)
    for i, label in enumerate(("Share", "Edit", "Delete")):
        draw.rounded_rectangle((width - 300 + 95 * i, height - 78, width - 220 + 95 * i, height - 48), 8, outline=ink)
        draw.text((width - 290 + 95 * i, height - 72), label, font=font, fill=ink)
    return shot


def _caption_bar(image, rng, backgrounds):
    """A white bar above the picture with a caption in black, as reposting apps add."""
    bar = max(40, image.height // 5)
    out = Image.new("RGB", (image.width, image.height + bar), "white")
    out.paste(image, (0, bar))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(12, bar // 3))
    draw.text((bar // 4, bar // 3), "me explaining this to my friends at 3am", font=font, fill="black")
    return out


def _rotate_crop(image, rng, backgrounds):
    """A small rotation (3-8 degrees either way), then the largest centred crop of the same shape with
    no blank corner: what straightening a photo in an editor gives."""
    angle = rng.uniform(3, 8) * rng.choice([-1, 1])
    w, h = image.size
    theta = np.radians(abs(angle))
    keep = min(w / (w * np.cos(theta) + h * np.sin(theta)), h / (w * np.sin(theta) + h * np.cos(theta)))
    turned = image.rotate(angle, Image.Resampling.BICUBIC)
    cw, ch = round(w * keep), round(h * keep)
    return turned.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))


def _off_centre(image, rng, backgrounds):
    """40-50% of the area, at a random place and a slightly different shape: a user's own framing."""
    area, aspect = rng.uniform(0.40, 0.50), rng.uniform(0.8, 1.25)
    w = min(image.width, round(image.width * (area * aspect) ** 0.5))
    h = min(image.height, round(image.width * image.height * area / w))
    x, y = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
    return image.crop((x, y, x + w, y + h))


def _combo(image, rng, backgrounds):
    """Scaled to 60%, meme captions, a 10% border; saved at COMBO_QUALITY (see `quality`)."""
    return _border(_caption(_scale(0.6)(image, rng, backgrounds), rng, backgrounds), rng, backgrounds)


UPLOAD_EDITS: dict[str, Callable] = {
    "keystone": _keystone,
    "screenshot": _screenshot,
    "caption_bar": _caption_bar,
    "rotate_crop": _rotate_crop,
    "jpeg_q15": lambda image, rng, bg: image,
    "crop_40_50_offcentre": _off_centre,
    "rotate_270": lambda image, rng, bg: image.transpose(Image.Transpose.ROTATE_270),
    "combo_scale_text_border_jpeg": _combo,
}
# The held-out evaluation's edits: every edit above (pasted_mirrored, rotate_90 and flip_horizontal
# are there already) and the ones uploads carry besides.
HELD_OUT_EDITS: dict[str, Callable] = {**EDITS, **UPLOAD_EDITS}


def queries(flagged: list[Photo], distractors: list[Photo], folder: Path, edits: list[str] | None = None,
            table: dict[str, Callable] | None = None, backgrounds: list[Photo] | None = None) -> list[Query]:
    """Every edit of every photo, saved as JPEG q90 (the `jpeg_qN` edits at quality N, see `quality`).

    `table` is the set of edits (EDITS unless given); `backgrounds` the pictures photos are pasted
    into (the distractors unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = table or EDITS
    rng = random.Random(SEED)
    out = []
    for photo, is_flagged in [(p, True) for p in flagged] + [(p, False) for p in distractors]:
        others = [d for d in (backgrounds or distractors) if d.name != photo.name]  # pasted into a picture it is not
        for edit in edits or table:
            image = table[edit](photo.image, rng, others)
            path = folder / f"{'flagged' if is_flagged else 'distractor'}-{photo.name}-{edit}.jpg"
            image.save(path, "JPEG", quality=quality(edit))
            out.append(Query(path, photo.name, edit, is_flagged))
    return out


def quality(edit: str) -> int:
    """The JPEG quality an edit is saved at: N for `jpeg_qN`, `combo_*` as a re-shared meme, else 90."""
    if edit.startswith("jpeg_q"):
        return int(edit.removeprefix("jpeg_q"))
    return COMBO_QUALITY if edit.startswith("combo") else 90
