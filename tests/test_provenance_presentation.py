"""v2 digests bind what decides the displayed picture (issue #12 item 7): orientation, ICC, PNG
colour chunks, the JPEG Adobe transform. v1 signatures still verify, flagged as a weaker binding."""

from __future__ import annotations

import json
import struct

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from moderate.provenance import carriers, digests

from .conftest import run_cli
from .pki import jpeg_insert, png_insert


@pytest.fixture
def publisher(engine):
    key = engine.keys.generate("news", signer="Daily News")
    engine.keys.trust(key.path.with_suffix(".pub"), "Daily News Ltd")
    return engine


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[digests.ORIENTATION] = value
    return exif.tobytes()  # starts "Exif\0\0", as an APP1 body does


def _edited(path, data: bytes):
    edited = path.with_name(f"edited-{path.name}")
    edited.write_bytes(data)
    return edited


@pytest.mark.parametrize("orientation", [6, 2], ids=["turned", "mirrored"])
@pytest.mark.parametrize("digest", ["pixels-v2", "jpeg-scan-v2"])
def test_inserted_exif_orientation_breaks_a_v2_signature(publisher, photos, tmp_path, digest, orientation):
    """Regression (#12.7): an APP1 with only Orientation, no re-encode, used to leave `verified`."""
    jpeg = tmp_path / "photo.jpg"
    Image.open(photos["rocket"]).save(jpeg, quality=90)
    publisher.signatures.sign(jpeg, "news", digest_type=digest)
    assert publisher.verify(jpeg).state == "verified"
    turned = _edited(jpeg, jpeg_insert(jpeg.read_bytes(), 0xE1, _exif_orientation(orientation)))
    assert Image.open(turned).getexif()[digests.ORIENTATION] == orientation
    result = publisher.verify(turned)
    assert result.state == "tampered" and "digest differs" in result.detail


@pytest.mark.parametrize("digest", ["pixels-v1", "jpeg-scan-v1"])
def test_v1_signatures_still_verify_but_say_their_binding_is_weaker(publisher, photos, tmp_path, digest):
    jpeg = tmp_path / "photo.jpg"
    Image.open(photos["rocket"]).save(jpeg, quality=90)
    publisher.signatures.sign(jpeg, "news", digest_type=digest)
    turned = _edited(jpeg, jpeg_insert(jpeg.read_bytes(), 0xE1, _exif_orientation(6)))
    result = publisher.verify(turned)
    assert result.state == "verified" and result.codes == (digests.WEAK_BINDING,)
    assert "orientation" in result.detail


def _png_with_icc(source, path, profile: bytes, text: str | None = None):
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    Image.open(source).save(path, icc_profile=profile, pnginfo=info, compress_level=1)
    return path


def test_swapped_icc_profile_breaks_pixels_v2_but_a_caption_does_not(publisher, photos, tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    png = _png_with_icc(photos["coffee"], tmp_path / "icc.png", srgb)
    publisher.signatures.sign(png, "news")
    envelope = carriers.extract(png.read_bytes(), "png")

    def carried(path):  # same pixels, re-saved losslessly, the signature carried over
        path.write_bytes(carriers.embed(path.read_bytes(), envelope, path.name))
        return publisher.verify(path)

    assert carried(_png_with_icc(png, tmp_path / "captioned.png", srgb, "new caption")).state == "verified"
    assert carried(_png_with_icc(png, tmp_path / "swapped.png", lab)).state == "tampered"


@pytest.mark.parametrize("chunk", [
    (b"gAMA", struct.pack(">I", 100000)),  # gamma 1.0: a much darker display
    (b"tRNS", struct.pack(">HHH", 0, 0, 0)),  # black becomes transparent
    (b"sRGB", b"\x03"),  # absolute colorimetric intent
    (b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
], ids=["gAMA", "tRNS", "sRGB", "cHRM"])
def test_added_png_colour_chunk_breaks_pixels_v2_not_v1(publisher, photos, tmp_path, chunk):
    png = tmp_path / "photo.png"
    Image.open(photos["coffee"]).save(png)
    for digest, state in (("pixels-v2", "tampered"), ("pixels-v1", "verified")):
        publisher.signatures.sign(png, "news", digest_type=digest)
        edited = _edited(png, png_insert(png.read_bytes(), *chunk))
        assert publisher.verify(edited).state == state, digest


def test_added_adobe_colour_transform_breaks_jpeg_scan_v2(publisher, photos, tmp_path):
    jpeg = tmp_path / "photo.jpg"
    Image.open(photos["rocket"]).save(jpeg, quality=90)
    publisher.signatures.sign(jpeg, "news", digest_type="jpeg-scan-v2")
    adobe = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)  # transform 0: the components are RGB, not YCbCr
    result = publisher.verify(_edited(jpeg, jpeg_insert(jpeg.read_bytes(), 0xEE, adobe)))
    assert result.state == "tampered"


def test_new_signatures_default_to_pixels_v2(data_dir, photos, tmp_path):
    png = tmp_path / "photo.png"
    Image.open(photos["coffee"]).save(png)
    assert run_cli("keys", "generate", "desk", data_dir=data_dir).returncode == 0
    signed = run_cli("sign", str(png), "--key", "desk", "--json", data_dir=data_dir)
    assert json.loads(signed.stdout)["record"]["digest_type"] == "pixels-v2"
    assert digests.compute_all(png.read_bytes()).keys() == {"pixels-v1", "pixels-v2"}  # no jpeg-scan for a PNG
