"""A check decodes each input once (issue #15, item 4): provenance's pixel digests and the review
queue's thumbnail reuse the check's own decode instead of decoding the bytes again."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageFile

import moderate.media.documents
from moderate import Engine
from moderate.media import decode
from moderate.provenance import digests


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """Frames Pillow decodes in this process (a load with data still to decode) and documents rendered."""
    counts: Counter = Counter()
    load, render = ImageFile.ImageFile.load, moderate.media.documents.pdf_frames

    def counted_load(image):
        counts["frames"] += bool(image.tile)
        return load(image)

    def counted_render(*args, **kwargs):
        counts["renders"] += 1
        return render(*args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    monkeypatch.setattr(moderate.media.documents, "pdf_frames", counted_render)
    return counts


@pytest.fixture
def registry(engine, photos, tmp_path) -> Engine:
    """An engine with an originals bank (so every check looks the registry up) and a key to sign
    with, queueing review verdicts; the SUSPECT bank (review) is for the inputs themselves."""
    key = engine.keys.generate("news", signer="Daily News")
    engine.keys.trust(key.path.with_suffix(".pub"), "Daily News Ltd")
    engine.banks.create("ORIGINALS", action="review", kind="originals")
    engine.banks.create("SUSPECT", action="review")
    other = tmp_path / "other.png"
    shutil.copy(photos["chelsea"], other)
    engine.signatures.sign(other, "news", detached=True, register="ORIGINALS")
    return Engine(engine.data_dir, enqueue_reviews=True)


def animation(photos, fmt: str) -> bytes:
    base = Image.open(photos["astronaut"]).convert("RGB").resize((160, 160))
    frames = [base.rotate(angle) for angle in (0, 90, 180)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def inputs(photos) -> dict[str, tuple[bytes, str, int]]:
    """name -> (bytes, suffix, frames)."""
    out = {}
    png = io.BytesIO()
    Image.open(photos["coffee"]).save(png, "PNG")
    out["still PNG"] = (png.getvalue(), ".png", 1)
    jpeg = io.BytesIO()
    Image.open(photos["rocket"]).convert("RGB").save(jpeg, "JPEG", quality=88)  # 640 px: decoded unscaled
    out["small JPEG"] = (jpeg.getvalue(), ".jpg", 1)
    out["animated GIF"] = (animation(photos, "GIF"), ".gif", 3)
    out["animated WebP"] = (animation(photos, "WEBP"), ".webp", 3)
    return out


@pytest.mark.parametrize("kind", ["still PNG", "small JPEG", "animated GIF", "animated WebP"])
def test_a_check_decodes_each_frame_once_with_the_registry_and_the_review_queue(registry, photos, tmp_path, decodes, kind):
    data, suffix, frames = inputs(photos)[kind]
    original = tmp_path / f"original{suffix}"
    original.write_bytes(data)
    # A registered original (its signature detached, so the copy checked is the original stripped)
    # that a review bank also holds: the check verifies the registry entry against the input's
    # pixel digest, compares it with the original's, and queues the review with a thumbnail.
    registry.signatures.sign(original, "news", detached=True, register="ORIGINALS", reference_id="it")
    registry.banks.add("SUSPECT", [original])
    upload = tmp_path / "upload" / f"it{suffix}"
    upload.parent.mkdir()
    upload.write_bytes(data)

    decodes.clear()
    verdict = registry.check(upload)

    assert (verdict.verdict, verdict.frames, verdict.provenance.carrier) == ("review", frames, "registry")
    assert "provenance.original" in {r.rule for r in verdict.reasons}
    (item,) = registry.queue.list()
    assert registry.queue.image(item.id, thumbnail=True).startswith(b"\x89PNG")
    assert decodes == {"frames": frames}


def test_a_modified_copy_of_an_original_is_decoded_once(registry, photos, tmp_path, decodes):
    original = tmp_path / "original.png"
    shutil.copy(photos["coffee"], original)
    registry.signatures.sign(original, "news", detached=True, register="ORIGINALS", reference_id="coffee")
    copy = tmp_path / "copy.png"
    edited = Image.open(original).convert("RGB")
    edited.paste((255, 255, 255), (0, 0, 12, 12))
    edited.save(copy)

    decodes.clear()
    verdict = registry.check(copy)

    assert verdict.verdict == "review" and verdict.reasons[0].rule == "provenance.modified_copy"
    assert len(registry.queue.list()) == 1
    assert decodes == {"frames": 1}


@pytest.mark.parametrize("carrier", ["embedded", "detached"])
def test_a_signed_input_is_decoded_once_without_an_originals_bank(engine, photos, tmp_path, decodes, carrier):
    key = engine.keys.generate("news", signer="Daily News")
    engine.keys.trust(key.path.with_suffix(".pub"), "Daily News Ltd")
    engine.banks.create("SUSPECT", action="review")
    engine.banks.add("SUSPECT", [photos["chelsea"]])
    signed = tmp_path / "signed.png"
    shutil.copy(photos["coffee"], signed)
    engine.signatures.sign(signed, "news", detached=carrier == "detached")

    decodes.clear()
    verdict = engine.check(signed)

    assert (verdict.provenance.state, verdict.provenance.carrier) == ("verified", carrier)
    assert decodes == {"frames": 1}


def test_a_pdf_is_rendered_once(registry, photos, tmp_path, decodes):
    pdf = tmp_path / "doc.pdf"
    Image.open(photos["coffee"]).convert("RGB").save(pdf, "PDF")
    registry.banks.add("SUSPECT", [pdf])

    decodes.clear()
    verdict = registry.check(pdf)

    assert verdict.verdict == "review" and verdict.provenance.state == "unsigned"
    assert registry.queue.image(registry.queue.list()[0].id, thumbnail=True).startswith(b"\x89PNG")
    assert decodes == {"renders": 1}  # no pixel digest of a PDF: Pillow does not open it


def test_a_large_jpeg_is_decoded_scaled_for_the_signals_and_whole_once_for_its_pixel_digests(
        registry, photos, tmp_path, decodes):
    big = tmp_path / "big.jpg"
    Image.open(photos["coffee"]).convert("RGB").resize((2400, 1600)).save(big, quality=90)

    decodes.clear()
    registry.check(big)

    # DCT scaling cannot be derived from the whole picture (nor the reverse): the signals keep the
    # scaled decode references were hashed from, the registry gets the whole picture, once.
    assert decodes == {"frames": 2}


@pytest.mark.parametrize("make", ["palette with transparency", "grey and alpha", "16-bit grey", "animated GIF",
                                  "animated WebP", "turned JPEG", "large JPEG"])
def test_digests_taken_from_the_checks_decode_are_those_of_a_decode_of_their_own(photos, make):
    picture = Image.open(photos["coins"]).convert("RGB").resize((300, 200))
    out = io.BytesIO()
    if make == "palette with transparency":
        picture.convert("P").save(out, "PNG", transparency=3)
    elif make == "grey and alpha":
        picture.convert("LA").save(out, "PNG")
    elif make == "16-bit grey":
        Image.fromarray((np.asarray(picture.convert("L"), np.uint16) * 257)).save(out, "PNG")
    elif make in ("animated GIF", "animated WebP"):
        out.write(animation(photos, make.split()[1]))
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        picture.resize((3000, 2000) if make == "large JPEG" else (300, 200)).save(out, "JPEG", exif=exif.tobytes())
    data = out.getvalue()

    shared = digests.Content(data)
    decode(data, whole=shared)

    assert shared.all() == digests.compute_all(data)
    assert len(shared.all()) == (4 if "JPEG" in make else 2)
