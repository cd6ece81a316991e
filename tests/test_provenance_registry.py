"""Registered originals never vouch for more than their signature (issue #16 item 1): the evidence
an entry was registered with is re-evaluated against today's trust on every read, and `check`
reports the same state as `verify`."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from moderate import ProvenanceError
from moderate.provenance import digests

from .conftest import run_cli
from .pki import make_pki, png_chunks


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"trusted": make_pki(root / "trusted", "Daily News"), "other": make_pki(root / "other", "Unknown Org")}


def _stripped(path):
    """A lossless re-save: same pixels, and Pillow keeps neither caBX (C2PA) nor our iTXt."""
    out = path.with_name(f"stripped-{path.name}")
    Image.open(path).save(out, compress_level=1)
    assert {kind for kind, _ in png_chunks(out.read_bytes())} <= {b"IHDR", b"IDAT", b"IEND"}
    return out


def _check(data_dir, path) -> dict:
    return json.loads(run_cli("check", str(path), "--json", data_dir=data_dir).stdout)


def test_stripping_an_untrusted_c2pa_original_does_not_make_it_verified(data_dir, pkis, photos, tmp_path):
    """Regression: the stripped file used to verify (`carrier: registry`) and be allowed by check."""
    png = tmp_path / "photo.png"
    Image.open(photos["coffee"]).save(png)
    assert run_cli("keys", "trust-c2pa", str(pkis["trusted"]["root"]), data_dir=data_dir).returncode == 0
    assert run_cli("bank", "create", "ORIGINALS", "--kind", "originals", data_dir=data_dir).returncode == 0
    signed = run_cli("sign", str(png), "--c2pa", "--cert", str(pkis["other"]["chain"]), "--key", str(pkis["other"]["key"]),
                     "--register", "ORIGINALS", data_dir=data_dir)
    assert signed.returncode == 0, signed.stderr  # untrusted is registered as such
    assert run_cli("verify", str(png), data_dir=data_dir).returncode == 6

    stripped = _stripped(png)
    out = run_cli("verify", str(stripped), "--json", data_dir=data_dir)
    result = json.loads(out.stdout)
    assert out.returncode == 6 and (result["state"], result["carrier"]) == ("untrusted", "registry")
    assert result["signer"] == "Unknown Org Signer, Unknown Org" and "signingCredential.untrusted" in result["codes"]
    verdict = _check(data_dir, stripped)
    assert verdict["provenance"]["state"] == "untrusted"
    assert [r["rule"] for r in verdict["reasons"]] == ["provenance.unverified_original"]
    assert verdict["verdict"] == "review"


def test_replaced_anchors_downgrade_a_registered_c2pa_original(engine, data_dir, pkis, photos, tmp_path):
    credentials = engine.signatures.credentials
    credentials.set_trust_anchors(pkis["trusted"]["root"])
    engine.banks.create("ORIGINALS", kind="originals", action="review")
    png = tmp_path / "photo.png"
    Image.open(photos["astronaut"]).save(png)
    engine.signatures.sign_c2pa(png, pkis["trusted"]["chain"], pkis["trusted"]["key"], register="ORIGINALS")
    stripped = _stripped(png)
    found = engine.verify(stripped)
    assert (found.state, found.carrier, found.digest_type) == ("verified", "registry", "pixels-v2")
    assert found.reference == {"bank": "ORIGINALS", "reference_id": "photo"}
    verdict = _check(data_dir, stripped)
    assert verdict["verdict"] == "allow" and verdict["provenance"]["state"] == "verified"
    assert verdict["reasons"][0]["rule"] == "provenance.original"

    credentials.set_trust_anchors(pkis["other"]["root"])  # the publisher's root is no longer an anchor
    for path in (stripped, png):
        assert engine.verify(path).state == "untrusted"
        verdict = _check(data_dir, path)
        assert (verdict["verdict"], verdict["provenance"]["state"]) == ("review", "untrusted")
        assert verdict["reasons"][0]["rule"] == "provenance.unverified_original"


def test_untrusting_an_own_key_after_registration(engine, data_dir, photos, tmp_path):
    key = engine.keys.generate("news", signer="Daily News")
    engine.keys.trust(key.path.with_suffix(".pub"), "Daily News Ltd")
    engine.banks.create("ORIGINALS", kind="originals", action="review")
    png = tmp_path / "photo.png"
    Image.open(photos["rocket"]).save(png)
    engine.signatures.sign(png, "news", register="ORIGINALS")
    stripped = _stripped(png)
    assert (engine.verify(stripped).state, _check(data_dir, stripped)["verdict"]) == ("verified", "allow")
    engine.keys.untrust("Daily News Ltd")
    verdict = _check(data_dir, stripped)
    assert engine.verify(stripped).state == verdict["provenance"]["state"] == "untrusted"
    assert verdict["reasons"][0]["rule"] == "provenance.unverified_original"


@pytest.mark.parametrize("evidence, detail", [
    (None, "registered without its C2PA manifest store"),  # as older versions registered C2PA originals
    (base64.b64encode(b"not a manifest store").decode(), "registered C2PA manifest unreadable"),
])
def test_a_registry_entry_without_readable_evidence_is_invalid(engine, photos, tmp_path, evidence, detail):
    png = tmp_path / "photo.png"
    Image.open(photos["coffee"]).save(png)
    engine.banks.create("ORIGINALS", kind="originals", action="review")
    metadata = {"scheme": "c2pa", "signer": "Someone", "digest_type": "pixels-v2",
                "signed_digest": digests.compute("pixels-v2", png.read_bytes()).hex}
    if evidence:
        metadata["signature"] = evidence
    engine.banks.add("ORIGINALS", [png], reference_id="old", metadata=metadata)
    result = engine.verify(png)
    assert (result.state, result.carrier) == ("invalid", "registry") and detail in result.detail


def test_credentials_outside_the_allowed_ekus_are_never_verified_nor_registered(engine, pkis, photos, tmp_path):
    """The SDK refuses to sign with a wrong-EKU certificate, so narrow the allowed EKUs instead:
    the test PKI's emailProtection leaf is then outside them."""
    credentials = engine.signatures.credentials
    credentials.set_trust_anchors(pkis["trusted"]["root"])
    credentials.ekus_path.write_text("1.3.6.1.5.5.7.3.36\n")  # documentSigning only
    engine.banks.create("ORIGINALS", kind="originals", action="review")
    png = tmp_path / "photo.png"
    Image.open(photos["coffee"]).save(png)
    before = png.read_bytes()
    with pytest.raises(ProvenanceError, match="not registered: its C2PA credentials are invalid"):
        engine.signatures.sign_c2pa(png, pkis["trusted"]["chain"], pkis["trusted"]["key"], register="ORIGINALS")
    assert png.read_bytes() == before  # refused before anything was written
    engine.signatures.sign_c2pa(png, pkis["trusted"]["chain"], pkis["trusted"]["key"])
    result = engine.verify(png)
    assert result.state == "invalid" and "moderate.certificate.eku" in result.codes
