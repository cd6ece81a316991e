"""C2PA Content Credentials, read and signed with c2pa-python, always offline.

Reading never fetches remote manifests or OCSP responses (c2pa-rs fetches remote manifests by
default, which would leak what we check to a third party and let a slow host stall a check).
Trust comes only from `DATA/c2pa/trust_anchors.pem` (replacing the SDK's built-in list) and the
extra EKUs allowed in `DATA/c2pa/allowed_ekus.txt` (one OID per line; emailProtection and
documentSigning by default).

Every validation result the SDK returns counts (the active manifest, every ingredient's deltas,
any other section), and each failure code maps to a state explicitly (`CODE_STATES`):
- a content binding does not match (a signed hash of the image, an assertion, a thumbnail or an
  ingredient's manifest differs from its bytes) -> tampered;
- the signer's credential is not under a trust anchor (or a time-stamp is untrusted) -> untrusted;
- claim signatures, credentials, malformed claims and manifests -> invalid, and so is any code this
  table does not know (fail closed).
The worst wins (invalid, then tampered, then untrusted); `verified` needs the SDK's `Trusted`, no
failure anywhere, and a validated claim signature by a trusted credential. Without a configured
trust anchor nothing can be `verified`.

Credentials that exist only at a remote URL are never fetched: `unsigned`, `carrier: remote`,
`remote_url` set (nothing in the file can be checked). `signed_at` is `trusted-timestamp` only with
a trusted time-stamp; otherwise it is the signer's own claim (`claimed`).
"""

from __future__ import annotations

import functools
import io
import re
from datetime import datetime, timezone
from pathlib import Path

from ..errors import MediaError, ProvenanceError
from ..media import read_file
from .signature import Provenance

DEFAULT_EKUS = ("1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.36")  # emailProtection, documentSigning
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "TIFF": "image/tiff"}

# Failure code -> state. Tampered: a hash the signed claim records does not match the bytes it covers.
_TAMPERED = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch",
             "assertion.collectionHash.mismatch", "assertion.hashedURI.mismatch", "ingredient.manifest.mismatch",
             "ingredient.claimSignature.mismatch")
# Untrusted: the signature holds, but nobody configured here vouches for who made it (or when).
_UNTRUSTED = ("signingCredential.untrusted", "timeStamp.untrusted")
# Invalid: signatures, credentials, claims and manifests that do not validate or cannot be read.
_INVALID = (
    "claimSignature.mismatch", "claimSignature.missing", "claimSignature.outsideValidity",
    "signingCredential.invalid", "signingCredential.expired", "signingCredential.revoked",
    "signingCredential.ocsp.revoked", "signingCredential.ocsp.unknown", "signingCredential.ocsp.inaccessible",
    "timeStamp.mismatch", "timeStamp.malformed", "timeStamp.outsideValidity",
    "algorithm.unsupported", "algorithm.deprecated", "general.error",
    "claim.missing", "claim.malformed", "claim.multiple", "claim.cbor.invalid", "claim.hardBindings.missing",
    "claim.required.missing", "manifest.missing", "manifest.multipleParents", "manifest.inaccessible",
    "manifest.unknownProvenance", "manifest.update.invalid", "manifest.update.wrongParents",
    "manifest.timestamp.invalid", "manifest.timestamp.wrongParents", "manifest.compressed.invalid",
    "ingredient.manifest.missing", "ingredient.claimSignature.missing", "ingredient.unknownProvenance",
    "assertion.missing", "assertion.multipleHardBindings", "assertion.undeclared", "assertion.inaccessible",
    "assertion.outsideManifest", "assertion.notRedacted", "assertion.selfRedacted", "assertion.hashedURI.missing",
    "assertion.cbor.invalid", "assertion.json.invalid", "assertion.ingredient.malformed", "assertion.timestamp.malformed",
    "assertion.action.malformed", "assertion.action.redacted", "assertion.action.redactionMismatch",
    "assertion.action.ingredientMismatch", "assertion.action.softBindingMissing",
    "assertion.dataHash.malformed", "assertion.boxesHash.malformed", "assertion.boxesHash.unknownBox",
    "assertion.bmffHash.malformed", "assertion.collectionHash.malformed", "assertion.collectionHash.invalidURI",
    "assertion.collectionHash.incorrectFileCount",
    *("moderate.certificate." + c for c in ("missing", "notYetValid", "expired", "eku")),  # _credential_failures
)
CODE_STATES = {**dict.fromkeys(_INVALID, "invalid"), **dict.fromkeys(_TAMPERED, "tampered"),
               **dict.fromkeys(_UNTRUSTED, "untrusted")}
SEVERITY = ("invalid", "tampered", "untrusted")  # the worst failure decides
# The registry binds a stripped original by its pixel digest, so the stored manifest's own hard
# binding (to the original file's bytes) cannot match and is not evidence against it.
_HARD_BINDINGS = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch",
                  "assertion.collectionHash.mismatch")
_DETAILS = {"invalid": "C2PA manifest does not validate", "tampered": "C2PA signed data does not match"}


def state_of(code: str) -> str:
    """The state a C2PA failure code stands for; a code not in `CODE_STATES` is `invalid`."""
    return CODE_STATES.get(code, "invalid")

class Credentials:
    """C2PA reading and signing under this data folder's trust settings."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir) / "c2pa"
        self.anchors_path = self.dir / "trust_anchors.pem"
        self.ekus_path = self.dir / "allowed_ekus.txt"

    def set_trust_anchors(self, pem_file: Path) -> int:
        """Install trust anchors (PEM certificates); returns how many."""
        from cryptography import x509

        try:
            pem = read_file(pem_file)
            certs = x509.load_pem_x509_certificates(pem)
        except MediaError as exc:
            raise ProvenanceError(f"{pem_file}: not a readable PEM certificate file ({exc.detail})") from None
        except ValueError as exc:
            raise ProvenanceError(f"{pem_file}: not a readable PEM certificate file ({exc})") from None
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
        """The C2PA provenance of an image's bytes (`carrier: embedded`).

        `unsigned` when there are no Content Credentials (or the SDK cannot read this format and
        the bytes hold no C2PA box); `unsigned` with `remote_url` when they exist only remotely.
        """
        import c2pa

        try:
            with c2pa.Reader(io.BytesIO(data), context=self._context(reading=True)) as reader:
                return self._judge(reader, data, "embedded")
        except (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.NotSupported):
            return Provenance("unsigned")
        except c2pa.C2paError as exc:
            message = _one_line(exc)
            if isinstance(exc, c2pa.C2paError.RemoteManifest) or message.startswith("Remote:"):
                url = _REMOTE_URL.search(message)
                return Provenance("unsigned", "c2pa", carrier="remote", remote_url=url.group(1) if url else None,
                                  detail="C2PA credentials only at a remote URL, which is never fetched")
            if not _has_jumbf(data):  # a container the SDK cannot parse, with no C2PA in it
                return Provenance("unsigned")
            return Provenance("invalid", "c2pa", carrier="embedded", detail=f"C2PA manifest unreadable: {message}")

    def reverify(self, manifest: bytes) -> Provenance:
        """Re-validate a stored manifest store (as registered) against the current trust settings.

        The claim signature, the credential's trust and every assertion are checked again; only the
        hard binding to the original file's bytes is not (the registry binds by pixel digest).
        A manifest the SDK cannot read is `invalid`. `carrier: registry`.
        """
        import c2pa

        try:  # any asset will do: its bytes only feed the hard binding, which is set aside
            with c2pa.Reader("image/png", io.BytesIO(_blank_png()), manifest, context=self._context(reading=True)) as reader:
                return self._judge(reader, manifest, "registry", expected=_HARD_BINDINGS)
        except c2pa.C2paError as exc:
            return Provenance("invalid", "c2pa", carrier="registry", detail=f"registered C2PA manifest unreadable: {_one_line(exc)}")

    def _judge(self, reader, blob: bytes, carrier: str, expected: tuple[str, ...] = ()) -> Provenance:
        """Our state from everything the SDK validated, plus our own checks of the signing
        certificate (`blob`: the bytes holding the manifest store)."""
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
        active = reader.get_active_manifest() or {}
        failures = [f for f in _failures(results) if not (f["where"] == "active manifest" and f["code"] in expected)]
        successes = [s.get("code", "") for s in results.get("activeManifest", {}).get("success", [])]
        info = active.get("signature_info", {})
        signed_at, source = _signed_at(active, info, successes)
        failures += self._credential_failures(blob, info, signed_at if source == "trusted-timestamp" else None)
        codes = tuple(dict.fromkeys(f["code"] for f in failures)) or tuple(dict.fromkeys(successes))
        facts = {"scheme": "c2pa", "carrier": carrier, "digest_type": "c2pa", "codes": codes, "failures": tuple(failures),
                 "signer": ", ".join(filter(None, [info.get("common_name"), info.get("issuer")])) or None,
                 "signed_at": signed_at, "signed_at_source": source}
        if failures:
            worst = min((state_of(f["code"]) for f in failures), key=SEVERITY.index)
            if worst == "untrusted":
                detail = "valid C2PA signature by a signer outside the trust anchors"
                if not self.anchors_path.exists():
                    detail += f" (none configured: {self.anchors_path})"
            else:
                found = [f for f in failures if state_of(f["code"]) == worst]
                detail = f"{_DETAILS[worst]}: " + "; ".join(_where(f) for f in found[:4])
                detail += f" (+{len(found) - 4} more)" if len(found) > 4 else ""
            return Provenance(worst, detail=detail, **facts)
        vouched = {"signingCredential.trusted", "claimSignature.validated"} <= set(successes)
        if vouched and (state == "Trusted" or expected):  # with the binding set aside the SDK says Invalid
            return Provenance("verified", **facts)
        return Provenance("invalid", detail=f"C2PA validation state {state} without a trusted, validated claim signature", **facts)

    def _credential_failures(self, blob: bytes, info: dict, stamped: str | None) -> list[dict]:
        """What the SDK lets through about the signing certificate (it accepts a certificate that is
        not valid yet, or lacks an allowed EKU, when no time-stamp is present): the certificate must
        be valid at the trusted time-stamp, else now, and carry an EKU from the allowed list."""
        from cryptography import x509

        def failure(code: str, why: str) -> list[dict]:
            return [{"code": f"moderate.certificate.{code}", "where": "active manifest", "url": None, "explanation": why}]

        try:
            certificate = _signing_certificate(blob, int(info.get("cert_serial_number") or ""))
        except ValueError:
            certificate = None
        if certificate is None:
            return failure("missing", "the signing certificate could not be read from the manifest")
        at = datetime.fromisoformat(stamped.replace("Z", "+00:00")) if stamped else datetime.now(timezone.utc)
        if at < certificate.not_valid_before_utc:
            return failure("notYetValid", f"signing certificate is valid only from {certificate.not_valid_before_utc:%Y-%m-%d}")
        if at > certificate.not_valid_after_utc:
            return failure("expired", f"signing certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
        try:
            ekus = {oid.dotted_string for oid in certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
        except x509.ExtensionNotFound:
            ekus = set()
        if not ekus & set(self._ekus().split()):
            return failure("eku", f"signing certificate has no allowed extended key usage (has {', '.join(sorted(ekus)) or 'none'})")
        return []

    def sign(self, data: bytes, image_format: str, chain_pem: Path, key_pem: Path, title: str) -> tuple[bytes, bytes]:
        """`data` with a signed C2PA manifest embedded (a c2pa.created action; no thumbnail), and the
        manifest store itself (JUMBF bytes, what `reverify` takes)."""
        import c2pa

        mime = MIME.get(image_format)
        if mime is None:
            raise ProvenanceError(f"{title}: C2PA signing supports {', '.join(MIME)}, not {image_format}")
        try:
            chain, key = read_file(chain_pem), read_file(key_pem)
        except MediaError as exc:
            raise ProvenanceError(f"{exc.source}: cannot read: {exc.detail}") from None
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
            manifest_store = builder.sign(signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            raise ProvenanceError(f"{title}: C2PA signing failed: {_one_line(exc)}") from None
        return out.getvalue(), manifest_store


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


def _failures(results: dict) -> list[dict]:
    """Every failure in the SDK's validation results, each with where it was found."""
    found = []

    def add(statuses: dict, where: str) -> None:
        for entry in statuses.get("failure") or []:
            found.append({"code": entry.get("code") or "unknown", "where": where, "url": entry.get("url"),
                          "explanation": entry.get("explanation")})

    for section, value in results.items():
        if section == "activeManifest":
            add(value or {}, "active manifest")
        elif section == "ingredientDeltas":
            for delta in value or []:
                uri = delta.get("ingredientAssertionURI") or "?"
                add(delta.get("validationDeltas") or {}, f"ingredient {uri.rsplit('/', 1)[-1]}")
        elif isinstance(value, dict):  # a section this code does not know still counts
            add(value, section)
    return found


def _where(failure: dict) -> str:
    return f"{failure['code']} in {failure['where']}"


def _signed_at(active: dict, signature_info: dict, successes: list[str]) -> tuple[str | None, str | None]:
    """The signing time and who vouches for it: a trusted time-stamp, else the signer's own claim
    (the signature's time without a trusted time-stamp, or the creation action's `when`)."""
    if signature_info.get("time"):
        return signature_info["time"], "trusted-timestamp" if "timeStamp.trusted" in successes else "claimed"
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                if action.get("when"):
                    return action["when"], "claimed"
    return None, None


def _signing_certificate(blob: bytes, serial: int):
    """The DER certificate with this serial number in a COSE signature box of the manifest store.

    The signature box holds the x5chain; scanning it for DER sequences and matching the serial the
    SDK reported avoids a CBOR parser. None if not found.
    """
    from cryptography import x509

    label = blob.find(b"c2pa.signature")
    while label >= 0:
        window = blob[label:label + 65536]
        at = window.find(b"\x30\x82")
        while at >= 0:
            size = 4 + int.from_bytes(window[at + 2:at + 4], "big")
            try:
                certificate = x509.load_der_x509_certificate(window[at:at + size])
                if certificate.serial_number == serial:
                    return certificate
            except ValueError:
                pass
            at = window.find(b"\x30\x82", at + 1)
        label = blob.find(b"c2pa.signature", label + 1)
    return None


def _has_jumbf(data: bytes) -> bool:
    """Whether the bytes hold a JUMBF box labelled c2pa (only asked once the SDK failed to parse them)."""
    return b"jumb" in data and b"c2pa" in data


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


_REMOTE_URL = re.compile(r"\burl (\S+)")


@functools.cache
def _blank_png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    return out.getvalue()


def _version() -> str:
    from .. import __version__

    return __version__

