"""The own signature scheme: a small signed record that binds a signer to an image's content.

The record names the scheme, the key (id and raw public key), the signer, the digest type and
value, the picture's width, height and mode, and the signing time. It is serialized canonically
(sorted keys, no spaces) and signed with Ed25519 over a domain-separation prefix, so a signature
made for anything else can never be replayed as an image signature.

Verification ends in one of five states, checked in this order:
`invalid` (malformed record or bad signature), `tampered` (good signature, content differs),
`untrusted` (good signature on this content, key not in the trust store), `verified`;
`unsigned` when there is nothing to check.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import MediaError
from ..media import Budgets
from . import digests
from .keys import TrustedKey, key_id

SCHEME = "moderate-sig-v1"
DOMAIN = b"moderate image signature v1\x00"
STATES = ("verified", "tampered", "untrusted", "invalid", "unsigned")
RECORD_FIELDS = {
    "scheme": str, "key_id": str, "public_key": str, "signer": str, "digest_type": str, "digest": str,
    "width": int, "height": int, "mode": str, "time": str,
}


@dataclass(frozen=True)
class Provenance:
    """What is known about who made an input and whether it is unchanged.

    JSON (`to_dict`): `state`, `scheme`, `signer`, `key_id`, `signed_at`, `signed_at_source`,
    `digest_type`, `carrier`, `codes`, `failures`, `detail`, and `reference` / `remote_url` when set.
    """

    state: str
    scheme: str | None = None  # "moderate" or "c2pa"
    signer: str | None = None  # the trust store's name for a trusted key, else the claimed signer
    key_id: str | None = None
    signed_at: str | None = None
    digest_type: str | None = None
    carrier: str | None = None  # where the signature was: embedded | detached | registry | remote
    codes: tuple[str, ...] = ()  # C2PA validation status codes; digest.presentationUnbound for v1 digests
    detail: str | None = None
    reference: dict | None = field(default=None)  # the registered original, when found in a bank
    # "trusted-timestamp" (a trusted time-stamp authority's time) or "claimed" (the signer's own word)
    signed_at_source: str | None = None
    failures: tuple[dict, ...] = ()  # C2PA failures: {"code", "where", "url", "explanation"}, every manifest
    remote_url: str | None = None  # C2PA credentials that exist only at this URL (never fetched)

    def to_dict(self) -> dict:
        out = {"state": self.state, "scheme": self.scheme, "signer": self.signer, "key_id": self.key_id,
               "signed_at": self.signed_at, "signed_at_source": self.signed_at_source if self.signed_at else None,
               "digest_type": self.digest_type, "carrier": self.carrier, "codes": list(self.codes),
               "failures": [dict(f) for f in self.failures], "detail": self.detail}
        if self.reference:
            out["reference"] = self.reference
        if self.remote_url:
            out["remote_url"] = self.remote_url
        return out

    def text(self) -> str:
        """One line for people: `STATE by SIGNER [scheme, carrier], signed at T (claimed by the signer) (detail)`."""
        who = f" by {self.signer}" if self.signer else ""
        how = f" [{self.scheme}, {self.carrier}]" if self.scheme else ""
        when = ""
        if self.signed_at:
            source = "trusted time-stamp" if self.signed_at_source == "trusted-timestamp" else "claimed by the signer"
            when = f", signed at {self.signed_at} ({source})"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.state.upper()}{who}{how}{when}{extra}"


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(data: bytes, private_key, signer: str, digest_type: str = "pixels-v2",
         budgets: Budgets = Budgets(), name: str = "<bytes>") -> bytes:
    """The signature envelope (JSON bytes) for an image's content."""
    from cryptography.hazmat.primitives import serialization

    raw_public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = digests.compute(digest_type, data, budgets, name)
    record = {
        "scheme": SCHEME, "key_id": key_id(raw_public), "public_key": base64.b64encode(raw_public).decode(),
        "signer": signer, "digest_type": digest.type, "digest": digest.hex, "width": digest.width,
        "height": digest.height, "mode": digest.mode,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    signature = private_key.sign(DOMAIN + canonical(record))
    return json.dumps({"record": record, "signature": base64.b64encode(signature).decode()},
                      sort_keys=True, separators=(",", ":")).encode()


def verify(envelope: bytes, content: digests.Content, trusted: dict[str, TrustedKey], carrier: str) -> Provenance:
    """Check an envelope against the content it travels with."""
    try:
        record, signature = _parse(envelope)
    except ValueError as exc:
        return Provenance("invalid", "moderate", carrier=carrier, detail=f"malformed signature record: {exc}")
    facts = {"scheme": "moderate", "key_id": record["key_id"], "signed_at": record["time"], "signed_at_source": "claimed",
             "digest_type": record["digest_type"], "carrier": carrier}
    problem = _signature_problem(record, signature)
    if problem:
        return Provenance("invalid", signer=record["signer"], detail=problem, **facts)
    weak = record["digest_type"] not in digests.PRESENTATION_BOUND
    if weak:  # still verifiable, but says so: orientation and colour metadata are not covered
        facts["codes"] = (digests.WEAK_BINDING,)
    try:
        actual = content.digest(record["digest_type"])
    except MediaError as exc:
        return Provenance("tampered", signer=record["signer"], detail=f"content cannot be digested: {exc.detail}", **facts)
    signed = (record["digest"], record["width"], record["height"], record["mode"])
    if (actual.hex, actual.width, actual.height, actual.mode) != signed:
        return Provenance("tampered", signer=record["signer"], detail=f"{record['digest_type']} digest differs from the signed one", **facts)
    key = trusted.get(record["key_id"])
    if key is None:
        return Provenance("untrusted", signer=record["signer"], detail="valid signature by a key that is not trusted", **facts)
    detail = (f"{record['digest_type']} binds the pixels only, not orientation or colour metadata; "
              "re-sign for a v2 digest") if weak else None
    return Provenance("verified", signer=key.name, detail=detail, **facts)


def _parse(envelope: bytes) -> tuple[dict, bytes]:
    try:
        outer = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(outer, dict) or not isinstance(outer.get("record"), dict) or not isinstance(outer.get("signature"), str):
        raise ValueError("expected {record, signature}")
    record = outer["record"]
    for key, kind in RECORD_FIELDS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise ValueError(f"field {key!r} missing or not a {kind.__name__}")
    if set(record) != set(RECORD_FIELDS):
        raise ValueError(f"unexpected fields {sorted(set(record) - set(RECORD_FIELDS))}")
    try:
        signature = base64.b64decode(outer["signature"], validate=True)
    except ValueError:
        raise ValueError("signature is not base64") from None
    return record, signature


def _signature_problem(record: dict, signature: bytes) -> str | None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if record["scheme"] != SCHEME:
        return f"unknown scheme {record['scheme']!r}"
    if record["digest_type"] not in digests.DIGEST_TYPES:
        return f"unknown digest type {record['digest_type']!r}"
    try:
        raw_public = base64.b64decode(record["public_key"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw_public)
    except ValueError:
        return "public key is not a raw Ed25519 key"
    if key_id(raw_public) != record["key_id"]:
        return "key id does not match the public key"
    try:
        public.verify(signature, DOMAIN + canonical(record))
    except InvalidSignature:
        return "signature does not verify"
    return None
