"""The signal interface: the engine, the policy, explain and search iterate the registry.

A signal added to the registry gets its policy section, runs in `check`, is judged by its bands,
shows in `explain` and ranks in `search` without any of those modules naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import pytest
from PIL import Image, ImageOps

from moderate import Engine, Policy, PolicyError
from moderate.evidence import Evidence
from moderate.rules import Band, Fields, SignalRules
from moderate.signals import SIGNALS, Signal


@dataclass(frozen=True)
class PixelDigestRules(SignalRules):
    bands: tuple[Band, ...] = (Band(0, "bank", "pixels.exact"),)

    @classmethod
    def read_bound(cls, fields: Fields) -> int:
        return fields.integer(cls.bound_field, None, 0, 0)


class PixelDigest(Signal):
    """SHA-256 of a frame's working pixels against digests the test registers: a real, if tiny, signal."""

    name = "pixels"
    measure = "distance"
    rules: ClassVar[type[PixelDigestRules]] = PixelDigestRules

    def __init__(self, known: dict[str, tuple[str, str]]):
        self.known = known  # digest -> (bank, reference id)

    def find(self, query, context, rules):
        digest = hashlib.sha256(query.frame.pixels.tobytes()).hexdigest()
        query.computed[self.name] = digest
        hit = self.known.get(digest)
        return [Evidence(self.name, self.measure, 0, *hit, query.regions[0])] if hit and hit[0] in context.banks else []

    def search(self, query, context, rules, min_similarity):
        return self.find(query, context, rules)

    def similarity(self, value):
        return 1.0 - value

    def holds(self, reference, context):
        return reference in self.known.values()


@pytest.fixture
def registered(banked, photos, monkeypatch):
    coffee = Engine(banked.data_dir).decode(photos["coffee"]).frames[0].pixels
    signal = PixelDigest({hashlib.sha256(coffee.tobytes()).hexdigest(): ("TERROR", "set2/coffee")})
    monkeypatch.setitem(SIGNALS, signal.name, signal)
    return signal


def test_a_registered_signal_has_a_policy_section_with_its_own_bands(registered):
    policy = Policy.from_mapping({"pixels": {"thresholds": [{"max_distance": 0, "action": "review"}]}})
    assert policy.rules_for("pixels").bands == (Band(0, "review", "pixels.distance<=0"),)
    assert Policy().pixels.bands == (Band(0, "bank", "pixels.exact"),)  # by attribute, like policy.pdq
    with pytest.raises(PolicyError, match=r"pixels\.thresholds\[0\]\.max_distance: must be an integer from 0 to 0"):
        Policy.from_mapping({"pixels": {"thresholds": [{"max_distance": 3, "action": "block"}]}})
    with pytest.raises(PolicyError, match=r"pixels\.treshold: unknown field"):
        Policy.from_mapping({"pixels": {"treshold": 1}})


def test_check_runs_judges_and_explain_shows_a_registered_signal(registered, banked, photos):
    only_new = Policy.from_mapping({"digest": {"enabled": False}, "pdq": {"enabled": False},
                                    "keypoints": {"enabled": False}})
    engine = Engine(banked.data_dir, policy=only_new)
    verdict = engine.check(photos["coffee"])
    assert verdict.verdict == "block"
    assert [(r.signal, r.rule, r.reference_id) for r in verdict.reasons] == [("pixels", "pixels.exact", "set2/coffee")]
    assert engine.check(photos["chelsea"]).verdict == "allow"
    explained = engine.explain(photos["coffee"], "set2/coffee")
    shown = {s.signal: s for s in explained.signals}
    assert list(shown) == ["digest", "pdq", "keypoints", "pixels"] and shown["pixels"].matched
    assert not shown["pdq"].matched and "off in this policy" in shown["pdq"].note
    assert not shown["keypoints"].matched and "off in this policy" in shown["keypoints"].note
    assert explained.verdict == "block"
    off = Engine(banked.data_dir, policy=only_new.with_rules(pixels=PixelDigestRules(enabled=False)))
    assert off.check(photos["coffee"]).verdict == "allow"


def test_search_uses_the_policy_s_rules(banked, photos, tmp_path):
    """A policy whose `min_quality` is above a picture's PDQ quality (moon: 83) does not use its
    hash in search either: signals search under the engine's policy, not their defaults."""
    banked.banks.add("TERROR", [photos["moon"]])
    copy = tmp_path / "moon.jpg"
    Image.open(photos["moon"]).convert("RGB").save(copy, quality=90)
    assert [h.reference_id for h in banked.search(copy, signal="pdq")] == ["moon"]
    strict = Engine(banked.data_dir, policy=Policy.from_mapping({"pdq": {"min_quality": 95}}))
    assert strict.search(copy, signal="pdq") == []


def test_search_finds_an_exact_copy_by_its_digests(banked, photos):
    hits = banked.search(photos["coffee"], signal="digest")
    assert [(h.reference_id, h.similarity, h.variant) for h in hits] == [("set2/coffee", 1.0, "sha256")]


def test_search_ranks_a_registered_signal_on_the_shared_scale(registered, banked, photos):
    hits = banked.search(photos["coffee"], signal="pixels")
    assert [(h.signal, h.reference_id, h.similarity) for h in hits] == [("pixels", "set2/coffee", 1.0)]


def test_search_finds_bordered_cropped_and_pasted_copies(banked, photos, tmp_path):
    """What check blocks, search ranks: keypoints put crops, borders and pastes on the shared scale."""
    rocket = Image.open(photos["rocket"]).convert("RGB")
    w, h = rocket.size
    bordered = ImageOps.expand(rocket, border=w // 10, fill="white")
    cropped = rocket.crop((0, 0, int(w * 0.6), int(h * 0.6)))
    pasted = Image.open(photos["retina"]).convert("RGB").resize((1024, 1024))
    pasted.paste(rocket.resize((400, 267)), (500, 600))
    for name, picture in {"bordered": bordered, "cropped": cropped, "pasted": pasted}.items():
        path = tmp_path / f"{name}.jpg"
        picture.save(path, quality=90)
        assert banked.check(path).verdict == "block", name
        hits = banked.search(path)
        assert hits and hits[0].reference_id == "rocket", (name, [h.to_dict() for h in hits])
        assert hits[0].similarity >= 0.75 and hits[0].inliers, name


def test_policy_is_the_same_through_the_registry_as_its_file(tmp_path):
    assert Policy.load("policies/default.yaml").signals == Policy().signals
    strict = Policy.load("policies/strict.yaml")
    assert [name for name, _ in strict.signals] == list(SIGNALS)


def test_exact_digests_find_byte_and_pixel_identical_copies_first(engine, photos, tmp_path):
    """The digest signal, added through the registry: a byte-identical upload is found by SHA-256 and
    MD5, the same pixels in another lossless file by the pixel digest; one changed pixel by neither."""
    engine.banks.create("EXACT", action="block")
    engine.banks.add("EXACT", [photos["coins"]])
    verdict = engine.check(photos["coins"])
    assert verdict.verdict == "block" and verdict.reasons[0].signal == "digest"  # first: the registry's order
    assert verdict.reasons[0].variant == "sha256" and verdict.reasons[0].distance == 0
    traces = []
    engine._verdicts(photos["coins"], None, traces)
    assert {e.variant for e in traces[0].query.computed["evidence"] if e.signal == "digest"} == {"sha256", "md5", "pixels"}
    image = Image.open(photos["coins"]).convert("RGB")
    resaved = tmp_path / "coins.png"
    image.save(resaved, optimize=True, compress_level=9)  # other bytes, same pixels
    found = {r.variant for r in engine.check(resaved).reasons if r.signal == "digest"}
    assert found == {"pixels"}
    image.putpixel((5, 5), (0, 0, 0))
    changed = tmp_path / "changed.png"
    image.save(changed)
    assert not [r for r in engine.check(changed).reasons if r.signal == "digest"]
    engine.banks.remove("EXACT", "coins")
    assert len(engine.catalog.current().indexes["digest"]) == 0
