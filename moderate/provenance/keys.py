"""Signing keys and the trust store.

Own keys are Ed25519 (small, fast, deterministic signatures, no parameter choices to get wrong),
kept in `DATA/keys/NAME.key` (PKCS#8 PEM, mode 0600, optionally encrypted with a passphrase) beside
`NAME.pub`. The trust store (`DATA/trust.json`) maps key ids to signer identities: a signature by a
key that is not in it verifies as `untrusted`, never as `verified`.

A key id is the first 128 bits of SHA-256 over the raw public key, in hex, so anyone holding the
public key computes the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import MediaError, ProvenanceError
from ..files import replace_file
from ..media import read_file

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:32]


@dataclass(frozen=True)
class OwnKey:
    name: str
    key_id: str
    signer: str
    encrypted: bool
    path: Path

    def to_dict(self) -> dict:
        return {"name": self.name, "key_id": self.key_id, "signer": self.signer, "encrypted": self.encrypted,
                "private_key": str(self.path), "public_key": str(self.path.with_suffix(".pub"))}


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    name: str
    public_key: bytes  # raw 32 bytes
    added_at: str

    def to_dict(self) -> dict:
        return {"key_id": self.key_id, "name": self.name, "added_at": self.added_at}


class Keys:
    """Own signing keys and trusted public keys, in the data folder."""

    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir) / "keys"
        self.trust_path = Path(data_dir) / "trust.json"

    # -- own keys ----------------------------------------------------------------------------------

    def generate(self, name: str, signer: str | None = None, passphrase: str | None = None) -> OwnKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if not _KEY_NAME.fullmatch(name or ""):
            raise ProvenanceError(f"key name {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
        self.dir.mkdir(parents=True, exist_ok=True)
        private_path = self.dir / f"{name}.key"
        if private_path.exists():
            raise ProvenanceError(f"key {name} already exists ({private_path})")
        private = Ed25519PrivateKey.generate()
        encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                      else serialization.NoEncryption())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        public = private.public_key()
        (self.dir / f"{name}.pub").write_bytes(
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (self.dir / f"{name}.json").write_text(json.dumps({"signer": signer or name}))
        return self.get(name)

    def get(self, name: str) -> OwnKey:
        private_path = self.dir / f"{name}.key"
        if not _KEY_NAME.fullmatch(name or "") or not private_path.exists():
            raise ProvenanceError(f"no key named {name!r} (see `moderate keys list`)")
        raw = self.public_raw(self.dir / f"{name}.pub")
        try:
            signer = json.loads((self.dir / f"{name}.json").read_text()).get("signer", name)
        except (OSError, ValueError):
            signer = name
        encrypted = b"ENCRYPTED" in private_path.read_bytes()[:64]
        return OwnKey(name, key_id(raw), signer, encrypted, private_path)

    def list(self) -> list[OwnKey]:
        if not self.dir.exists():
            return []
        return [self.get(p.stem) for p in sorted(self.dir.glob("*.key"))]

    def private_key(self, name: str, passphrase: str | None = None):
        from cryptography.hazmat.primitives import serialization

        own = self.get(name)
        if own.encrypted and not passphrase:
            raise ProvenanceError(f"key {name} is encrypted: give its passphrase (MODERATE_KEY_PASSPHRASE)")
        try:
            return serialization.load_pem_private_key(own.path.read_bytes(), passphrase.encode() if own.encrypted else None)
        except ValueError:
            raise ProvenanceError(f"key {name}: wrong passphrase or damaged key file") from None

    @staticmethod
    def public_raw(path: Path) -> bytes:
        """The raw 32-byte Ed25519 public key from a PEM file."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            public = serialization.load_pem_public_key(read_file(path))
        except MediaError as exc:
            raise ProvenanceError(f"{path}: not a readable PEM public key ({exc.detail})") from None
        except ValueError as exc:
            raise ProvenanceError(f"{path}: not a readable PEM public key ({exc})") from None
        if not isinstance(public, Ed25519PublicKey):
            raise ProvenanceError(f"{path}: not an Ed25519 public key")
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    # -- trust store --------------------------------------------------------------------------------

    def trusted(self) -> dict[str, TrustedKey]:
        try:
            data = json.loads(self.trust_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ProvenanceError(f"{self.trust_path}: trust store is not valid JSON") from None
        return {
            kid: TrustedKey(kid, entry["name"], bytes.fromhex(entry["public_key"]), entry.get("added_at", ""))
            for kid, entry in data.items()
        }

    def trust(self, public_key_file: Path, name: str) -> TrustedKey:
        if not name or not name.strip():
            raise ProvenanceError("--name: give the signer identity this key stands for")
        raw = self.public_raw(public_key_file)
        entries = {kid: _entry(k) for kid, k in self.trusted().items()}
        kid = key_id(raw)
        entries[kid] = {"name": name, "public_key": raw.hex(),
                        "added_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._write_trust(entries)
        return self.trusted()[kid]

    def untrust(self, key_or_name: str) -> TrustedKey:
        trusted = self.trusted()
        hits = [k for k in trusted.values() if key_or_name in (k.key_id, k.name)]
        if len(hits) != 1:
            problem = "no trusted key" if not hits else f"{len(hits)} trusted keys"
            raise ProvenanceError(f"{problem} with id or name {key_or_name!r}")
        self._write_trust({kid: _entry(k) for kid, k in trusted.items() if kid != hits[0].key_id})
        return hits[0]

    def _write_trust(self, entries: dict) -> None:
        replace_file(self.trust_path, json.dumps(entries, indent=1, sort_keys=True).encode(), make_folder=True)


def _entry(key: TrustedKey) -> dict:
    return {"name": key.name, "public_key": key.public_key.hex(), "added_at": key.added_at}
