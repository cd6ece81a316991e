"""Signed originals with real Ed25519 keys: the five states, carriers, registry and modified copies."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from PIL import Image, PngImagePlugin

from moderate import Engine, Policy, ProvenanceError
from moderate.policy import ProvenanceRules
from moderate.provenance import carriers

from .conftest import run_cli


@pytest.fixture
def publisher(engine):
    """An engine with an own key `news` whose public key is trusted as 'Daily News Ltd'."""
    key = engine.keys.generate("news", signer="Daily News")
    engine.keys.trust(key.path.with_suffix(".pub"), "Daily News Ltd")
    return engine


@pytest.fixture
def png(tmp_path, photos):
    path = tmp_path / "original.png"
    shutil.copy(photos["coffee"], path)
    return path


@pytest.fixture
def jpeg(tmp_path, photos):
    path = tmp_path / "original.jpg"
    Image.open(photos["rocket"]).save(path, quality=88)
    return path


def test_private_key_is_owner_only_and_passphrase_protects_it(engine):
    key = engine.keys.generate("k1")
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    locked = engine.keys.generate("k2", passphrase="correct horse")
    assert locked.encrypted and b"ENCRYPTED" in locked.path.read_bytes()
    with pytest.raises(ProvenanceError, match="encrypted"):
        engine.keys.private_key("k2")
    with pytest.raises(ProvenanceError, match="wrong passphrase"):
        engine.keys.private_key("k2", "wrong")
    assert engine.keys.private_key("k2", "correct horse") is not None


@pytest.mark.parametrize("digest", ["pixels-v1", "jpeg-scan-v1"])
def test_verified_embedded_in_jpeg(publisher, jpeg, digest):
    publisher.signatures.sign(jpeg, "news", digest_type=digest)
    result = publisher.verify(jpeg)
    assert (result.state, result.signer, result.carrier, result.digest_type) == ("verified", "Daily News Ltd", "embedded", digest)
    assert Image.open(jpeg).size == (640, 427)  # still a valid JPEG


def test_verified_embedded_in_png_and_metadata_edits_keep_it(publisher, png, tmp_path):
    publisher.signatures.sign(png, "news")
    assert publisher.verify(png).state == "verified"
    # Re-save losslessly with new metadata, then carry the signature over: still verified.
    image = Image.open(png)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "edited caption")
    resaved = tmp_path / "resaved.png"
    image.save(resaved, pnginfo=info, compress_level=1)
    envelope = carriers.extract(png.read_bytes(), "png")
    resaved.write_bytes(carriers.embed(resaved.read_bytes(), envelope, "resaved"))
    assert publisher.verify(resaved).state == "verified"


def test_one_pixel_edit_is_tampered(publisher, png, tmp_path):
    publisher.signatures.sign(png, "news")
    image = Image.open(png).convert("RGB")
    r, g, b = image.getpixel((10, 10))
    image.putpixel((10, 10), ((r + 1) % 256, g, b))
    edited = tmp_path / "edited.png"
    image.save(edited)
    edited.write_bytes(carriers.embed(edited.read_bytes(), carriers.extract(png.read_bytes(), "x"), "edited"))
    result = publisher.verify(edited)
    assert result.state == "tampered" and "digest differs" in result.detail and result.signer == "Daily News"


def test_jpeg_scan_digest_breaks_on_reencode(publisher, jpeg, tmp_path):
    publisher.signatures.sign(jpeg, "news", digest_type="jpeg-scan-v1")
    reencoded = tmp_path / "re.jpg"
    Image.open(jpeg).save(reencoded, quality=70)
    reencoded.write_bytes(carriers.embed(reencoded.read_bytes(), carriers.extract(jpeg.read_bytes(), "j"), "re"))
    assert publisher.verify(reencoded).state == "tampered"


def test_untrusted_and_invalid_and_unsigned(publisher, png, tmp_path, photos):
    publisher.keys.generate("stranger", signer="Someone Else")
    publisher.signatures.sign(png, "stranger")
    result = publisher.verify(png)
    assert (result.state, result.signer) == ("untrusted", "Someone Else")

    envelope = json.loads(carriers.extract(png.read_bytes(), "p"))
    envelope["record"]["signer"] = "Daily News"  # a forged claim: the signature no longer covers the record
    forged = tmp_path / "forged.png"
    forged.write_bytes(carriers.embed(png.read_bytes(), json.dumps(envelope).encode(), "f"))
    assert publisher.verify(forged).state == "invalid"
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(carriers.embed(png.read_bytes(), b"{not json", "g"))
    result = publisher.verify(garbage)
    assert result.state == "invalid" and "malformed" in result.detail

    assert publisher.verify(photos["moon"]).state == "unsigned"
    publisher.keys.untrust("Daily News Ltd")


def test_untrusting_a_key_turns_verified_into_untrusted(publisher, png):
    publisher.signatures.sign(png, "news")
    publisher.keys.untrust("Daily News Ltd")
    assert publisher.verify(png).state == "untrusted"


def test_detached_signature_for_any_format(publisher, photos, tmp_path):
    webp = tmp_path / "photo.webp"
    Image.open(photos["astronaut"]).save(webp, lossless=True)
    with pytest.raises(ProvenanceError, match="use --detached"):
        publisher.signatures.sign(webp, "news")
    signed = publisher.signatures.sign(webp, "news", detached=True)
    assert signed.signature_path == tmp_path / "photo.webp.sig.json"
    result = publisher.verify(webp)
    assert (result.state, result.carrier) == ("verified", "detached")
    elsewhere = tmp_path / "sigs" / "x.json"
    elsewhere.parent.mkdir()
    shutil.move(signed.signature_path, elsewhere)
    assert publisher.verify(webp).state == "unsigned"
    assert publisher.verify(webp, elsewhere).state == "verified"


def test_registry_recognizes_a_stripped_original_and_flags_modified_copies(publisher, jpeg, tmp_path, photos):
    publisher.banks.create("ORIGINALS", action="review", kind="originals")
    publisher.signatures.sign(jpeg, "news", register="ORIGINALS", reference_id="rocket-2026")

    stripped = tmp_path / "stripped.jpg"
    data = jpeg.read_bytes()
    stripped.write_bytes(b"".join(s for s in carriers.jpeg_segments(data, "j") if not carriers._is_our_comment(s)))
    assert carriers.extract(stripped.read_bytes(), "s") is None
    result = publisher.verify(stripped)
    assert (result.state, result.carrier, result.signer) == ("verified", "registry", "Daily News Ltd")
    assert result.reference == {"bank": "ORIGINALS", "reference_id": "rocket-2026"}

    # In check: the original itself is recognized, a re-encoded copy is a modified copy (review).
    original = publisher.check(jpeg)
    assert original.verdict == "allow" and original.provenance.state == "verified"
    assert original.reasons[0].rule == "provenance.original"
    copy = tmp_path / "copy.jpg"
    Image.open(jpeg).resize((320, 213)).save(copy, quality=60)
    verdict = publisher.check(copy)
    assert verdict.verdict == "review"
    reason = verdict.reasons[0]
    assert (reason.rule, reason.bank, reason.reference_id, reason.signer) == (
        "provenance.modified_copy", "ORIGINALS", "rocket-2026", "Daily News")
    assert reason.detail == "modified copy of Daily News's original rocket-2026"
    assert verdict.to_dict()["reasons"][0]["signer"] == "Daily News"
    assert publisher.check(photos["chelsea"]).verdict == "allow"


def test_verified_original_can_be_allowed_over_a_flagged_match(publisher, png, photos):
    publisher.banks.create("TERROR", action="block")
    publisher.banks.add("TERROR", [photos["coffee"]])
    publisher.signatures.sign(png, "news")
    assert publisher.check(png).verdict == "block"
    lenient = Engine(publisher.data_dir, policy=Policy(provenance=ProvenanceRules(allow_verified_originals=True)))
    verdict = lenient.check(png)
    assert verdict.verdict == "allow"
    assert {r.rule for r in verdict.reasons} == {"provenance.verified_original", "digest.exact"}  # same pixels
    allowed = next(r for r in verdict.reasons if r.rule == "provenance.verified_original")
    assert "Daily News Ltd" in allowed.detail


def test_cli_keys_sign_verify_exit_codes(data_dir, png, tmp_path):
    assert run_cli("keys", "generate", "desk", "--signer", "Desk", data_dir=data_dir).returncode == 0
    pub = data_dir / "keys" / "desk.pub"
    assert run_cli("sign", str(png), "--key", "desk", data_dir=data_dir).returncode == 0
    assert run_cli("verify", str(png), data_dir=data_dir).returncode == 6  # untrusted
    assert run_cli("keys", "trust", str(pub), "--name", "The Desk", data_dir=data_dir).returncode == 0
    out = run_cli("verify", str(png), "--json", data_dir=data_dir)
    assert out.returncode == 0
    record = json.loads(out.stdout)
    assert (record["source"], record["state"], record["signer"]) == (str(png), "verified", "The Desk")
    listing = json.loads(run_cli("keys", "list", "--json", data_dir=data_dir).stdout)
    assert listing["own"][0]["name"] == "desk" and listing["trusted"][0]["name"] == "The Desk"
    unsigned = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), "red").save(unsigned)
    assert run_cli("verify", str(unsigned), data_dir=data_dir).returncode == 5
    locked = run_cli("keys", "generate", "locked", "--passphrase", data_dir=data_dir,
                     env={"MODERATE_KEY_PASSPHRASE": "s3cret"})
    assert locked.returncode == 0
    no_pass = run_cli("sign", str(png), "--key", "locked", data_dir=data_dir, env={"MODERATE_KEY_PASSPHRASE": ""})
    assert no_pass.returncode == 1 and no_pass.stderr.decode().startswith("error: ")
    ok = run_cli("sign", str(png), "--key", "locked", data_dir=data_dir, env={"MODERATE_KEY_PASSPHRASE": "s3cret"})
    assert ok.returncode == 0


def test_signing_is_atomic_and_bad_input_is_refused(publisher, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before = broken.read_bytes()
    with pytest.raises(Exception) as info:
        publisher.signatures.sign(broken, "news")
    assert "broken.png" in str(info.value)
    assert broken.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
