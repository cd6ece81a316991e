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


def dib(bpp: int, rle: bool = False, size: int = 8) -> bytes:
    """A bottom-up DIB (BITMAPINFOHEADER, palette, bits) as metafiles embed them; 8 bpp may be RLE8."""
    colours = 2 ** bpp if bpp <= 8 else 0
    palette = b"".join(struct.pack("<BBBB", i * 17 % 256, i * 40 % 256, 255 - i * 9 % 256, 0) for i in range(colours))
    if rle:  # each row: one run of colour `row`, end of line; then end of bitmap
        bits = b"".join(bytes([size, row, 0, 0]) for row in range(size)) + b"\x00\x01"
    else:
        stride = (size * bpp + 31) // 32 * 4
        row = bytes((x * 37) % 256 for x in range(size * bpp // 8 or 1))
        bits = (row + b"\x00" * stride)[:stride] * size
    header = struct.pack("<IiiHHIIiiII", 40, size, size, 1, bpp, 1 if rle else 0, len(bits), 2835, 2835, colours, 0)
    return header + palette + bits


def emf_with_bitmap(bmi_and_bits: bytes, palette_bytes: int) -> bytes:
    """tests.metafiles.emf() with an EMR_STRETCHDIBITS record spliced in before EOF."""
    bmi, bits = bmi_and_bits[: 40 + palette_bytes], bmi_and_bits[40 + palette_bytes:]
    record = struct.pack("<II4i", 81, 0, 0, 0, 60, 40)  # size patched below
    record += struct.pack("<6i8I", 10, 10, 0, 0, 8, 8, 80, len(bmi), 80 + len(bmi), len(bits), 0, 0x00CC0020, 40, 20)
    record += bmi + bits + b"\x00" * (-len(bits) % 4)
    record = record[:4] + struct.pack("<I", len(record)) + record[8:]
    base = emf(64, 40)
    size, count = struct.unpack_from("<II", base, 48)
    out = base[:-20] + record + base[-20:]
    return out[:48] + struct.pack("<II", size + len(record), count + 1) + out[56:]


def wmf_with_bitmap(bmi_and_bits: bytes) -> bytes:
    """tests.metafiles.wmf() with a META_STRETCHDIB record spliced in before the final record."""
    payload = struct.pack("<IH8h", 0x00CC0020, 0, 8, 8, 0, 0, 20, 40, 10, 10) + bmi_and_bits
    payload += b"\x00" * (len(payload) % 2)
    record = struct.pack("<IH", 3 + len(payload) // 2, 0x0F43) + payload
    base = wmf(64, 40)
    words, = struct.unpack_from("<I", base, 28)
    out = base[:-6] + record + base[-6:]
    return out[:28] + struct.pack("<IHI", words + len(record) // 2, 1, len(record) // 2) + out[38:]


def pdf(*objects: bytes) -> bytes:
    """A PDF from numbered objects (1 is the catalog), with a correct xref table."""
    out, offsets = b"%PDF-1.5\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def stream(head: bytes, data: bytes) -> bytes:
    return head[:-2] + b"/Length %d>>\nstream\n%s\nendstream" % (len(data), data)


def pdf_seeds() -> dict[str, bytes]:
    """Hand-written PDFs: a rotated page with a Form XObject holding a Flate indexed image, and an
    inline image beside vector paths (Pillow's PDFs only hold one DCT image per page)."""
    indexed = zlib.compress(bytes((x // 5 + y // 5) % 4 for y in range(40) for x in range(40)))
    content = b"q 1 0 0 1 10 10 cm /F0 Do Q 0 0 1 rg 5 5 50 30 re f"
    form = b"q 40 0 0 40 0 0 cm /Im0 Do Q"
    grey = bytes((x * 6 + y * 3) % 256 for y in range(32) for x in range(32)).hex().encode()
    inline = b"0.5 g 0 0 m 60 40 l 60 0 l h f q 32 0 0 32 4 4 cm BI /W 32 /H 32 /BPC 8 /CS /G /F /AHx ID " + grey + b"> EI Q"
    catalog, pages = b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>"
    return {
        "form-indexed-rotated.pdf": pdf(
            catalog, pages,
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 60 40]/Rotate 90/Contents 4 0 R/Resources<</XObject<</F0 5 0 R>>>>>>",
            stream(b"<<>>", content),
            stream(b"<</Type/XObject/Subtype/Form/BBox[0 0 40 40]/Resources<</XObject<</Im0 6 0 R>>>>>>", form),
            stream(b"<</Type/XObject/Subtype/Image/Width 40/Height 40/BitsPerComponent 8"
                   b"/ColorSpace[/Indexed/DeviceRGB 3<ff0000 00ff00 0000ff ffff00>]/Filter/FlateDecode>>", indexed),
        ),
        "inline-image.pdf": pdf(catalog, pages, b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 60 40]/Contents 4 0 R>>",
                                stream(b"<<>>", inline)),
    }


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
        **pdf_seeds(),
        "rect.wmf": wmf(64, 40),
        "rect.emf": emf(64, 40),
        "bitmap24.emf": emf_with_bitmap(dib(24), 0),
        "bitmap-rle8.emf": emf_with_bitmap(dib(8, rle=True), 1024),
        "bitmap8.wmf": wmf_with_bitmap(dib(8)),
        "bitmap4.wmf": wmf_with_bitmap(dib(4)),
    }


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (out / name).write_bytes(data)
        print(f"{len(data):7d}  {out / name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus")
