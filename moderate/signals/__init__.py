"""Signals: kinds of fingerprint, each one module behind one small interface (`base.Signal`).

The registry below is the only place that lists them: the engine runs them in this order (exact
digests, PDQ, then keypoints, which also verify the evidence found before them, then embeddings);
the policy
reads a section per signal; `explain` and `search` ask each signal in turn. Adding a signal is its
module and one line here.
"""

from .base import Context, Query, Signal
from .digest import DIGEST
from .embedding import EMBEDDING
from .keypoints import KEYPOINTS, KeypointSet, KeypointSignal
from .pdq import PDQ, PdqHash, PdqSignal

SIGNALS: dict[str, Signal] = {signal.name: signal for signal in (DIGEST, PDQ, KEYPOINTS, EMBEDDING)}
LISTED = {name: signal for name, signal in SIGNALS.items() if signal.listable}  # what `moderate hash` computes
LIST_TYPES = {list_type: signal for signal in SIGNALS.values() for list_type in signal.list_types}  # hash-list rows

__all__ = ["Context", "DIGEST", "EMBEDDING", "KEYPOINTS", "KeypointSet", "KeypointSignal", "LIST_TYPES", "LISTED", "PDQ", "PdqHash",
           "PdqSignal", "Query", "SIGNALS", "Signal"]
