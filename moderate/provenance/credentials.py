"""C2PA Content Credentials, read and signed with c2pa-python, always offline.

Reading never fetches remote manifests or OCSP responses (c2pa-rs fetches remote manifests by
default, which would leak what we check to a third party and let a slow host stall a check).
Trust comes only from `DATA/c2pa/trust_anchors.pem` (replacing the SDK's built-in list) and the
extra EKUs allowed in `DATA/c2pa/allowed_ekus.txt` (one OID per line; emailProtection and
documentSigning by default).

The C2PA states map to ours honestly:
- `Trusted` with no failure codes -> verified;
- `Valid` with `signingCredential.untrusted` -> untrusted (the signature holds, the signer is unknown);
- `Invalid` with a content-binding mismatch (`assertion.dataHash.mismatch`, ...) -> tampered;
- anything else -> invalid. Without a configured trust anchor nothing can be `verified`.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ProvenanceError
from .signature import Provenance

DEFAULT_EKUS = ("1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.36")  # emailProtection, documentSigning
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "TIFF": "image/tiff"}
TAMPER_CODES = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch",
                "assertion.hashedURI.mismatch")


class Credentials:
    """C2PA reading and signing under this data folder's trust settings."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir) / "c2pa"
        self.anchors_path = self.dir / "trust_anchors.pem"
        self.ekus_path = self.dir / "allowed_ekus.txt"

    @staticmethod
    def present(data: bytes) -> bool:
        """Cheap sniff before the SDK parses anything: C2PA manifests live in JUMBF boxes labelled c2pa."""
        return b"jumb" in data and b"c2pa" in data

    def set_trust_anchors(self, pem_file: Path) -> int:
        """Install trust anchors (PEM certificates); returns how many."""
        from cryptography import x509

        try:
            pem = Path(pem_file).read_bytes()
            certs = x509.load_pem_x509_certificates(pem)
        except (OSError, ValueError) as exc:
            raise ProvenanceError(f"{pem_file}: not a readable PEM certificate file ({getattr(exc, 'strerror', None) or exc})") from None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.anchors_path.write_bytes(pem)
        return len(certs)

    def _ekus(self) -> str:
        try:
            lines = [line.strip() for line in self.ekus_path.read_text().splitlines()]
            oids = [line for line in lines if line and not line.startswith("#")]
        except FileNotFoundError:
            oids = list(DEFAULT_EKUS)
        return "".join(f"{oid}\n" for oid in oids)

    def _context(self, reading: bool):
        import c2pa

        settings: dict = {
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
            "trust": {"trust_config": self._ekus()},
        }
        if reading:
            settings["verify"].update({"verify_after_reading": True, "verify_trust": True})
            if self.anchors_path.exists():
                settings["trust"]["trust_anchors"] = self.anchors_path.read_text()
        else:
            settings["builder"] = {"thumbnail": {"enabled": False}}
        try:
            return c2pa.Context.from_dict(settings)
        except c2pa.C2paError as exc:
            raise ProvenanceError(f"{self.dir}: C2PA trust settings rejected: {exc}") from None

    def verify(self, data: bytes, name: str) -> Provenance:
        import c2pa

        try:
            with c2pa.Reader(io.BytesIO(data), context=self._context(reading=True)) as reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                active = reader.get_active_manifest() or {}
        except c2pa.C2paError.ManifestNotFound:
            return Provenance("unsigned")
        except c2pa.C2paError as exc:
            return Provenance("invalid", "c2pa", carrier="embedded", detail=f"C2PA manifest unreadable: {exc}")
        summary = results.get("activeManifest", {})
        failures = tuple(s.get("code", "") for s in summary.get("failure", []))
        signature_info = active.get("signature_info", {})
        signer = ", ".join(filter(None, [signature_info.get("common_name"), signature_info.get("issuer")])) or None
        facts = {"scheme": "c2pa", "carrier": "embedded", "signer": signer, "signed_at": _signed_at(active, signature_info),
                 "digest_type": "c2pa", "codes": failures or tuple(s.get("code", "") for s in summary.get("success", []))}
        if state == "Trusted" and not failures:
            return Provenance("verified", **facts)
        if any(code in TAMPER_CODES or code.endswith(".mismatch") for code in failures):
            return Provenance("tampered", detail="C2PA content binding does not match the image", **facts)
        if state == "Valid" and set(failures) <= {"signingCredential.untrusted"}:
            detail = "valid C2PA signature by a signer outside the trust anchors"
            if not self.anchors_path.exists():
                detail += f" (none configured: {self.anchors_path})"
            return Provenance("untrusted", detail=detail, **facts)
        return Provenance("invalid", detail=f"C2PA validation state {state}: {', '.join(failures) or 'no detail'}", **facts)

    def sign(self, data: bytes, image_format: str, chain_pem: Path, key_pem: Path, title: str) -> bytes:
        """`data` with a signed C2PA manifest embedded (a c2pa.created action; no thumbnail)."""
        import c2pa

        mime = MIME.get(image_format)
        if mime is None:
            raise ProvenanceError(f"{title}: C2PA signing supports {', '.join(MIME)}, not {image_format}")
        try:
            chain, key = Path(chain_pem).read_bytes(), Path(key_pem).read_bytes()
        except OSError as exc:
            raise ProvenanceError(f"{exc.filename}: cannot read: {exc.strerror}") from None
        manifest = {
            "claim_generator_info": [{"name": "moderate", "version": _version()}],
            "title": title,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
                "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }]}}],
        }
        try:
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(key), chain, key, None))
            builder = c2pa.Builder(manifest, context=self._context(reading=False))
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            raise ProvenanceError(f"{title}: C2PA signing failed: {exc}") from None
        return out.getvalue()


def _algorithm(key_pem: bytes) -> str:
    """The C2PA algorithm name for a private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as exc:
        raise ProvenanceError(f"C2PA key is not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name, "es256")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ProvenanceError(f"C2PA key type {type(key).__name__} is not supported")


def _signed_at(active: dict, signature_info: dict) -> str | None:
    """The timestamp authority's time when there is one; else the self-asserted creation time."""
    if signature_info.get("time"):
        return signature_info["time"]
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                if action.get("when"):
                    return action["when"]
    return None


def _version() -> str:
    from .. import __version__

    return __version__

