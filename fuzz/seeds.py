"""Write a seed corpus for the decode fuzzer: one small, valid file per format and variant.

Everything is generated at run time (no sample files to ship) and kept small (mostly 48x32
pixels), so libFuzzer's mutations stay cheap and the corpus covers every route `decode` takes:
raster formats through Pillow, HEIF through pillow-heif, PDF through pypdfium2, WMF/EMF through
metafile-render.

    .venv/bin/python fuzz/seeds.py fuzz/corpus
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.metafiles
from tests.metafiles import emf, wmf  # noqa: E402

W, H = 48, 32


def picture(seed: int = 0, size: tuple[int, int] = (W, H)) -> Image.Image:
    """A gradient with a block, so codecs have edges and colours to encode."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata([((x * 255 // w + seed * 40) % 256, y * 255 // h, (x ^ y) * 8 % 256) for y in range(h) for x in range(w)])
    image.paste((255 - seed * 30 % 256, 40, 200), (w // 4, h // 4, w // 2, h // 2))
    return image


def save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def animation(fmt: str, count: int = 3, **params) -> bytes:
    frames = [picture(i) for i in range(count)]
    return save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0, **params)


def tiled_tiff(size: int = 32, tile: int = 16, deflate: bool = False) -> bytes:
    """A little-endian RGB TIFF stored as tiles (Pillow's writer only writes strips); raw tiles are
    read by Pillow itself, deflated ones by libtiff."""
    rgb = picture(1, (size, size))
    tiles = [rgb.crop((x, y, x + tile, y + tile)).tobytes() for y in range(0, size, tile) for x in range(0, size, tile)]
    tiles = [zlib.compress(t) for t in tiles] if deflate else tiles
    data = b"".join(tiles)
    tags = 11
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * tags + 4  # out-of-line values follow the IFD
    bits_at, offsets_at = extra_at, extra_at + 6
    counts_at = offsets_at + 4 * len(tiles)
    data_at = counts_at + 4 * len(tiles)
    entries = [  # (tag, type, count, value or offset); type 3 = SHORT, 4 = LONG
        (256, 4, 1, size), (257, 4, 1, size), (258, 3, 3, bits_at), (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 2),
        (277, 3, 1, 3), (284, 3, 1, 1), (322, 3, 1, tile), (323, 3, 1, tile),
        (324, 4, len(tiles), offsets_at), (325, 4, len(tiles), counts_at),
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", tags)
    for tag, kind, count, value in entries:
        inline = kind == 3 and count == 1
        out += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if inline else struct.pack("<I", value))
    out += struct.pack("<I", 0) + struct.pack("<3H", 8, 8, 8)
    starts = [data_at + sum(len(t) for t in tiles[:i]) for i in range(len(tiles))]
    out += b"".join(struct.pack("<I", start) for start in starts)
    out += b"".join(struct.pack("<I", len(t)) for t in tiles)
    return out + data


def seeds() -> dict[str, bytes]:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    rgb = picture()
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate to display
    pages = [picture(i, (60, 40)) for i in range(3)]  # >= 32 px, so PDF embedded images are extracted
    return {
        "baseline.jpg": save(rgb, "JPEG", quality=75),
        "progressive.jpg": save(rgb, "JPEG", quality=75, progressive=True),
        "grey-exif-rotated.jpg": save(rgb.convert("L"), "JPEG", quality=75, exif=exif.tobytes()),
        "cmyk.jpg": save(rgb.convert("CMYK"), "JPEG", quality=75),
        "multi-picture.mpo": save(rgb, "MPO", save_all=True, append_images=[picture(2)], quality=60),
        "alpha.png": save(rgba, "PNG"),
        "palette.png": save(rgb.quantize(16), "PNG", transparency=0),
        "grey16.png": save(Image.linear_gradient("L").resize((W, H)).convert("I;16"), "PNG"),
        "animated.png": animation("PNG"),
        "animated.gif": animation("GIF"),
        "rgb.bmp": save(rgb, "BMP"),
        "palette.bmp": save(rgb.quantize(8), "BMP"),
        "multipage.tif": save(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
        "deflate.tif": save(rgba, "TIFF", compression="tiff_deflate"),
        "float.tif": save(Image.linear_gradient("L").resize((W, H)).convert("F"), "TIFF"),
        "tiled.tif": tiled_tiff(),
        "tiled-deflate.tif": tiled_tiff(deflate=True),
        "lossy.webp": save(rgb, "WEBP", quality=60),
        "lossless-alpha.webp": save(rgba, "WEBP", lossless=True),
        "animated.webp": animation("WEBP", quality=50),
        "still.avif": save(rgb, "AVIF", quality=50),
        "still.heic": save(rgb, "HEIF", quality=50),
        "one-page.pdf": save(pages[0], "PDF", resolution=72),
        "three-pages.pdf": save(pages[0], "PDF", save_all=True, append_images=pages[1:], resolution=72),
        "rect.wmf": wmf(64, 40),
        "rect.emf": emf(64, 40),
    }


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (out / name).write_bytes(data)
        print(f"{len(data):7d}  {out / name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")
