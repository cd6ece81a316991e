"""C2PA results to states (issue #16 items 2 and 3, remote-only credentials, signed_at): every code
maps explicitly, every manifest counts, nothing is fetched, a claimed time is marked as such."""

from __future__ import annotations

import io
import json
import socket
from datetime import timedelta

import c2pa
import pytest
from PIL import Image

from moderate.provenance import credentials as c2pa_states
from moderate.provenance.credentials import _algorithm

from .conftest import run_cli
from .pki import make_pki, png_bytes, png_chunks

CREATED = {"label": "c2pa.actions", "data": {"actions": [{
    "action": "c2pa.created", "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki") / "trusted", "Daily News")


@pytest.fixture
def trusting(engine, pki):
    engine.signatures.credentials.set_trust_anchors(pki["root"])
    return engine


def _sdk_sign(pki, manifest: dict, mime: str, data: bytes, thumbnail=False, ingredient: bytes | None = None,
              remote_url: str | None = None) -> bytes:
    """Sign with the SDK directly, for what `moderate sign --c2pa` does not make (thumbnails,
    ingredients, remote-only manifests)."""
    key, chain = pki["key"].read_bytes(), pki["chain"].read_bytes()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(key), chain, key, None))
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": thumbnail}}})
    builder = c2pa.Builder({"claim_generator_info": [{"name": "tests", "version": "1"}], **manifest}, context=context)
    if ingredient is not None:
        builder.add_ingredient({"title": "parent.jpg", "relationship": "parentOf", "label": "parent"}, mime, io.BytesIO(ingredient))
    if remote_url:
        builder.set_no_embed()
        builder.set_remote_url(remote_url)
    out = io.BytesIO()
    builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def _jpeg(photos, name) -> bytes:
    out = io.BytesIO()
    Image.open(photos[name]).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.mark.parametrize("code, state", [
    ("assertion.dataHash.mismatch", "tampered"), ("assertion.boxesHash.mismatch", "tampered"),
    ("assertion.hashedURI.mismatch", "tampered"), ("ingredient.manifest.mismatch", "tampered"),
    ("claimSignature.mismatch", "invalid"), ("claimSignature.missing", "invalid"),
    ("signingCredential.expired", "invalid"), ("signingCredential.invalid", "invalid"),
    ("timeStamp.mismatch", "invalid"), ("claim.malformed", "invalid"), ("manifest.missing", "invalid"),
    ("assertion.action.malformed", "invalid"), ("moderate.certificate.eku", "invalid"),
    ("signingCredential.untrusted", "untrusted"), ("timeStamp.untrusted", "untrusted"),
    ("someFuture.code.mismatch", "invalid"),  # unknown: fails closed, whatever its suffix
])
def test_every_code_family_maps_to_a_state_explicitly(code, state):
    assert c2pa_states.state_of(code) == state


def test_a_broken_claim_signature_is_invalid_not_tampered(trusting, pki, photos, tmp_path, data_dir):
    """Regression (#16.2): one byte of the claim's title, chunk CRC fixed, used to say `tampered`."""
    png = tmp_path / "title.png"
    Image.open(photos["coffee"]).save(png)
    trusting.signatures.sign_c2pa(png, pki["chain"], pki["key"])
    chunks = png_chunks(png.read_bytes())
    at = next(i for i, (kind, _) in enumerate(chunks) if kind == b"caBX")
    body = chunks[at][1]
    title = body.index(b"title.png")
    chunks[at] = (b"caBX", body[:title] + b"T" + body[title + 1:])
    png.write_bytes(png_bytes(chunks))  # every CRC right: only the signed claim changed
    result = trusting.verify(png)
    assert result.state == "invalid" and "claimSignature.mismatch" in result.codes
    assert "claimSignature.mismatch in active manifest" in result.detail
    assert run_cli("verify", str(png), data_dir=data_dir).returncode == 8


def test_a_failure_inside_an_ingredient_is_read_and_decides(trusting, pki, photos):
    """Regression (#16.3): a flipped byte in an ingredient's claim thumbnail was `invalid`, 'no detail'."""
    parent = _sdk_sign(pki, {"title": "parent.jpg", "assertions": [CREATED]}, "image/jpeg", _jpeg(photos, "rocket"),
                       thumbnail=True)
    opened = {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}]}}
    child = _sdk_sign(pki, {"title": "child.jpg", "assertions": [opened]}, "image/jpeg", _jpeg(photos, "rocket"),
                      ingredient=parent)
    assert trusting.signatures.credentials.verify(child, "child").state == "verified"
    thumbnail = child.index(b"\xff\xd8\xff", child.index(b"c2pa.thumbnail.claim"))  # the JPEG inside the ingredient
    broken = bytearray(child)
    broken[thumbnail + 200] ^= 0x01
    result = trusting.signatures.credentials.verify(bytes(broken), "child")
    assert result.state == "tampered"
    where = {(f["code"], f["where"]) for f in result.failures}
    assert ("ingredient.manifest.mismatch", "ingredient c2pa.ingredient.v3") in where
    assert ("assertion.hashedURI.mismatch", "ingredient c2pa.ingredient.v3") in where
    assert "ingredient.manifest.mismatch" in result.codes and "in ingredient c2pa.ingredient.v3" in result.detail
    assert json.loads(json.dumps(result.to_dict()))["failures"][0]["where"].startswith("ingredient")


@pytest.mark.parametrize("path", ["/manifests/abc", "/jumb/c2pa/abc.c2pa"], ids=["plain-url", "url-with-box-names"])
def test_remote_only_credentials_are_unsigned_and_never_fetched(trusting, pki, photos, tmp_path, data_dir, path):
    """One state whatever the URL says (a byte sniff used to decide), and no connection is made."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}{path}"
        image = tmp_path / "remote.jpg"
        image.write_bytes(_sdk_sign(pki, {"title": "remote.jpg", "assertions": [CREATED]}, "image/jpeg",
                                    _jpeg(photos, "coffee"), remote_url=url))
        result = trusting.verify(image)
        assert (result.state, result.scheme, result.carrier, result.remote_url) == ("unsigned", "c2pa", "remote", url)
        out = run_cli("verify", str(image), "--json", data_dir=data_dir)
        assert out.returncode == 5 and json.loads(out.stdout)["remote_url"] == url
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody came to fetch the manifest


def test_signed_at_without_a_trusted_timestamp_is_marked_as_the_signers_claim(trusting, pki, photos, tmp_path, data_dir):
    png = tmp_path / "claimed.png"
    Image.open(photos["astronaut"]).save(png)
    trusting.signatures.sign_c2pa(png, pki["chain"], pki["key"])
    out = run_cli("verify", str(png), "--json", data_dir=data_dir)
    record = json.loads(out.stdout)
    assert out.returncode == 0 and record["signed_at"] and record["signed_at_source"] == "claimed"
    text = run_cli("verify", str(png), data_dir=data_dir).stdout.decode()
    assert text.startswith("VERIFIED by Daily News Signer") and f"signed at {record['signed_at']} (claimed by the signer)" in text


def test_a_certificate_not_valid_at_the_signing_time_fails(trusting, pki, photos, tmp_path):
    """The SDK refuses to sign with a not-yet-valid certificate and reports `insideValidity` when no
    time-stamp says otherwise; our own check is exercised with a real manifest and a time before
    the certificate's start, as a trusted time-stamp would give it."""
    png = tmp_path / "early.png"
    Image.open(photos["coffee"]).save(png)
    signed, manifest_store = trusting.signatures.credentials.sign(png.read_bytes(), "PNG", pki["chain"], pki["key"], "early.png")
    credentials = trusting.signatures.credentials
    with c2pa.Reader(io.BytesIO(signed)) as reader:
        info = reader.get_active_manifest()["signature_info"]
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(pki["chain"].read_bytes())[0]
    assert credentials._credential_failures(manifest_store, info, None) == []
    early = (leaf.not_valid_before_utc - timedelta(days=1)).isoformat()
    late = (leaf.not_valid_after_utc + timedelta(days=1)).isoformat()
    assert [f["code"] for f in credentials._credential_failures(manifest_store, info, early)] == ["moderate.certificate.notYetValid"]
    assert [f["code"] for f in credentials._credential_failures(manifest_store, info, late)] == ["moderate.certificate.expired"]
    assert [f["code"] for f in credentials._credential_failures(b"", info, None)] == ["moderate.certificate.missing"]
