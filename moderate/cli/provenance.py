"""`moderate keys`, `sign` and `verify`: signing keys, the trust store, signed originals."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import ModerateError
from .common import _engine, _out, app

keys_app = typer.Typer(help="Signing keys and the trust store.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
PROVENANCE_EXIT = {"verified": 0, "unsigned": 5, "untrusted": 6, "tampered": 7, "invalid": 8}


@keys_app.command("generate")
def keys_generate(
    ctx: typer.Context,
    name: str,
    signer: Optional[str] = typer.Option(None, "--signer", help="Signer identity written into signatures (default: NAME)."),
    passphrase: bool = typer.Option(False, "--passphrase", help="Encrypt the private key with a passphrase (asked for, or MODERATE_KEY_PASSPHRASE)."),
):
    """Generate an Ed25519 signing key in the data folder (private key file mode 0600)."""
    secret = _passphrase(confirm=True) if passphrase else None
    key = _engine(ctx).keys.generate(name, signer, secret)
    _out(f"generated key {key.name} ({key.key_id}); public key: {key.path.with_suffix('.pub')}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """List own keys and trusted keys."""
    keys = _engine(ctx).keys
    own, trusted = keys.list(), keys.trusted().values()
    if as_json:
        _out(json.dumps({"own": [k.to_dict() for k in own], "trusted": [k.to_dict() for k in trusted]}))
        return
    for k in own:
        _out(f"own     {k.key_id}  {k.name:<16} signer={k.signer}{'  (encrypted)' if k.encrypted else ''}")
    for t in trusted:
        _out(f"trusted {t.key_id}  {t.name}")


@keys_app.command("trust")
def keys_trust(
    ctx: typer.Context,
    public_key_file: Path = typer.Argument(..., metavar="PUBLIC_KEY_FILE"),
    name: str = typer.Option(..., "--name", help="The signer identity this key stands for."),
):
    """Trust a public key: its valid signatures verify as NAME."""
    trusted = _engine(ctx).keys.trust(public_key_file, name)
    _out(f"trusted {trusted.key_id} as {trusted.name}")


@keys_app.command("untrust")
def keys_untrust(ctx: typer.Context, key: str = typer.Argument(..., metavar="KEY_ID_OR_NAME")):
    """Stop trusting a key; its signatures then verify as untrusted."""
    removed = _engine(ctx).keys.untrust(key)
    _out(f"untrusted {removed.key_id} ({removed.name})")


@keys_app.command("trust-c2pa")
def keys_trust_c2pa(ctx: typer.Context, anchors: Path = typer.Argument(..., metavar="ANCHORS_PEM")):
    """Set the C2PA trust anchors (PEM CA certificates) that Content Credentials must chain to."""
    count = _engine(ctx).signatures.credentials.set_trust_anchors(anchors)
    _out(f"C2PA trust anchors set: {count} certificates")


def _passphrase(confirm: bool = False) -> str:

    secret = os.environ.get("MODERATE_KEY_PASSPHRASE")
    if secret:
        return secret
    if not sys.stdin.isatty():
        raise ModerateError("a passphrase is needed: set MODERATE_KEY_PASSPHRASE when not on a terminal")
    return typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


@app.command()
def sign(
    ctx: typer.Context,
    image: Path,
    key: str = typer.Option(..., "--key", help="Name of an own key (moderate keys list); with --c2pa, a PEM private key file."),
    c2pa: bool = typer.Option(False, "--c2pa", help="Sign C2PA Content Credentials with --cert and --key (no thumbnail)."),
    cert: Optional[Path] = typer.Option(None, "--cert", help="With --c2pa: the PEM certificate chain, signer first."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the signed image (or, with --detached, the signature) here instead of in place."),
    detached: bool = typer.Option(False, "--detached", help="Write IMAGE.sig.json beside the image instead of embedding."),
    digest: str = typer.Option("pixels-v2", "--digest", help="pixels-v2 (pixels plus orientation and colour metadata; survives other metadata edits and lossless re-saves) or jpeg-scan-v2; v1 types bind less."),
    register: Optional[str] = typer.Option(None, "--register", help="Also record the signed original in this bank (--kind originals)."),
    reference_id: Optional[str] = typer.Option(None, "--id", help="Reference id when registering (default: file stem)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Sign an image with an own key (PNG iTXt / JPEG COM, or a detached .sig.json), or with --c2pa."""

    engine = _engine(ctx)
    if c2pa:
        if cert is None:
            raise ModerateError("--c2pa needs --cert CHAIN.pem and --key KEY.pem")
        signed = engine.signatures.sign_c2pa(image, cert, key, out=out, register=register, reference_id=reference_id)
    else:
        secret = _passphrase() if engine.keys.get(key).encrypted else None
        signed = engine.signatures.sign(image, key, passphrase=secret, out=out, detached=detached, digest_type=digest,
                                        register=register, reference_id=reference_id)
    if as_json:
        _out(json.dumps({"image": os.fspath(signed.path), "signature": os.fspath(signed.signature_path) if signed.signature_path else None,
                         "record": signed.record}))
    else:
        where = signed.signature_path or signed.path
        _out(f"signed {image} as {signed.record['signer']} ({signed.record.get('digest_type', 'c2pa')}) -> {where}")


@app.command()
def verify(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image file, or - for standard input."),
    signature: Optional[Path] = typer.Option(None, "--signature", help="A detached signature (default: IMAGE.sig.json if present)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Verify an image's signature: exit 0 verified, 5 unsigned, 6 untrusted, 7 tampered, 8 invalid."""
    result = _engine(ctx).verify(image, signature)
    if as_json:
        _out(json.dumps({"source": "<stdin>" if image == "-" else image, **result.to_dict()}))
    else:
        _out(result.text())
    raise typer.Exit(PROVENANCE_EXIT[result.state])
