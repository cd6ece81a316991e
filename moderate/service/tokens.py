"""API tokens with roles, stored as hashes only.

A token is shown once, when created; the data folder keeps its SHA-256, so a copy of the data
folder does not hand out API access. Roles nest: `admin` can do what a `moderator` can, who can do
what a `checker` can.
- checker: check inputs (upload services, hooks);
- moderator: also work the review queue;
- admin: also manage banks and tokens.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ModerateError
from ..files import replace_file

ROLES = ("checker", "moderator", "admin")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class TokenError(ModerateError):
    """A token operation was refused."""


@dataclass(frozen=True)
class Token:
    name: str
    role: str
    created_at: str

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "created_at": self.created_at}


class Tokens:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "tokens.json"

    def create(self, name: str, role: str) -> str:
        """A new secret token for `name` (returned once; only its hash is kept)."""
        if not _NAME.fullmatch(name or ""):
            raise TokenError(f"token name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        entries = self._read()
        if any(e["name"] == name for e in entries.values()):
            raise TokenError(f"a token named {name!r} exists; revoke it first")
        secret = "mod_" + secrets.token_urlsafe(32)
        entries[_digest(secret)] = {"name": name, "role": role,
                                    "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._write(entries)
        return secret

    def check(self, secret: str) -> Token | None:
        entry = self._read().get(_digest(secret))
        return Token(entry["name"], entry["role"], entry["created_at"]) if entry else None

    def named(self, name: str) -> Token | None:
        """The token called `name`, if it still exists (UI sessions end with their token)."""
        return next((t for t in self.list() if t.name == name), None)

    def list(self) -> list[Token]:
        return sorted((Token(e["name"], e["role"], e["created_at"]) for e in self._read().values()), key=lambda t: t.name)

    def revoke(self, name: str) -> None:
        entries = self._read()
        kept = {h: e for h, e in entries.items() if e["name"] != name}
        if len(kept) == len(entries):
            raise TokenError(f"no token named {name!r}")
        self._write(kept)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise TokenError(f"{self.path}: token store is not valid JSON") from None

    def _write(self, entries: dict) -> None:
        replace_file(self.path, json.dumps(entries, indent=1).encode(), 0o600, make_folder=True)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
