"""Detectors: models that say what is *in* a picture (labels with scores and boxes, or text).

Banks answer "is this a known image?"; detectors answer "does this picture show X?" for content
nobody has flagged yet. Each detector is one module with one small interface: `detect(pixels)`
returns `Detection`s in the pixels' coordinates. Policies map labels and text to actions
(`DetectorRule`, read by each detector module's `read_rule`), and in objects mode detector boxes become regions that are
hashed and matched like any other.

Detectors ship their models in their PyPI packages and are optional extras: `moderate[nsfw]`
(NudeNet, AGPL-3.0, so never a default dependency) and `moderate[ocr]` (RapidOCR). A policy that
asks for a detector whose extra is missing is refused with the install command.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PolicyError
from ..extras import require as require_extra

# detector name -> (module that implements it, the extra that installs what it needs)
DETECTORS = {
    "nudenet": ("moderate.detectors.nudity", "nsfw"),
    "ocr": ("moderate.detectors.text", "ocr"),
}


@dataclass(frozen=True)
class Detection:
    """A label (or read text) with a score, and its box (x, y, w, h) in the picture's pixels."""

    label: str
    score: float
    box: tuple[int, int, int, int] | None = None
    text: str | None = None


def require(name: str, origin: str = "<policy>") -> None:
    """Refuse, naming the extra, a detector that is unknown or not installed."""
    if name not in DETECTORS:
        raise PolicyError(f"{origin}: detectors.{name}: unknown detector (known: {', '.join(DETECTORS)})")
    require_extra(DETECTORS[name][1], f"{origin}: detectors.{name}", PolicyError)


@dataclass(frozen=True)
class DetectorRule:
    """A detector finding that means an action: labels over a score, or text matching words or a pattern."""

    detector: str
    action: str
    name: str
    labels: tuple[str, ...] = ()
    min_score: float = 0.5
    keywords: tuple[str, ...] = ()  # case-insensitive, anywhere in the text read
    regex: str | None = None

    def finds(self, detection) -> str | None:
        """What in `detection` fires this rule (its label or the matched text), or None."""
        if self.labels:
            return detection.label if detection.label in self.labels and detection.score >= self.min_score else None
        text = detection.text or ""
        for keyword in self.keywords:
            if keyword.lower() in text.lower():
                return text
        if self.regex:
            import re

            found = re.search(self.regex, text)
            return found.group(0) if found else None
        return None


def read_rule(name: str, fields, action: str) -> DetectorRule:
    """A policy rule for detector `name`, read and validated by the detector's own module (which
    imports no model: that happens on first `load`)."""
    import importlib

    return importlib.import_module(DETECTORS[name][0]).read_rule(fields, action)


_LOADED: dict = {}


def load(name: str):
    """The detector, loaded once per process (models take seconds to load)."""
    if name not in _LOADED:
        import importlib

        _LOADED[name] = importlib.import_module(DETECTORS[name][0]).DETECTOR()
    return _LOADED[name]
