"""Write the demo's images: flagged photos, and an incoming folder of their edited copies and of
unrelated photos. All from scikit-image's bundled sample photos (no download)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data

FLAGGED = {"astronaut": data.astronaut, "coffee": data.coffee, "rocket": data.rocket}
UNRELATED = {"chelsea": data.chelsea, "motorcycle": lambda: data.stereo_motorcycle()[0], "hubble": data.hubble_deep_field}


def main(out: Path) -> None:
    (out / "flagged").mkdir(parents=True, exist_ok=True)
    (out / "incoming").mkdir(parents=True, exist_ok=True)
    for name, load in FLAGGED.items():
        image = Image.fromarray(load())
        image.save(out / "flagged" / f"{name}.png")
        w, h = image.size
        image.save(out / "incoming" / f"{name}-q30.jpg", quality=30)
        image.resize((w // 2, h // 2)).save(out / "incoming" / f"{name}-half.jpg", quality=85)
        ImageEnhance.Brightness(image).enhance(1.3).save(out / "incoming" / f"{name}-bright.webp")
    crop = Image.fromarray(data.astronaut()).crop((12, 12, 500, 500))
    crop.save(out / "incoming" / "astronaut-crop.png")
    # Edits whole-image hashes miss: a corner crop keeping half the picture, and a mirrored photo
    # pasted small into another one (keypoints find and outline both).
    rocket = Image.fromarray(data.rocket())
    rocket.crop((0, 0, rocket.width * 7 // 10, rocket.height * 7 // 10)).save(out / "incoming" / "rocket-corner.jpg", quality=85)
    collage = Image.fromarray(data.hubble_deep_field()).resize((1000, 872))
    coffee = Image.fromarray(data.coffee()).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((400, 267))
    collage.paste(coffee, (520, 80))
    collage.save(out / "incoming" / "coffee-collage.jpg", quality=85)
    for name, load in UNRELATED.items():
        Image.fromarray(np.asarray(load())).save(out / "incoming" / f"{name}.jpg", quality=90)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
