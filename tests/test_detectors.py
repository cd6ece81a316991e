"""Detectors: NudeNet labels and boxes, OCR text rules, and clear refusals when an extra is missing."""

from __future__ import annotations

import importlib.util

import pytest
from PIL import Image, ImageDraw, ImageFont

from moderate import Engine
from moderate.detectors import load
from moderate.errors import PolicyError
from moderate.media import decode
from moderate.policy import Policy


def test_nudenet_finds_the_astronauts_face(photos):
    frame = decode(photos["astronaut"]).frames[0]
    faces = [d for d in load("nudenet").detect(frame.pixels) if d.label == "FACE_FEMALE"]
    assert faces and faces[0].score > 0.5
    x, y, w, h = faces[0].box  # her face sits around (170-260, 60-190) of the 512 px photo
    assert 140 < x + w / 2 < 290 and 60 < y + h / 2 < 200 and 40 < w < 200


def test_detector_rules_in_a_policy_give_reasons_with_regions(data_dir, photos):
    policy = Policy.from_mapping({"detectors": {"nudenet": [
        {"labels": ["FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED"], "min_score": 0.5, "action": "block"},
        {"labels": ["FACE_FEMALE"], "min_score": 0.5, "action": "review", "name": "face.for_review"}]}})
    verdict = Engine(data_dir, policy=policy).check(photos["astronaut"])
    assert verdict.verdict == "review"
    (reason,) = verdict.reasons
    assert reason.rule == "face.for_review" and reason.signal == "nudenet" and reason.region.origin == "detector:FACE_FEMALE"
    assert Engine(data_dir, policy=policy).check(photos["coffee"]).verdict == "allow"


def test_ocr_reads_a_caption_and_text_rules_fire(data_dir, tmp_path, photos):
    meme = Image.open(photos["chelsea"]).convert("RGB").resize((900, 600))
    draw = ImageDraw.Draw(meme)
    draw.rectangle((0, 480, 900, 600), fill="white")
    draw.text((30, 505), "FREE CRYPTO GIVEAWAY t.me/winbig", fill="black", font=ImageFont.load_default(size=44))
    path = tmp_path / "meme.jpg"
    meme.save(path, quality=90)
    lines = [d.text for d in load("ocr").detect(decode(path).frames[0].pixels)]
    assert any("CRYPTO GIVEAWAY" in line.upper() for line in lines), lines
    policy = Policy.from_mapping({"detectors": {"ocr": [
        {"keywords": ["crypto giveaway"], "action": "review"},
        {"regex": r"t\.me/\w+", "action": "block", "name": "telegram.link"}]}})
    verdict = Engine(data_dir, policy=policy).check(path)
    assert verdict.verdict == "block"
    assert [r.rule for r in verdict.reasons] == ["telegram.link", "ocr.keywords"]
    assert "t.me/winbig" in verdict.reasons[0].detail and verdict.reasons[0].region.y > 400


def test_missing_extra_and_bad_rules_are_refused_by_name(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nudenet" else real(name, *a))
    with pytest.raises(PolicyError, match=r"p.yaml: detectors.nudenet: needs the optional extra: pip install 'moderate\[nsfw\]'"):
        Policy.from_mapping({"detectors": {"nudenet": [{"labels": ["FACE_MALE"], "action": "review"}]}}, "p.yaml")
    monkeypatch.undo()
    with pytest.raises(PolicyError, match="labels: must be a list of NudeNet labels"):
        Policy.from_mapping({"detectors": {"nudenet": [{"labels": ["NAKED"], "action": "block"}]}}, "p.yaml")
    with pytest.raises(PolicyError, match="regex: not a valid regular expression"):
        Policy.from_mapping({"detectors": {"ocr": [{"regex": "(", "action": "block"}]}}, "p.yaml")
    with pytest.raises(PolicyError, match="detectors.faces: unknown detector"):
        Policy.from_mapping({"detectors": {"faces": []}}, "p.yaml")
