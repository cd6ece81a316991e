"""A test PKI made with `cryptography`: a root CA and a C2PA-acceptable signing certificate (or,
on request, one C2PA must reject: not yet valid, or without an allowed EKU)."""

from __future__ import annotations

import datetime
import struct
import zlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def make_pki(folder: Path, org: str, *, starts_in_days: int = -1,
             eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION) -> dict[str, Path]:
    """Write root.pem, chain.pem (leaf then root) and key.pem for `org` into `folder`.

    `starts_in_days` > 0 makes a leaf that is not valid yet; `eku` replaces its extended key usage.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name(f"{org} Root CA", org)).issuer_name(_name(f"{org} Root CA", org))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(f"{org} Signer", org)).issuer_name(ca.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=starts_in_days)).not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"root": folder / "root.pem", "chain": folder / "chain.pem", "key": folder / "key.pem"}
    paths["root"].write_bytes(ca.public_bytes(PEM))
    paths["chain"].write_bytes(leaf.public_bytes(PEM) + ca.public_bytes(PEM))
    paths["key"].write_bytes(leaf_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


# -- byte-level edits of signed files, without re-encoding a pixel ----------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG."""
    chunks, pos = [], len(PNG_MAGIC)
    while pos < len(data):
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + size]))
        pos += 12 + size
    return chunks


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG from (type, body) chunks, every CRC computed afresh."""
    return PNG_MAGIC + b"".join(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
                                for kind, body in chunks)


def png_insert(data: bytes, kind: bytes, body: bytes) -> bytes:
    """`data` with one more chunk before the first IDAT (where colour chunks must be)."""
    chunks = png_chunks(data)
    at = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    return png_bytes(chunks[:at] + [(kind, body)] + chunks[at:])


def jpeg_insert(data: bytes, marker: int, body: bytes) -> bytes:
    """`data` with one more marker segment right after SOI."""
    return data[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + data[2:]
