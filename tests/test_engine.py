"""The engine end to end on real photos: edited copies are caught, unrelated photos pass."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image

from moderate import Engine, Policy, PolicyError
from moderate.engine import MIN_BATCH_FOR_WORKERS

from .conftest import FLAGGED, UNRELATED


def reference_of(name: str) -> str:
    """Reference ids are relative paths without extension; odd-numbered photos sit in set2/."""
    index = list(FLAGGED).index(name)
    return f"set2/{name}" if index % 2 else name


def test_edited_copies_are_blocked_with_their_reference(banked, edited):
    for name, edit, path in edited:
        verdict = banked.check(path)
        assert verdict.verdict == "block", (name, edit, verdict)
        top = verdict.reasons[0]
        assert (top.bank, top.reference_id, top.signal) == ("TERROR", reference_of(name), "pdq"), (edit, top)
        assert top.distance <= 31
        assert verdict.error is None


def test_unrelated_photos_are_allowed(banked, photos):
    for name in UNRELATED:
        verdict = banked.check(photos[name])
        assert verdict.verdict == "allow", (name, verdict.reasons)
        assert verdict.reasons == ()


def test_exact_copy_matches_at_distance_zero_and_region_is_whole_frame(banked, photos):
    verdict = banked.check(photos["astronaut"])
    reason = verdict.reasons[0]
    assert reason.distance == 0
    assert (reason.region.x, reason.region.y, reason.region.w, reason.region.h) == (0, 0, 512, 512)
    assert verdict.to_dict()["reasons"][0]["region"] == {"x": 0, "y": 0, "w": 512, "h": 512, "origin": "whole"}


@pytest.mark.parametrize(
    "transform, variant",
    [
        (Image.Transpose.ROTATE_90, "rotate270"),
        (Image.Transpose.ROTATE_270, "rotate90"),
        (Image.Transpose.ROTATE_180, "rotate180"),
        (Image.Transpose.FLIP_LEFT_RIGHT, "flip_horizontal"),
        (Image.Transpose.FLIP_TOP_BOTTOM, "flip_vertical"),
    ],
)
def test_dihedral_matching_catches_turns_and_mirrors_only_when_enabled(banked, photos, tmp_path, transform, variant):
    path = tmp_path / "turned.jpg"
    Image.open(photos["coffee"]).transpose(transform).save(path, quality=85)
    pdq_only = Policy().with_rules(keypoints=replace(Policy().keypoints, enabled=False))
    assert Engine(banked.data_dir, policy=pdq_only).check(path).verdict == "allow"  # plain PDQ misses turns and mirrors

    dihedral = Engine(banked.data_dir, policy=pdq_only.with_rules(pdq=replace(pdq_only.pdq, dihedral=True)))
    verdict = dihedral.check(path)
    assert verdict.verdict == "block"
    assert verdict.reasons[0].reference_id == reference_of("coffee")
    assert verdict.reasons[0].variant == variant
    by_default = banked.check(path)  # keypoints are rotation invariant, and references keep mirrored ones
    assert by_default.verdict == "block" and by_default.reasons[0].signal == "keypoints"


def test_review_band_between_match_and_near_thresholds(banked, photos, tmp_path):
    # A tighter policy turns a resized copy (distance > 0) into a review instead of a block.
    path = tmp_path / "small.jpg"
    Image.open(photos["rocket"]).resize((160, 107)).save(path, quality=60)
    distance = banked.check(path).reasons[0].distance
    assert 0 < distance <= 31
    policy = Policy.from_mapping({"pdq": {"thresholds": [{"max_distance": distance - 1, "action": "bank"},
                                                          {"max_distance": 52, "action": "review"}]}})
    verdict = Engine(banked.data_dir, policy=policy).check(path)
    assert verdict.verdict == "review"
    assert verdict.reasons[0].rule == "pdq.distance<=52"


def test_bytes_and_file_objects_are_checked_like_files(banked, photos):
    raw = photos["motorcycle"].read_bytes()
    assert banked.check(raw).verdict == "block"
    assert banked.check(raw).source == "<bytes>"
    assert banked.check(io.BytesIO(raw)).verdict == "block"


def test_low_quality_hash_is_not_matched_and_the_verdict_says_so(banked, tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), (120, 120, 120)).save(path)
    verdict = banked.check(path)
    assert verdict.verdict == "allow"
    (reason,) = verdict.reasons
    assert reason.rule == "pdq.low_quality" and reason.score < 50 and "not used for matching" in reason.detail
    strict = Engine(banked.data_dir, policy="policies/strict.yaml")
    assert strict.check(path).verdict == "review"


def test_undecodable_input_gets_on_error_verdict(banked, tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    verdict = banked.check(path)
    assert verdict.verdict == "review"
    assert verdict.error_code in ("corrupt", "truncated", "unsupported_format")
    assert str(path) in verdict.error and "\n" not in verdict.error
    lenient = Engine(banked.data_dir, policy=Policy(on_error="block"))
    assert lenient.check(path).verdict == "block"


def test_every_frame_of_an_animation_is_checked(banked, photos, tmp_path):
    flagged = Image.open(photos["astronaut"]).convert("RGB")
    clean = Image.open(photos["chelsea"]).convert("RGB").resize(flagged.size)
    path = tmp_path / "anim.gif"
    clean.save(path, save_all=True, append_images=[flagged, clean], duration=100)
    verdicts = banked.check_frames(path)
    assert [v.frame for v in verdicts] == [0, 1, 2]
    assert [v.verdict for v in verdicts] == ["allow", "block", "allow"]
    assert all(v.frames == 3 for v in verdicts)
    combined = banked.check(path)
    assert combined.verdict == "block" and combined.frame == 1


def test_disabled_bank_is_not_used_and_policy_can_pick_banks(banked, photos):
    banked.banks.create("SPAM", action="review")
    banked.banks.add("SPAM", [photos["astronaut"]], reference_id="spam-astro")
    verdict = banked.check(photos["astronaut"])
    assert {(r.bank, r.action) for r in verdict.reasons} == {("TERROR", "block"), ("SPAM", "review")}

    only_spam = Engine(banked.data_dir, policy=Policy(banks={"SPAM": "bank"}))
    assert only_spam.check(photos["astronaut"]).verdict == "review"
    spam_blocks = Engine(banked.data_dir, policy=Policy(banks={"SPAM": "block"}))
    assert spam_blocks.check(photos["astronaut"]).verdict == "block"

    banked.banks.disable("TERROR")
    assert banked.check(photos["astronaut"]).verdict == "review"
    banked.banks.enable("TERROR")
    assert banked.check(photos["astronaut"]).verdict == "block"


def test_check_many_with_workers_returns_every_input(banked, photos, edited):
    flagged = [str(p) for _, _, p in edited[:MIN_BATCH_FOR_WORKERS]]
    paths = flagged + [str(photos["chelsea"]), str(photos["moon"])]
    results = list(banked.check_many(paths, workers=2))  # enough inputs for worker processes
    by_source = {v[0].source: v[0].verdict for v in results}
    assert set(by_source) == set(paths) and len(results) == len(paths)
    assert by_source[str(photos["chelsea"])] == "allow"
    assert sum(v == "block" for v in by_source.values()) == len(flagged)


def test_hash_needs_no_store(tmp_path, photos):
    engine = Engine(data_dir=tmp_path / "never-created")
    (signals,) = engine.hash(photos["astronaut"])
    assert len(signals.pdq[0].hex) == 64 and signals.pdq[0].quality == 100
    assert not (tmp_path / "never-created").exists()


def test_policy_naming_a_missing_bank_fails_the_check(banked, photos):
    typo = Engine(banked.data_dir, policy=Policy(banks={"TEROR": "block"}, source="p.yaml"))
    with pytest.raises(PolicyError, match="p.yaml: banks.TEROR: no such bank"):
        typo.check(photos["astronaut"])


def test_url_inputs_are_fetched_and_checked(banked, photos):
    import http.server
    import threading

    body = photos["rocket"].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/upload.png"
    try:
        blocked = banked.check(url)  # loopback is refused unless allowed: fail closed to on_error
        assert blocked.verdict == "review" and blocked.error_code == "url_blocked"
        allowed = Engine(banked.data_dir, allow_hosts=("127.0.0.1",)).check(url)
        assert allowed.verdict == "block" and allowed.source == url
        assert allowed.reasons[0].reference_id == "rocket"
    finally:
        server.shutdown()
