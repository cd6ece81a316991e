"""C2PA Content Credentials with a PKI the tests make: Trusted, untrusted, tampered, unsigned."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from .conftest import run_cli
from .pki import make_pki


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"trusted": make_pki(root / "trusted", "Daily News"), "other": make_pki(root / "other", "Unknown Org")}


@pytest.fixture
def signed(engine, pkis, photos, tmp_path):
    """A JPEG with Content Credentials by the trusted PKI; its root is this data folder's anchor."""
    engine.signatures.credentials.set_trust_anchors(pkis["trusted"]["root"])
    path = tmp_path / "news.jpg"
    Image.open(photos["rocket"]).save(path, quality=90)
    engine.signatures.sign_c2pa(path, pkis["trusted"]["chain"], pkis["trusted"]["key"])
    return path


def test_trusted_credentials_verify_with_signer(engine, signed):
    result = engine.verify(signed)
    assert (result.state, result.scheme) == ("verified", "c2pa")
    assert result.signer == "Daily News Signer, Daily News"
    assert "signingCredential.trusted" in result.codes and "assertion.dataHash.match" in result.codes
    assert result.signed_at


def test_untrusted_signer(engine, pkis, photos, tmp_path):
    engine.signatures.credentials.set_trust_anchors(pkis["trusted"]["root"])
    path = tmp_path / "other.png"
    shutil.copy(photos["coffee"], path)
    engine.signatures.sign_c2pa(path, pkis["other"]["chain"], pkis["other"]["key"])
    result = engine.verify(path)
    assert result.state == "untrusted" and result.codes == ("signingCredential.untrusted",)
    assert result.signer.startswith("Unknown Org Signer")


def test_tampered_pixels(engine, signed, tmp_path):
    data = bytearray(signed.read_bytes())
    sos = data.rfind(b"\xff\xda")
    data[sos + 400] ^= 0x01  # one bit of entropy-coded data, manifest untouched
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(bytes(data))
    result = engine.verify(tampered)
    assert result.state == "tampered" and "assertion.dataHash.mismatch" in result.codes


def test_without_anchors_nothing_is_verified(engine, pkis, photos, tmp_path):
    path = tmp_path / "x.jpg"
    Image.open(photos["astronaut"]).save(path, quality=90)
    engine.signatures.sign_c2pa(path, pkis["trusted"]["chain"], pkis["trusted"]["key"])
    result = engine.verify(path)
    assert result.state == "untrusted" and "none configured" in result.detail


def test_c2pa_in_check_json_and_modified_copy(engine, pkis, photos, tmp_path, data_dir):
    engine.signatures.credentials.set_trust_anchors(pkis["trusted"]["root"])
    engine.banks.create("ORIGINALS", kind="originals", action="review")
    original = tmp_path / "original.jpg"
    Image.open(photos["motorcycle"]).save(original, quality=92)
    engine.signatures.sign_c2pa(original, pkis["trusted"]["chain"], pkis["trusted"]["key"], register="ORIGINALS")
    own = json.loads(run_cli("check", str(original), "--json", data_dir=data_dir).stdout)
    assert own["verdict"] == "allow" and own["provenance"]["state"] == "verified"
    assert own["reasons"][0]["rule"] == "provenance.original"
    copy = tmp_path / "copy.jpg"
    Image.open(original).resize((370, 250)).save(copy, quality=70)
    out = run_cli("check", str(copy), "--json", data_dir=data_dir)
    verdict = json.loads(out.stdout)
    assert out.returncode == 3 and verdict["provenance"]["state"] == "unsigned"
    assert verdict["reasons"][0]["rule"] == "provenance.modified_copy"
    assert verdict["reasons"][0]["signer"] == "Daily News Signer, Daily News"


def test_cli_sign_c2pa_and_verify(data_dir, pkis, photos, tmp_path):
    path = tmp_path / "cli.png"
    shutil.copy(photos["astronaut"], path)
    assert run_cli("keys", "trust-c2pa", str(pkis["trusted"]["root"]), data_dir=data_dir).returncode == 0
    out = run_cli("sign", str(path), "--c2pa", "--cert", str(pkis["trusted"]["chain"]), "--key",
                  str(pkis["trusted"]["key"]), "--out", str(tmp_path / "signed.png"), data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    verified = run_cli("verify", str(tmp_path / "signed.png"), "--json", data_dir=data_dir)
    assert verified.returncode == 0 and json.loads(verified.stdout)["scheme"] == "c2pa"
    assert run_cli("verify", str(path), data_dir=data_dir).returncode == 5  # the input was left alone
    missing = run_cli("sign", str(path), "--c2pa", "--key", str(pkis["trusted"]["key"]), data_dir=data_dir)
    assert missing.returncode == 1 and "--cert" in missing.stderr.decode()
