"""Policies: which banks to use, how close counts as a match, and what each match means.

A policy is a YAML file (see `policies/`), validated on load: any mistake is refused with one line
naming the file, the field and the problem, because a silently ignored typo in a threshold is a
hole in moderation. `Policy()` with no arguments is the built-in default, identical to
`policies/default.yaml`.

Evidence is turned into a verdict here: each PDQ match falls into the first threshold band whose
`max_distance` it is within, and the band's action applies (`bank` meaning the bank's own action,
or the one this policy sets for that bank). The verdict is the most severe action among the
reasons, or the policy's `default` when nothing matched.
"""

from __future__ import annotations

import collections.abc
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import PolicyError
from .evidence import Evidence
from .media import Budgets
from .rules import BAND_ACTIONS, Fields, SignalRules, shown
from .signals import SIGNALS
from .verdict import VERDICTS, Reason, severity, worst

# Hostile or broken configuration must cost bounded time and memory: a policy is a few kB.
MAX_POLICY_BYTES = 1 << 20
MAX_POLICY_NODES = 100_000  # YAML values once aliases are expanded
VERIFIED_ORIGINAL = "provenance.verified_original"
ALLOWLISTED = "allowlist.known_false_positive"


@dataclass(frozen=True)
class Part:
    """A part of every frame to compare on its own, in fractions of the frame (query and reference)."""

    name: str
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class RegionRules:
    """Which regions of a frame are hashed besides the whole frame (see `moderate.regions`)."""

    mode: str = "whole"  # whole | objects (adds tiles and content proposals)
    deborder: bool = True
    parts: tuple[Part, ...] = ()
    tiles: tuple[int, ...] = (2, 3)  # objects mode: grids of n x n tiles, overlapping by half a tile
    proposals: int = 8  # objects mode: at most this many content-based boxes


@dataclass(frozen=True)
class ProvenanceRules:
    """What signed originals mean for a verdict."""

    modified_copy: str = "review"  # an input that matches a registered signed original but is not it
    allow_verified_originals: bool = False  # a verified original is allowed even if a flagged bank matches


@dataclass(frozen=True)
class Policy:
    name: str = "default"
    default: str = "allow"
    on_error: str = "review"
    banks: dict | None = None  # None: every enabled bank, with its own action
    signals: tuple[tuple[str, SignalRules], ...] = field(  # each signal's section, in registry order
        default_factory=lambda: tuple((name, signal.rules()) for name, signal in SIGNALS.items()))
    regions: RegionRules = RegionRules()
    provenance: ProvenanceRules = ProvenanceRules()
    limits: Budgets = Budgets()
    source: str = "<built-in default>"
    webhooks: tuple = ()  # moderate.sinks.webhooks.Webhook
    detectors: tuple = ()  # DetectorRule, after the fields above so positional construction keeps working

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Policy":
        from .errors import MediaError
        from .media import read_file

        origin = os.fspath(path)
        try:  # only a regular file, read within the limit: a FIFO or a device named as a policy never hangs
            raw = read_file(path, MAX_POLICY_BYTES)
        except MediaError as exc:
            if exc.code == "too_large":
                raise PolicyError(f"{origin}: policy is over {MAX_POLICY_BYTES} bytes") from None
            raise PolicyError(f"{origin}: cannot read policy: {exc.detail}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{origin}: policy is not UTF-8 text") from None
        return cls.from_mapping(_parse_yaml(text, origin), origin)

    @classmethod
    def from_mapping(cls, data: Any, origin: str = "<policy>") -> "Policy":
        top = _Fields(data, origin, "")
        name = top.text("name", Path(origin).stem if origin.endswith((".yaml", ".yml")) else "policy")
        default = top.choice("default", "allow", VERDICTS)
        on_error = top.choice("on_error", "review", VERDICTS)
        banks = top.banks("banks")
        signals = []
        for signal_name, signal in SIGNALS.items():
            section = top.section(signal_name)
            signals.append((signal_name, signal.rules.read(signal_name, section)))
            section.done()
        region_fields = top.section("regions")
        regions = RegionRules(
            mode=region_fields.choice("mode", "whole", ("whole", "objects")),
            deborder=region_fields.boolean("deborder", True),
            parts=region_fields.parts("parts"),
            tiles=region_fields.tiles("tiles"),
            proposals=region_fields.integer("proposals", 8, 0, 64),
        )
        region_fields.done()
        provenance_fields = top.section("provenance")
        provenance = ProvenanceRules(
            modified_copy=provenance_fields.choice("modified_copy", "review", VERDICTS),
            allow_verified_originals=provenance_fields.boolean("allow_verified_originals", False),
        )
        provenance_fields.done()
        limits_fields = top.section("limits")
        defaults = Budgets()
        limits = Budgets(
            **{
                key: limits_fields.integer(key, getattr(defaults, key), 1, 1 << 40)
                for key in ("max_bytes", "max_pixels", "max_frames", "max_total_pixels", "max_pages", "max_page_objects", "max_seconds")
            }
        )
        limits_fields.done()
        webhooks = top.webhooks("webhooks")
        detectors = top.detector_rules("detectors")
        top.done()
        return cls(name=name, default=default, on_error=on_error, banks=banks, signals=tuple(signals), regions=regions,
                   provenance=provenance, limits=limits, source=origin, webhooks=webhooks, detectors=detectors)

    # -- signal rules ----------------------------------------------------------------------------

    def rules_for(self, signal: str) -> SignalRules:
        """The policy's rules for a signal; a signal registered after the policy was made gets
        its defaults, as a policy file without its section would."""
        found = dict(self.signals).get(signal)
        return found if found is not None else SIGNALS[signal].rules()

    def __getattr__(self, name: str):
        """`policy.pdq`, `policy.keypoints`, ...: a signal's rules by its name."""
        if not name.startswith("_") and name in SIGNALS:
            return self.rules_for(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def with_rules(self, **rules: SignalRules) -> "Policy":
        """A copy with some signals' rules replaced (`policy.with_rules(keypoints=...)`)."""
        unknown = sorted(set(rules) - set(SIGNALS))
        if unknown:
            raise PolicyError(f"no signal named {unknown[0]!r} (signals: {', '.join(SIGNALS)})")
        return replace(self, signals=tuple((name, rules.get(name, current)) for name, current in self.signals))

    # -- deciding --------------------------------------------------------------------------------

    def uses(self, bank: str, bank_record: dict) -> bool:
        return bool(bank_record.get("enabled", True)) and (self.banks is None or bank in self.banks)

    def bank_action(self, bank: str, bank_record: dict) -> str | None:
        """The action for matches in a flagged bank, or None when this policy does not use it."""
        if not self.uses(bank, bank_record) or bank_record.get("kind", "flagged") != "flagged":
            return None
        chosen = "bank" if self.banks is None else self.banks[bank]
        return bank_record.get("action", "block") if chosen == "bank" else chosen

    def action_for(self, band, bank: str, banks: dict) -> str | None:
        """What a band means for a match in `bank` (`banks`: name -> bank record): the band's action,
        or the bank's for "bank"; None when this policy acts on no match in that bank."""
        bank_action = self.bank_action(bank, banks.get(bank, {}))
        if bank_action is None:
            return None
        return bank_action if band.action == "bank" else band.action

    def band_for(self, evidence: Evidence):
        """The band of its signal's rules that a piece of evidence falls in (the bank's own bands
        where the policy sets them), or None."""
        return self.rules_for(evidence.signal).band(evidence.value, evidence.bank)

    def band_rank(self, evidence: Evidence) -> int:
        """Which of its signal's bands evidence falls in: 0 for the first (strongest), and so on;
        one past the last when it is in none."""
        return self.rules_for(evidence.signal).rank(evidence.value, evidence.bank)

    def reasons_for(self, matches: list[Evidence], banks: dict) -> list[Reason]:
        """One reason per matched reference (its strongest match), most severe and closest first."""
        best: dict[tuple[str, str], tuple[Evidence, object]] = {}
        for m in matches:
            band = self.band_for(m)
            key = (m.bank, m.reference_id)
            if band is not None and (key not in best or _rank(m, band) < _rank(*best[key])):
                best[key] = (m, band)
        reasons = []
        for m, band in best.values():
            action = self.action_for(band, m.bank, banks)
            if action is not None:
                reasons.append(Reason(band.name, action, m))
        reasons.sort(key=lambda r: (-severity(r.action), r.strength, r.bank, r.reference_id))
        return reasons

    def verdict_for(self, reasons: list[Reason]) -> str:
        if self.provenance.allow_verified_originals and any(r.rule == VERIFIED_ORIGINAL for r in reasons):
            return "allow"
        return worst([self.default] + [r.action for r in reasons])


def _rank(m: Evidence, band) -> tuple:
    """Smaller is stronger evidence: a band that blocks, then the signal first in the registry
    (PDQ: comparable across tools), then the closer value."""
    return (band.action not in ("bank", "block"), list(SIGNALS).index(m.signal), m.strength)


def _parse_yaml(text: str, origin: str) -> Any:
    """The YAML document in `text`, refused when its aliases expand past MAX_POLICY_NODES (PyYAML
    shares aliased nodes, so ten lines can stand for a billion values) or it nests too deeply."""
    import yaml

    loader = _unique_keys_loader()(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_POLICY_NODES:
            raise PolicyError(f"{origin}: policy is too large: over {MAX_POLICY_NODES} values once its aliases are expanded")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{origin}: not valid YAML{where}: {shown(problem)}") from None
    except RecursionError:
        raise PolicyError(f"{origin}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root) -> int:
    """Nodes under `root` with every alias expanded, counted once per distinct node (capped just
    above the limit); an alias inside the very node it names is refused."""
    import yaml

    sizes: dict[int, int] = {}

    def size(node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise yaml.YAMLError("an alias refers to a mapping or list that contains it")
            return sizes[id(node)]
        sizes[id(node)] = -1  # on the current path
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[id(node)] = min(1 + sum(size(child) for child in children), MAX_POLICY_NODES + 1)
        return sizes[id(node)]

    return size(root)


def _unique_keys_loader():
    """A safe YAML loader that refuses duplicate keys: with plain YAML the last one silently wins,
    so `on_error: review` followed by `on_error: allow` would fail open."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, collections.abc.Hashable):
                    break  # the safe loader refuses unhashable keys with its own error
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeys


class _Fields(Fields):
    """`moderate.rules.Fields` with the readers of the policy's own sections."""

    def banks(self, key: str) -> dict | None:
        value = self.get(key, "all")
        if value == "all":
            return None
        if not isinstance(value, dict) or not value:
            self.fail(key, f"must be 'all' or a mapping of bank name to action, got {value!r}")
        for bank, action in value.items():
            if action not in BAND_ACTIONS:
                self.fail(f"{key}.{bank}", f"must be one of {', '.join(BAND_ACTIONS)}, got {action!r}")
        return dict(value)

    def parts(self, key: str) -> tuple[Part, ...]:
        value = self.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"must be a list of {{name, x, y, w, h}} in fractions of the frame, got {value!r}")
        parts = []
        for i, item in enumerate(value):
            fields = _Fields(item, self.origin, f"{self.prefix}{key}[{i}].")
            part = Part(fields.text("name", ""), fields.fraction("x"), fields.fraction("y"), fields.fraction("w", 0.05),
                        fields.fraction("h", 0.05))
            if part.x + part.w > 1.0 + 1e-9 or part.y + part.h > 1.0 + 1e-9:
                fields.fail("w", "the part must lie inside the frame (x + w <= 1 and y + h <= 1)")
            if part.name in {p.name for p in parts}:
                fields.fail("name", f"{part.name!r} is used twice")
            fields.done()
            parts.append(part)
        return tuple(parts)

    def tiles(self, key: str) -> tuple[int, ...]:
        value = self.get(key, [2, 3])
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 8 for v in value):
            self.fail(key, f"must be a list of grid sizes from 2 to 8 (e.g. [2, 3]), got {value!r}")
        return tuple(value)

    def detector_rules(self, key: str) -> tuple:
        """`detectors: {NAME: [rules]}`, each rule read by its detector's own module."""
        from .detectors import DETECTORS, read_rule, require

        value = self.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"must map detector names ({', '.join(DETECTORS)}) to lists of rules, got {value!r}")
        rules = []
        for detector, items in value.items():
            require(detector, self.origin)
            if not isinstance(items, list) or not items:
                self.fail(f"{key}.{detector}", f"must be a non-empty list of rules, got {items!r}")
            for i, item in enumerate(items):
                fields = _Fields(item, self.origin, f"{self.prefix}{key}.{detector}[{i}].")
                rules.append(read_rule(detector, fields, fields.choice("action", None, VERDICTS)))
                fields.done()
        return tuple(rules)

    def webhooks(self, key: str) -> tuple:
        from .sinks.webhooks import Webhook

        value = self.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"must be a list of {{url, on, secret_env}}, got {value!r}")
        hooks = []
        for i, item in enumerate(value):
            fields = _Fields(item, self.origin, f"{self.prefix}{key}[{i}].")
            url = fields.text("url", "")
            if not url.startswith(("http://", "https://")):
                fields.fail("url", f"must be an http(s) URL, got {url!r}")
            on = fields.get("on", ["block", "review"])
            if not isinstance(on, list) or not on or any(v not in VERDICTS for v in on):
                fields.fail("on", f"must be a list of verdicts ({', '.join(VERDICTS)}), got {on!r}")
            secret_env = fields.get("secret_env", None)
            if secret_env is not None and (not isinstance(secret_env, str) or not secret_env.strip()):
                fields.fail("secret_env", f"must name an environment variable, got {secret_env!r}")
            if secret_env and not os.environ.get(secret_env):
                # else every delivery would go out unsigned, and receivers could not tell it from a forgery
                fields.fail("secret_env", f"environment variable {secret_env} is not set (or empty): "
                                          "set it, or drop secret_env to send unsigned")
            fields.done()
            hooks.append(Webhook(url, tuple(on), secret_env))
        return tuple(hooks)

