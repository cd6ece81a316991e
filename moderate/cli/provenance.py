"""`moderate keys`, `sign` and `verify`: signing keys, the trust store, signed originals."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import ModerateError
from .common import _engine, _out, app, choices

keys_app = typer.Typer(help="Signing keys and the trust store.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
PROVENANCE_EXIT = {"verified": 0, "unsigned": 5, "untrusted": 6, "tampered": 7, "invalid": 8}
DigestType = choices("..provenance.digests", "DIGEST_TYPES")


@keys_app.command("generate")
def keys_generate(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The key's name: 1-64 letters, digits, '_', '-' or '.'."),
    signer: Optional[str] = typer.Option(None, "--signer", metavar="IDENTITY", help="Signer identity written into signatures (default: NAME)."),
    passphrase: bool = typer.Option(False, "--passphrase", help="Encrypt the private key with a passphrase (asked for, or MODERATE_KEY_PASSPHRASE)."),
):
    """Generate an Ed25519 signing key in the data folder (private key file mode 0600)."""
    secret = _passphrase(confirm=True) if passphrase else None
    key = _engine(ctx).keys.generate(name, signer, secret)
    _out(f"generated key {key.name} ({key.key_id}); public key: {key.path.with_suffix('.pub')}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help='One JSON object: {"own", "trusted"}.')):
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
    public_key: str = typer.Argument(..., metavar="PUBLIC_KEY",
                                     help="A PEM public key file, or the name of an own key (moderate keys list)."),
    name: Optional[str] = typer.Option(None, "--name", metavar="IDENTITY",
                                       help="The signer identity this key stands for (default for an own key: its signer)."),
):
    """Trust a public key: its valid signatures verify as NAME."""
    keys = _engine(ctx).keys
    path, own = Path(public_key), None
    if not path.exists():  # not a file here: an own key's name (`keys generate NAME`), or its NAME.pub
        from ..errors import ProvenanceError

        try:
            own = keys.get(path.stem if path.suffix == ".pub" and path.parent == Path(".") else public_key)
        except ProvenanceError:
            raise ModerateError(f"{public_key}: neither a public key file nor an own key's name "
                                "(see `moderate keys list`)") from None
        path = own.path.with_suffix(".pub")
    if name is None:
        if own is None:  # a usage error, as when --name was required
            raise typer.BadParameter("give the signer identity this key stands for", param_hint="'--name'")
        name = own.signer
    trusted = keys.trust(path, name)
    _out(f"trusted {trusted.key_id} as {trusted.name}")


@keys_app.command("untrust")
def keys_untrust(ctx: typer.Context, key: str = typer.Argument(..., metavar="KEY_ID_OR_NAME", help="A trusted key's id or name (moderate keys list).")):
    """Stop trusting a key; its signatures then verify as untrusted."""
    removed = _engine(ctx).keys.untrust(key)
    _out(f"untrusted {removed.key_id} ({removed.name})")


@keys_app.command("trust-c2pa")
def keys_trust_c2pa(ctx: typer.Context, anchors: Path = typer.Argument(..., metavar="ANCHORS_PEM", help="PEM file of CA certificates; replaces the current anchors.")):
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
    image: Path = typer.Argument(..., metavar="IMAGE", help="The image to sign (PNG or JPEG for embedded signatures)."),
    key: str = typer.Option(..., "--key", metavar="KEY", help="Name of an own key (moderate keys list); with --c2pa, a PEM private key file."),
    c2pa: bool = typer.Option(False, "--c2pa", help="Sign C2PA Content Credentials with --cert and --key (no thumbnail)."),
    cert: Optional[Path] = typer.Option(None, "--cert", metavar="CHAIN_PEM", help="With --c2pa: the PEM certificate chain, signer first."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Write the signed image (or, with --detached, the signature) here instead of in place."),
    detached: bool = typer.Option(False, "--detached", help="Write IMAGE.sig.json beside the image instead of embedding."),
    digest: DigestType = typer.Option("pixels-v2", "--digest", help="pixels-v2 (pixels plus orientation and colour metadata; survives other metadata edits and lossless re-saves) or jpeg-scan-v2; v1 types bind less."),
    register: Optional[str] = typer.Option(None, "--register", metavar="BANK", help="Also record the signed original in this bank (--kind originals)."),
    reference_id: Optional[str] = typer.Option(None, "--id", metavar="ID", help="Reference id when registering (default: file stem)."),
    as_json: bool = typer.Option(False, "--json", help='One JSON object: {"image", "signature", "record"}.'),
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
    image: str = typer.Argument(..., metavar="IMAGE", help="Image file, or - for standard input."),
    signature: Optional[Path] = typer.Option(None, "--signature", metavar="FILE", help="A detached signature (default: IMAGE.sig.json if present)."),
    as_json: bool = typer.Option(False, "--json", help="The result as one JSON object."),
):
    """Verify an image's signature: exit 0 verified, 5 unsigned, 6 untrusted, 7 tampered, 8 invalid."""
    result = _engine(ctx).verify(image, signature)
    if as_json:
        _out(json.dumps({"source": "<stdin>" if image == "-" else image, **result.to_dict()}))
    else:
        _out(result.text())
    raise typer.Exit(PROVENANCE_EXIT[result.state])
