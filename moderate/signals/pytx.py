"""python-threatexchange's signal types: what validates the hashes lists and lookups carry.

A hash-list row or a hash sent to a lookup is checked by the pytx `SignalType` of its kind
(`validate_signal_str`), so that `moderate` accepts what pytx, HMA and the exchanges accept and
nothing else; our one addition is refusing PDQ's all-zero hash (a blank image's). pytx is imported
on the first hash read, never by a check of an image.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import import_module

# kind of hash -> the pytx signal type validating it (module:class). A file MD5 or SHA-256 is one
# whatever the file holds: pytx names them video_md5 and video_sha256; ThreatExchange's photo_md5
# and plain md5 rows are the same digests.
VALIDATORS = {
    "pdq": "threatexchange.signal_type.pdq.signal:PdqSignal",
    "md5": "threatexchange.signal_type.md5:VideoMD5Signal",
    "sha256": "threatexchange.signal_type.sha256:VideoSHA256Signal",
}
WIDTHS = {"pdq": 64, "md5": 32, "sha256": 64}  # hex characters, for saying what was wrong


@lru_cache(maxsize=None)
def load(path: str) -> type:
    """The pytx class at `module:Class` (a signal type, an exchange's API)."""
    module, name = path.split(":")
    return getattr(import_module(module), name)


def validate(kind: str, text: str, what: str) -> str:
    """`text` as pytx's signal type for `kind` (a key of VALIDATORS) accepts it, after the blanks
    and case lists carry are taken off: canonical lowercase hex. ValueError naming the problem
    (`what`: how the message names the value, e.g. "pdq hash")."""
    value = text.strip().lower()
    try:
        return load(VALIDATORS[kind]).validate_signal_str(value)
    except ValueError as exc:  # pytx says "invalid PDQ hash"; say which part is wrong
        width = WIDTHS[kind]
        if len(value) != width:
            problem = f"must be {width} hex characters, got {len(value)}"
        elif value.strip("0123456789abcdef"):
            problem = "has non-hex characters"
        else:
            problem = f"is refused by python-threatexchange ({exc})"
        raise ValueError(f"{what} {problem}") from None
