"""Provenance: who signed an input, and whether it is unchanged since.

Two kinds of evidence, one `Provenance` result:
- the own scheme (`signature`): Ed25519 over a canonical record of a content digest, carried in
  the image or beside it, checked against the trust store (`keys`);
- C2PA Content Credentials (`c2pa`), validated offline against configured trust anchors.
Signed originals can also be registered in a bank; an input whose signature was stripped is still
recognized by its exact digest there (`carrier: registry`). A registry entry keeps the evidence it
was registered with (the own-scheme envelope, or the C2PA manifest store) and is re-evaluated
against the current trust store on every read, so it never vouches for more than the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import MediaError, ProvenanceError
from ..files import replace_file
from ..media import Budgets, describe, opened, read_bytes
from . import carriers, digests, signature
from .credentials import Credentials
from .keys import Keys
from .signature import Provenance

__all__ = ["Credentials", "Keys", "Provenance", "Signatures", "Signed"]


@dataclass(frozen=True)
class Signed:
    """The outcome of signing: where the signature went and what it says."""

    path: Path  # the signed image (the input itself when detached)
    signature_path: Path | None  # the detached .sig.json, if any
    record: dict


class Signatures:
    """Signs images and verifies them (own scheme, C2PA, and the registry of signed originals)."""

    def __init__(self, keys: Keys, banks, credentials: Credentials, budgets: Budgets = Budgets()):
        self.keys = keys
        self.banks = banks
        self.credentials = credentials
        self.budgets = budgets

    def sign(self, image: str | os.PathLike, key: str, *, passphrase: str | None = None,
             out: str | os.PathLike | None = None, detached: bool = False, digest_type: str = "pixels-v2",
             register: str | None = None, reference_id: str | None = None) -> Signed:
        path = Path(image)
        data = read_bytes(path, self.budgets)
        own = self.keys.get(key)
        private = self.keys.private_key(key, passphrase)
        try:
            envelope = signature.sign(data, private, own.signer, digest_type, self.budgets, str(path))
        except ValueError as exc:
            raise ProvenanceError(f"{path}: {exc}") from None
        if detached:
            signed_path, sig_path = path, Path(out) if out else carriers.detached_path(path)
            replace_file(sig_path, envelope)
        elif carriers.kind_of(data) is None:
            raise ProvenanceError(f"{path}: only PNG and JPEG carry an embedded signature; use --detached")
        else:
            signed_path, sig_path = Path(out) if out else path, None
            replace_file(signed_path, carriers.embed(data, envelope, str(path)))
        record = json.loads(envelope)["record"]
        if register:
            self._register(register, signed_path, reference_id or path.stem, {
                "signer": record["signer"], "key_id": record["key_id"], "signed_digest": record["digest"],
                "digest_type": record["digest_type"], "signed_at": record["time"], "signature": envelope.decode(),
            })
        return Signed(signed_path, sig_path, record)

    def sign_c2pa(self, image: str | os.PathLike, chain: str | os.PathLike, key: str | os.PathLike, *,
                  out: str | os.PathLike | None = None, register: str | None = None,
                  reference_id: str | None = None) -> Signed:
        """Embed a C2PA manifest signed with the user's certificate chain and key.

        With `register`, the signed original goes into that bank with its manifest store (the
        evidence re-validated on every registry read). Signatures that come out `invalid` or
        `tampered` are refused (ProvenanceError) and nothing is written; `untrusted` ones are
        registered as such.
        """
        path = Path(image)
        data = read_bytes(path, self.budgets)
        with opened(data, self.budgets, str(path)) as image:  # the header names the format; no decode
            image_format = image.format
        signed, manifest_store = self.credentials.sign(data, image_format, Path(chain), Path(key), path.name)
        target = Path(out) if out else path
        found = self.credentials.verify(signed, str(target))
        if register and found.state not in ("verified", "untrusted"):
            raise ProvenanceError(f"{path}: not registered: its C2PA credentials are {found.state} ({found.detail})")
        replace_file(target, signed)
        record = {"scheme": "c2pa", "signer": found.signer, "time": found.signed_at, "state": found.state}
        if register:  # the registry finds originals by exact pixel digest (C2PA embedding leaves pixels alone)
            digest = digests.compute("pixels-v2", signed, self.budgets, str(target))
            self._register(register, target, reference_id or path.stem, {
                "signer": found.signer, "signed_digest": digest.hex, "digest_type": digest.type,
                "signed_at": found.signed_at, "signed_at_source": found.signed_at_source, "scheme": "c2pa",
                "signature": base64.b64encode(manifest_store).decode(),
            })
        return Signed(target, None, record)

    def _register(self, bank: str, image: Path, reference_id: str, metadata: dict) -> None:
        self.banks.add(bank, [image], reference_id=reference_id, metadata=metadata)

    def verify(self, source, signature_file: str | os.PathLike | None = None, registry: bool = True,
               name: str | None = None, path=None, content: digests.Content | None = None) -> Provenance:
        """The provenance of an input: embedded or detached signature, C2PA, else the registry.

        `path` is where the input's bytes came from, when `source` is those bytes: a signature
        beside that file (`FILE.sig.json`) counts as detached. `content` holds the digests of those
        bytes, when the caller already has them (a check shares them with its decode).
        """
        name = name or describe(source)
        data = read_bytes(source, self.budgets, name)
        content = content or digests.Content(data, self.budgets, name)
        try:
            envelope, where = self._envelope(source if path is None else path, data, signature_file, name)
        except MediaError as exc:  # a signature beside the file that is not a readable regular file
            return Provenance("invalid", "moderate", carrier="detached", detail=f"{exc.source}: {exc.detail}")
        trusted = self.keys.trusted()
        if envelope is not None:
            return signature.verify(envelope, content, trusted, where)
        found = self.credentials.verify(data, name)
        if found.state != "unsigned":
            return found
        if registry:
            return self.registered(content) or found
        return found

    def may_digest(self, data: bytes, registry: bool, path=None, name: str = "<bytes>") -> bool:
        """Whether `verify` may need the input's digests: it looks the registry up, or an own-scheme
        signature comes with the input (embedded, or beside `path`)."""
        try:
            return registry or self._envelope(path, data, None, name)[0] is not None
        except MediaError:
            return False

    def _envelope(self, source, data: bytes, signature_file, name: str) -> tuple[bytes | None, str | None]:
        if signature_file is not None:  # only regular files, within max_bytes: a FIFO would hang
            try:
                return read_bytes(signature_file, self.budgets), "detached"
            except MediaError as exc:
                raise ProvenanceError(f"{signature_file}: cannot read signature: {exc.detail}") from None
        try:
            embedded = carriers.extract(data, name)
        except MediaError:
            embedded = None  # a damaged container is judged by the digest, not here
        if embedded is not None:
            return embedded, "embedded"
        if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
            beside = carriers.detached_path(Path(source))
            if os.path.lexists(beside):
                return read_bytes(beside, self.budgets), "detached"
        return None, None

    def registered(self, content: digests.Content) -> Provenance | None:
        """The input as a registered signed original (exact digest), else None.

        Each matching entry's evidence is re-evaluated now (own-scheme envelope against the trust
        store, C2PA manifest store against the trust anchors); the best state wins, so an entry by a
        signer still trusted is not hidden by a stale one. `carrier: registry`, `reference` set.
        """
        wanted = [d.hex for d in content.all().values()]
        found = [self.entry(reference, content) for reference in self.banks.signed_originals(wanted)]
        return min(found, key=lambda p: (_RANK.index(p.state), p.reference["bank"], p.reference["reference_id"]),
                   default=None)

    def entry(self, reference, content: digests.Content) -> Provenance:
        """What a registry entry vouches for `content` now (`reference`: a banks.Reference).

        C2PA entries re-validate their stored manifest store; own-scheme entries re-verify their
        envelope against `content`. An entry without readable evidence (registered by an older
        version) is `invalid`.
        """
        metadata = reference.metadata
        where = {"reference": {"bank": reference.bank, "reference_id": reference.id}}
        evidence = metadata.get("signature")
        if metadata.get("scheme") == "c2pa":
            try:
                manifest_store = base64.b64decode(evidence or "", validate=True)
            except (binascii.Error, ValueError):
                manifest_store = b""
            if not manifest_store:
                return Provenance("invalid", "c2pa", metadata.get("signer"), carrier="registry", **where,
                                  detail="registered without its C2PA manifest store: nothing to re-validate (register it again)")
            found = self.credentials.reverify(manifest_store)
            return replace(found, digest_type=metadata.get("digest_type"), **where)
        if not isinstance(evidence, str):
            return Provenance("invalid", "moderate", metadata.get("signer"), carrier="registry", **where,
                              detail="registry entry has no signature envelope to re-verify")
        found = signature.verify(evidence.encode(), content, self.keys.trusted(), "registry")
        return replace(found, **where)


_RANK = ("verified", "untrusted", "tampered", "invalid", "unsigned")  # the best registry entry wins

