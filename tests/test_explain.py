"""`moderate explain` prints the evidence trace `check` decided on, from the same pass."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from moderate import Engine, Policy


def _crop(photo, path, keep=0.7) -> str:
    image = Image.open(photo).convert("RGB")
    w, h = image.size
    image.crop((0, 0, int(w * keep), int(h * keep))).save(path, quality=90)
    return str(path)


def test_inliers_and_polygon_are_the_ones_check_reported(banked, photos, tmp_path):
    crop = _crop(photos["rocket"], tmp_path / "crop.jpg")
    verdict = banked.check(crop)
    reason = next(r for r in verdict.reasons if r.reference_id == "rocket")
    explained = banked.explain(crop, "rocket")
    keypoints = next(s for s in explained.signals if s.signal == "keypoints")
    assert (keypoints.inliers, keypoints.polygon) == (reason.inliers, reason.polygon)
    assert explained.verdict == verdict.verdict == "block"
    assert [r.rule for r in explained.reasons] == [reason.rule]


def test_a_later_frame_is_explained(banked, photos, tmp_path):
    """An animation whose second frame is the flagged photo: check blocks it, explain shows frame 1."""
    blank = Image.new("RGB", (512, 512), (30, 90, 160))
    rocket = Image.open(photos["rocket"]).convert("RGB").resize((512, 512))
    path = tmp_path / "anim.gif"
    blank.save(path, save_all=True, append_images=[rocket], duration=100)
    verdict = banked.check(path)
    explained = banked.explain(path, "rocket")
    assert verdict.verdict == explained.verdict == "block"
    assert explained.matched and explained.frame == 1
    flagged = next(r for r in verdict.reasons if r.reference_id == "rocket")
    assert flagged.frame == 1 and next(r for r in verdict.to_dict()["reasons"] if r["reference_id"] == "rocket")["frame"] == 1


def test_a_hash_check_does_not_use_is_not_reported_as_a_match(engine, tmp_path):
    """Below min_quality check ignores the PDQ hash; explain says so instead of reporting distance 0."""
    flat = np.zeros((256, 256, 3), np.uint8)
    flat[:, :128] = 200
    flat[:, 128:] = 201  # almost flat: PDQ quality far below 50
    path = tmp_path / "flat.png"
    Image.fromarray(flat).save(path)
    engine.banks.create("FLAT", action="block")
    engine.banks.import_hashes("FLAT", "pdq " + engine.hash(path)[0].pdq[0].hex + "\n")
    verdict = engine.check(path)
    assert verdict.verdict == "allow"
    (reference,) = engine.banks.references("FLAT")
    explained = engine.explain(path, reference.id)
    pdq = next(s for s in explained.signals if s.signal == "pdq")
    assert not explained.matched and not pdq.matched and "min_quality" in pdq.note
    assert explained.verdict == "allow"


def test_the_allow_list_decision_is_part_of_the_explanation(banked, photos, tmp_path):
    entry = tmp_path / "fp.png"
    Image.open(photos["coffee"]).convert("RGB").save(entry)
    banked.banks.add_bytes(banked.banks.allowlist(), entry.read_bytes(), "coffee-fp",
                           {"suppresses": json.dumps([["TERROR", "set2/coffee"]])})
    near = tmp_path / "near.jpg"
    Image.open(photos["coffee"]).convert("RGB").resize((300, 200)).save(near, quality=95)
    policy = Policy.from_mapping({"keypoints": {"enabled": False}})
    engine = Engine(banked.data_dir, policy=policy)
    verdict = engine.check(near)
    explained = engine.explain(near, "set2/coffee", bank="TERROR")
    assert explained.verdict == verdict.verdict
    assert [r.rule for r in explained.reasons] == [r.rule for r in verdict.reasons
                                                    if "TERROR/set2/coffee" in (r.detail or "") or r.reference_id == "set2/coffee"]
    assert any("check:" in line for line in explained.lines())
