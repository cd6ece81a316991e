"""Signals: kinds of fingerprint, each one module implementing one small interface.

A signal computes values from the pixels of a region, parses and formats them as text for hash
lists, and measures the distance between two values. Matching against banks goes through an index
built for that signal (see `moderate.store.catalog`).
"""

from .keypoints import KEYPOINTS, KeypointSet, KeypointSignal
from .pdq import PDQ, PdqHash, PdqSignal

SIGNALS = {PDQ.name: PDQ}  # signals that hash lists carry

__all__ = ["KEYPOINTS", "KeypointSet", "KeypointSignal", "PDQ", "PdqHash", "PdqSignal", "SIGNALS"]
