"""Threshold bands and the policy-file reader that every signal's rules are built with.

A signal's policy section (`pdq:`, `keypoints:`, `embedding:`, ...) is read by the signal's own
rules type (see `moderate.signals.base`), so adding a signal adds its section without touching
`moderate.policy`. Everything here is validation: a mistake is refused with one line naming the
file, the field and the problem, because a silently ignored typo in a threshold is a hole in
moderation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import PolicyError
from .verdict import VERDICTS

BAND_ACTIONS = VERDICTS + ("bank",)  # "bank": the bank's own action (or the one the policy sets for it)
MAX_SHOWN = 200  # characters of an offending value an error message echoes


def shown(value: object) -> str:
    """`value` as text cut to MAX_SHOWN characters: an error line never echoes an unbounded value."""
    text = str(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Band:
    """Evidence whose value reaches `bound` gets `action`; which way "reaches" goes is the rules'
    (distances: at most the bound; scores and inliers: at least)."""

    bound: float
    action: str
    name: str

    @property
    def max_distance(self) -> float:  # the name PDQ bands have always had
        return self.bound


@dataclass(frozen=True)
class SignalRules:
    """One signal's policy section: whether it runs, and its bands, strongest first.

    `closer` says which way values improve: "lower" for distances, "higher" for similarities and
    inlier counts. The first band a value reaches applies. Subclasses add the signal's own knobs
    and read them in `read`.
    """

    enabled: bool = True
    bands: tuple[Band, ...] = ()

    closer: ClassVar[str] = "lower"
    bound_field: ClassVar[str] = "max_distance"  # the band's key in the policy file
    label: ClassVar[str] = "distance"  # default band names read `SIGNAL.LABEL<=BOUND`

    def bands_for(self, bank: str | None) -> tuple[Band, ...]:
        return self.bands

    def band(self, value: float, bank: str | None = None) -> Band | None:
        reaches = (lambda b: value <= b.bound) if self.closer == "lower" else (lambda b: value >= b.bound)
        return next((b for b in self.bands_for(bank) if reaches(b)), None)

    def rank(self, value: float, bank: str | None = None) -> int:
        """0 for the first (strongest) band, 1 for the next...; one past the last when in none."""
        bands = self.bands_for(bank)
        band = self.band(value, bank)
        return bands.index(band) if band is not None else len(bands)

    def all_bands(self) -> tuple[Band, ...]:
        return self.bands

    @property
    def loosest(self) -> float:
        """The bound a value must reach to be in any band: what the index has to look up to."""
        bounds = [b.bound for b in self.all_bands()]
        return max(bounds) if self.closer == "lower" else min(bounds)

    @classmethod
    def make_band(cls, signal: str, bound: float, action: str, name: str | None = None) -> Band:
        operator = "<=" if cls.closer == "lower" else ">="
        return Band(bound, action, name or f"{signal}.{cls.label}{operator}{bound:g}")

    @classmethod
    def read(cls, signal: str, fields: "Fields") -> "SignalRules":
        """The rules from a policy section; subclasses read their own knobs first."""
        return cls(enabled=fields.boolean("enabled", True), bands=fields.bands("thresholds", cls, signal, cls().bands))

    @classmethod
    def read_bound(cls, fields: "Fields") -> float:
        """One band's bound from the policy file (subclasses set the range)."""
        raise NotImplementedError


class Fields:
    """Reads one mapping of a policy, naming `file: field: problem` on any mistake."""

    def __init__(self, data: Any, origin: str, prefix: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(f"{origin}: {prefix or 'policy'}: must be a mapping, got {type(data).__name__}")
        self.data, self.origin, self.prefix, self.seen = data, origin, prefix, set()

    def fail(self, key: str, problem: str):
        raise PolicyError(f"{self.origin}: {self.prefix}{shown(key)}: {shown(problem)}")

    def get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def text(self, key: str, default: str) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, default)
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"must be an integer from {low} to {high}, got {value!r}")
        return value

    def fraction(self, key: str, low: float = 0.0, high: float = 1.0) -> float:
        value = self.get(key, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"must be a number from {low:g} to {high:g}, got {value!r}")
        return float(value)

    def section(self, key: str) -> "Fields":
        return type(self)(self.get(key, {}), self.origin, f"{self.prefix}{key}.")

    def bands(self, key: str, rules: type[SignalRules], signal: str, default: tuple[Band, ...]) -> tuple[Band, ...]:
        """Threshold bands, first fit wins, each bound stricter than the next (distances rising,
        scores and inlier counts falling)."""
        value = self.get(key, None)
        if value is None:
            return default
        bound = rules.bound_field
        if not isinstance(value, list) or not value:
            self.fail(key, f"must be a non-empty list of {{{bound}, action}}, got {value!r}")
        rising = rules.closer == "lower"
        bands: list[Band] = []
        for i, item in enumerate(value):
            fields = type(self)(item, self.origin, f"{self.prefix}{key}[{i}].")
            band = rules.make_band(signal, rules.read_bound(fields), fields.choice("action", None, BAND_ACTIONS),
                                   fields.get("name", None))
            if not isinstance(band.name, str) or not band.name:
                fields.fail("name", f"must be a non-empty string, got {band.name!r}")
            fields.done()
            if bands:
                previous, current = bands[-1].bound, band.bound
                if (current <= previous) if rising else (current >= previous):
                    fields.fail(bound, f"must be {'larger' if rising else 'smaller'} than the previous band's {previous:g}")
            bands.append(band)
        return tuple(bands)

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            self.fail(str(unknown[0]), "unknown field (check the spelling; see policies/default.yaml)")


