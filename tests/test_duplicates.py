"""Duplicate references never weaken evidence: every copy of a picture is found with the same strength.

Banks are full of copies: the same image on two hash lists or in two banks, several ids for one
item, re-encoded versions, and review decisions fed back into banks. A ratio test across the pool
that compared a reference with its own copies turned a block into an allow.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from moderate import Engine
from moderate.policy import Policy


def _crop(photo, tmp_path, keep: float = 0.7) -> str:
    image = Image.open(photo).convert("RGB")
    w, h = image.size
    path = tmp_path / "crop.jpg"
    image.crop((0, 0, int(w * keep), int(h * keep))).save(path, quality=90)  # a corner crop: PDQ misses it
    return str(path)


def _keypoint_reasons(verdict) -> dict[tuple[str, str], int]:
    return {(r.bank, r.reference_id): r.inliers for r in verdict.reasons if r.signal == "keypoints"}


def _jpeg(photo, quality: int) -> bytes:
    out = io.BytesIO()
    Image.open(photo).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_same_picture_in_two_banks_blocks_and_is_found_in_both(engine, photos, tmp_path):
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", [photos["rocket"]])
    crop = _crop(photos["rocket"], tmp_path)
    alone = engine.check(crop)
    assert alone.verdict == "block"
    engine.banks.create("LOWPRI", action="review")
    engine.banks.add("LOWPRI", [photos["rocket"]], reference_id="rocket-copy")
    verdict = engine.check(crop)
    assert verdict.verdict == "block", verdict.reasons
    found = _keypoint_reasons(verdict)
    assert set(found) == {("TERROR", "rocket"), ("LOWPRI", "rocket-copy")}
    single = _keypoint_reasons(alone)[("TERROR", "rocket")]
    assert all(abs(inliers - single) <= max(3, single // 10) for inliers in found.values())  # same strength


def test_three_ids_for_one_picture_in_one_bank_are_each_found(engine, photos, tmp_path):
    engine.banks.create("TERROR", action="block")
    for ref in ("a", "b", "c"):
        engine.banks.add("TERROR", [photos["coffee"]], reference_id=ref)
    verdict = engine.check(_crop(photos["coffee"], tmp_path))
    assert verdict.verdict == "block"
    assert set(_keypoint_reasons(verdict)) == {("TERROR", "a"), ("TERROR", "b"), ("TERROR", "c")}


def test_five_reencoded_near_copies_are_each_found(engine, photos, tmp_path):
    engine.banks.create("TERROR", action="block")
    for n, quality in enumerate((95, 85, 75, 60, 45)):
        engine.banks.add_bytes("TERROR", _jpeg(photos["astronaut"], quality), f"copy-{n}")
    verdict = engine.check(_crop(photos["astronaut"], tmp_path, keep=0.6))
    assert verdict.verdict == "block", verdict.reasons
    assert {ref for _, ref in _keypoint_reasons(verdict)} == {f"copy-{n}" for n in range(5)}


def test_copies_do_not_crowd_out_another_flagged_picture(engine, photos, tmp_path):
    """Ten copies of one picture take no candidate slots from a second picture in the same upload."""
    engine.banks.create("TERROR", action="block")
    for n in range(10):
        engine.banks.add("TERROR", [photos["coffee"]], reference_id=f"coffee-{n}")
    engine.banks.add("TERROR", [photos["rocket"]])
    canvas = Image.new("RGB", (1600, 700), "white")
    canvas.paste(Image.open(photos["coffee"]).convert("RGB").resize((700, 467)), (0, 0))
    canvas.paste(Image.open(photos["rocket"]).convert("RGB").resize((700, 467)), (850, 200))
    path = tmp_path / "both.jpg"
    canvas.save(path, quality=90)
    found = {ref for _, ref in _keypoint_reasons(engine.check(str(path)))}
    assert "rocket" in found and {f"coffee-{n}" for n in range(10)} <= found


def test_confirmed_review_item_fed_back_keeps_the_original_reference_blocking(data_dir, photos, tmp_path):
    """The review queue's feedback path adds a near-copy of a flagged picture to the bank that holds it."""
    engine = Engine(data_dir)
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", [photos["rocket"]])
    engine.banks.create("TRIAGE", action="review")
    engine.banks.add("TRIAGE", [photos["rocket"]])
    crop = _crop(photos["rocket"], tmp_path)
    assert engine.check(crop).verdict == "block"
    near_copy = tmp_path / "near.jpg"
    near_copy.write_bytes(_jpeg(photos["rocket"], 50))
    triage = Engine(data_dir, policy=Policy.from_mapping({"banks": {"TRIAGE": "bank"}}), enqueue_reviews=True)
    assert triage.check(str(near_copy)).verdict == "review"
    item = triage.queue.list()[0]
    triage.queue.claim("mod", item.id)
    triage.queue.decide(item.id, "mod", "confirm", bank="TERROR")
    verdict = engine.check(crop)
    found = _keypoint_reasons(verdict)
    assert verdict.verdict == "block" and ("TERROR", "rocket") in found and ("TERROR", f"review-{item.id}") in found


@pytest.mark.parametrize("copies", [1, 4])
def test_explain_and_check_agree_with_copies(engine, photos, tmp_path, copies):
    engine.banks.create("TERROR", action="block")
    for n in range(copies):
        engine.banks.add("TERROR", [photos["rocket"]], reference_id=f"r{n}")
    crop = _crop(photos["rocket"], tmp_path)
    verdict = engine.check(crop)
    explained = engine.explain(crop, "r0")
    assert explained.matched and verdict.verdict == "block"


VARIANTS = 24


@pytest.mark.parametrize("photo", ["astronaut", "coffee"])
def test_variants_at_other_scales_in_another_bank_leave_the_reference_its_evidence(engine, photos, tmp_path, photo):
    """Other crops and sizes of a flagged picture held elsewhere (another list's version, what a
    review queue fed back) describe its corners a few bits apart from the reference's: those are
    one corner seen twice and share a vote or a match, so the flagged reference keeps blocking with
    about the strength it has alone."""
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", [photos[photo]])
    crop = _crop(photos[photo], tmp_path)
    alone = _keypoint_reasons(engine.check(crop))[("TERROR", photo)]
    engine.banks.create("SEEN", action="review")
    image = Image.open(photos[photo]).convert("RGB")
    w, h = image.size
    for n in range(VARIANTS):
        keep, scale = 0.95 - 0.25 * (n % 6) / 5, 0.6 + 0.9 * (n % 5) / 4
        left, top = int(w * (1 - keep) * (n % 3) / 2), int(h * (1 - keep) * (n % 2))
        variant = image.crop((left, top, left + int(w * keep), top + int(h * keep)))
        out = io.BytesIO()
        variant.resize((int(variant.width * scale), int(variant.height * scale)), Image.LANCZOS).save(out, "PNG")
        engine.banks.add_bytes("SEEN", out.getvalue(), f"variant-{n}")
    verdict = engine.check(crop)
    found = _keypoint_reasons(verdict)
    assert verdict.verdict == "block", verdict.reasons
    assert found.get(("TERROR", photo), 0) >= 0.75 * alone, (alone, found)
