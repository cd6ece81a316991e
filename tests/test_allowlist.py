"""The allow-list suppresses only the false positive it records, never other evidence.

A rejected review item becomes an allow-list entry that names the references it was a false
positive of. It must not let a different flagged picture through, pasted into the same benign
picture; ties go to the flagged side.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from moderate import Engine, Policy
from moderate.policy import ALLOWLISTED


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()


def _allowlist(engine: Engine, picture: Image.Image, ref: str, suppresses) -> None:
    metadata = {"suppresses": json.dumps(suppresses)} if suppresses is not None else {}
    engine.banks.add_bytes(engine.banks.allowlist(), _png(picture), ref, metadata)


@pytest.fixture
def flagged(engine, photos) -> Engine:
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", [photos["coffee"], photos["rocket"]])
    return engine


def _collage(photos, tmp_path, scale: float) -> tuple[Image.Image, str]:
    background = Image.open(photos["camera"]).convert("RGB").resize((1024, 1024))
    coffee = Image.open(photos["coffee"]).convert("RGB")
    collage = background.copy()
    collage.paste(coffee.resize((round(1024 * scale), round(1024 * scale * coffee.height / coffee.width))), (40, 40))
    path = tmp_path / f"collage-{scale}.png"
    collage.save(path)
    return background, str(path)


@pytest.mark.parametrize(("policy", "scale", "entry"), [
    ("default", 0.25, [["TERROR", "rocket"]]), ("strict", 0.15, [["TERROR", "rocket"]]),
    ("strict", 0.2, [["TERROR", "rocket"]]),
    ("strict", 0.2, None),  # an entry from before references were recorded: only the same region
])
def test_flagged_photo_pasted_into_allowlisted_picture_keeps_its_evidence(flagged, photos, tmp_path, policy, scale,
                                                                         entry):
    engine = Engine(flagged.data_dir, policy=Policy.load(f"policies/{policy}.yaml"))
    background, path = _collage(photos, tmp_path, scale)
    before = engine.check(path)
    assert before.verdict != "allow" and any(r.reference_id == "coffee" for r in before.reasons)
    _allowlist(flagged, background, "benign-camera", entry)
    after = engine.check(path)
    # the coffee evidence stays (its strength may move a little: the entry joins the keypoint pool)
    assert after.verdict != "allow", [r.to_dict() for r in after.reasons]
    assert any(r.reference_id == "coffee" and r.action != "allow" for r in after.reasons)
    assert not any(r.rule == ALLOWLISTED and "coffee" in r.detail for r in after.reasons)


def test_the_recorded_false_positive_is_suppressed_for_a_closer_copy(flagged, photos, tmp_path):
    benign = Image.open(photos["chelsea"]).convert("RGB")
    _allowlist(flagged, benign, "cat", [["TERROR", "coffee"]])
    flagged.banks.create("CATS", action="review")
    flagged.banks.add("CATS", [photos["chelsea"]])  # flagged evidence for a reference the entry does not name
    path = tmp_path / "cat.jpg"
    benign.save(path, quality=85)
    verdict = flagged.check(path)
    assert verdict.verdict == "review", "a reference the entry does not name keeps its evidence"
    assert any(r.bank == "CATS" and r.action == "review" for r in verdict.reasons)


def test_ties_go_to_the_flagged_side(flagged, photos):
    """The flagged picture itself, allow-listed as a false positive of itself, still blocks."""
    _allowlist(flagged, Image.open(photos["rocket"]), "rocket-fp", [["TERROR", "rocket"]])
    verdict = flagged.check(photos["rocket"])
    assert verdict.verdict == "block"


def test_rejection_records_what_it_suppresses_and_allows_only_that(banked, photos, tmp_path):
    policy = Policy.from_mapping({"pdq": {"thresholds": [{"max_distance": 4, "action": "bank"},
                                                         {"max_distance": 52, "action": "review"}]},
                                  "keypoints": {"thresholds": [{"min_inliers": 12, "action": "review"}]}})
    reviewing = Engine(banked.data_dir, policy=policy, enqueue_reviews=True)
    small = tmp_path / "motorcycle-small.jpg"
    Image.open(photos["motorcycle"]).convert("RGB").resize((200, 200)).save(small, quality=60)
    assert reviewing.check(small).verdict == "review"
    (item,) = reviewing.queue.list()
    reviewing.queue.claim("alice", item.id)
    reviewing.queue.decide(item.id, "alice", "reject")
    (entry,) = reviewing.banks.references("ALLOWLIST")
    assert ["TERROR", "set2/motorcycle"] in json.loads(entry.metadata["suppresses"])
    again = reviewing.check(small)
    assert again.verdict == "allow" and again.reasons[0].rule == ALLOWLISTED
    assert "TERROR/set2/motorcycle" in again.reasons[0].detail


