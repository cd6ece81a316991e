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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PolicyError
from .evidence import Evidence as Match
from .media import Budgets
from .verdict import VERDICTS, Reason, severity, worst

BAND_ACTIONS = VERDICTS + ("bank",)
# Hostile or broken configuration must cost bounded time and memory: a policy is a few kB.
MAX_POLICY_BYTES = 1 << 20
MAX_POLICY_NODES = 100_000  # YAML values once aliases are expanded
MAX_SHOWN = 200  # characters of an offending value an error message echoes
VERIFIED_ORIGINAL = "provenance.verified_original"
ALLOWLISTED = "allowlist.known_false_positive"


@dataclass(frozen=True)
class Band:
    """Matches within `max_distance` get `action` ("bank": the bank's action)."""

    max_distance: int
    action: str
    name: str

    @classmethod
    def of(cls, max_distance: int, action: str, name: str | None = None) -> "Band":
        return cls(max_distance, action, name or f"pdq.distance<={max_distance}")

    @property
    def bound(self) -> int:
        return self.max_distance


@dataclass(frozen=True)
class PdqRules:
    min_quality: int = 50
    on_low_quality: str = "allow"
    dihedral: bool = False
    bands: tuple[Band, ...] = (Band.of(31, "bank"), Band.of(52, "review"))

    @property
    def max_distance(self) -> int:
        return max(b.max_distance for b in self.bands)

    def band(self, distance: int) -> Band | None:
        return next((b for b in self.bands if distance <= b.max_distance), None)


@dataclass(frozen=True)
class FloorBand:
    """Evidence scoring at least `minimum` (keypoint inliers, embedding similarity) gets `action`."""

    minimum: float
    action: str
    name: str

    @property
    def bound(self) -> float:
        return self.minimum

    @staticmethod
    def maker(measure: str):
        """A band constructor whose default names read `MEASURE>=VALUE`."""
        return lambda minimum, action, name=None: FloorBand(minimum, action, name or f"{measure}>={minimum:g}")


class _FloorBands:
    """Rules whose bands are floors, highest first: the first band the value reaches applies."""

    bands: tuple[FloorBand, ...]

    @property
    def floor(self) -> float:
        return min(b.minimum for b in self.bands)

    def bands_for(self, bank: str | None) -> tuple[FloorBand, ...]:
        return self.bands

    def band(self, value: float, bank: str | None = None) -> FloorBand | None:
        return next((b for b in self.bands_for(bank) if value >= b.minimum), None)


INLIERS = FloorBand.maker("keypoints.inliers")
SIMILARITY = FloorBand.maker("embedding.similarity")


@dataclass(frozen=True)
class KeypointRules(_FloorBands):
    """Local-feature matching (see `moderate.signals.verification`): candidates from a pooled descriptor
    index, verified by RANSAC. Distractors reach at most 8 inliers on the robustness corpus."""

    enabled: bool = True
    features: int = 1500  # ORB corners described per query frame
    candidates: int = 4  # most voted reference images verified per frame
    bands: tuple[FloorBand, ...] = (INLIERS(20, "bank"), INLIERS(12, "review"))


@dataclass(frozen=True)
class EmbeddingRules(_FloorBands):
    """Similar-content matching, for banks created with an embedding model."""

    enabled: bool = True
    model: str | None = None  # require banks' vectors to come from this model (name or folder)
    candidates: int = 20  # nearest references fetched from Chroma per frame
    bands: tuple[FloorBand, ...] = (SIMILARITY(0.92, "bank"), SIMILARITY(0.85, "review"))
    per_bank: tuple[tuple[str, tuple[FloorBand, ...]], ...] = ()  # (bank, its own bands)

    def bands_for(self, bank: str | None) -> tuple[FloorBand, ...]:
        return dict(self.per_bank).get(bank, self.bands)

    @property
    def floor(self) -> float:
        return min(b.minimum for bands in [self.bands, *dict(self.per_bank).values()] for b in bands)


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
    pdq: PdqRules = PdqRules()
    keypoints: KeypointRules = KeypointRules()
    embedding: EmbeddingRules = EmbeddingRules()
    regions: RegionRules = RegionRules()
    provenance: ProvenanceRules = ProvenanceRules()
    limits: Budgets = Budgets()
    source: str = "<built-in default>"
    webhooks: tuple = ()  # moderate.sinks.webhooks.Webhook
    detectors: tuple = ()  # DetectorRule, after the fields above so positional construction keeps working

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Policy":
        origin = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise PolicyError(f"{origin}: cannot read policy: {exc.strerror or exc}") from None
        if len(raw) > MAX_POLICY_BYTES:
            raise PolicyError(f"{origin}: policy is over {MAX_POLICY_BYTES} bytes")
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
        pdq_fields = top.section("pdq")
        pdq = PdqRules(
            min_quality=pdq_fields.integer("min_quality", 50, 0, 100),
            on_low_quality=pdq_fields.choice("on_low_quality", "allow", VERDICTS),
            dihedral=pdq_fields.boolean("dihedral", False),
            bands=pdq_fields.bands("thresholds", Band.of, PdqRules().bands, "max_distance", rising=True),
        )
        pdq_fields.done()
        keypoint_fields = top.section("keypoints")
        keypoints = KeypointRules(
            enabled=keypoint_fields.boolean("enabled", True),
            features=keypoint_fields.integer("features", 1500, 100, 20000),
            candidates=keypoint_fields.integer("candidates", 4, 1, 100),
            bands=keypoint_fields.bands("thresholds", INLIERS, KeypointRules().bands, "min_inliers", rising=False),
        )
        keypoint_fields.done()
        embedding_fields = top.section("embedding")
        model = embedding_fields.get("model", None)
        if model is not None and (not isinstance(model, str) or not model.strip()):
            embedding_fields.fail("model", f"must be a model name or a Hugging Face folder, got {model!r}")
        bands = embedding_fields.bands("thresholds", SIMILARITY, EmbeddingRules().bands, "min_similarity", rising=False)
        per_bank_fields = embedding_fields.section("banks")  # BANK: its own thresholds
        per_bank = tuple((str(bank), per_bank_fields.bands(bank, SIMILARITY, bands, "min_similarity", rising=False))
                         for bank in per_bank_fields.data)
        embedding = EmbeddingRules(
            enabled=embedding_fields.boolean("enabled", True),
            model=model,
            candidates=embedding_fields.integer("candidates", 20, 1, 1000),
            bands=bands,
            per_bank=per_bank,
        )
        embedding_fields.done()
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
        return cls(name, default, on_error, banks, pdq, keypoints, embedding, regions, provenance, limits, origin, webhooks,
                   detectors)

    # -- deciding --------------------------------------------------------------------------------

    def uses(self, bank: str, bank_record: dict) -> bool:
        return bool(bank_record.get("enabled", True)) and (self.banks is None or bank in self.banks)

    def bank_action(self, bank: str, bank_record: dict) -> str | None:
        """The action for matches in a flagged bank, or None when this policy does not use it."""
        if not self.uses(bank, bank_record) or bank_record.get("kind", "flagged") != "flagged":
            return None
        chosen = "bank" if self.banks is None else self.banks[bank]
        return bank_record.get("action", "block") if chosen == "bank" else chosen

    def band_for(self, match: Match):
        """The threshold band a match falls in (PDQ by distance, keypoints by inliers, embeddings by
        similarity with the bank's own bands if the policy sets them), or None."""
        if match.signal == "keypoints":
            return self.keypoints.band(match.inliers or 0)
        if match.signal == "embedding":
            return self.embedding.band(match.similarity or 0.0, match.bank)
        return self.pdq.band(match.distance)

    def band_rank(self, match: Match) -> int:
        """Which of its signal's bands a match falls in: 0 for the first (strongest), and so on;
        one past the last when it is in none."""
        bands = self.bands_of(match)
        band = self.band_for(match)
        return bands.index(band) if band is not None else len(bands)

    def bands_of(self, match: Match) -> tuple:
        if match.signal == "keypoints":
            return self.keypoints.bands
        if match.signal == "embedding":
            return self.embedding.bands_for(match.bank)
        return self.pdq.bands

    def reasons_for(self, matches: list[Match], banks: dict) -> list[Reason]:
        """One reason per matched reference (its strongest match), most severe and closest first."""
        best: dict[tuple[str, str], tuple[Match, object]] = {}
        for m in matches:
            band = self.band_for(m)
            key = (m.bank, m.reference_id)
            if band is not None and (key not in best or _rank(m, band) < _rank(*best[key])):
                best[key] = (m, band)
        reasons = []
        for m, band in best.values():
            bank_action = self.bank_action(m.bank, banks.get(m.bank, {}))
            if bank_action is None:
                continue
            action = bank_action if band.action == "bank" else band.action
            reasons.append(Reason(band.name, action, m))
        reasons.sort(key=lambda r: (-severity(r.action), r.strength, r.bank, r.reference_id))
        return reasons

    def verdict_for(self, reasons: list[Reason]) -> str:
        if self.provenance.allow_verified_originals and any(r.rule == VERIFIED_ORIGINAL for r in reasons):
            return "allow"
        return worst([self.default] + [r.action for r in reasons])


def _rank(m: Match, band) -> tuple:
    """Smaller is stronger evidence: a band that blocks, then PDQ (comparable across tools), then
    the closer hash or the more inliers."""
    return (band.action not in ("bank", "block"), m.signal != "pdq", m.strength)


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
        raise PolicyError(f"{origin}: not valid YAML{where}: {_shown(problem)}") from None
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


def _shown(value: object) -> str:
    """`value` as text cut to MAX_SHOWN characters: an error line never echoes an unbounded value."""
    text = str(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


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


class _Fields:
    """Reads one mapping of a policy, naming `file: field: problem` on any mistake."""

    def __init__(self, data: Any, origin: str, prefix: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PolicyError(f"{origin}: {prefix or 'policy'}: must be a mapping, got {type(data).__name__}")
        self.data, self.origin, self.prefix, self.seen = data, origin, prefix, set()

    def fail(self, key: str, problem: str):
        raise PolicyError(f"{self.origin}: {self.prefix}{_shown(key)}: {_shown(problem)}")

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

    def section(self, key: str) -> "_Fields":
        return _Fields(self.get(key, {}), self.origin, f"{self.prefix}{key}.")

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

    def bands(self, key: str, make, default: tuple, bound: str, rising: bool) -> tuple:
        """Threshold bands, first fit wins: `make(bound value, action, name)` from each item, the
        bound rising (distances) or falling (inliers, similarities) from band to band."""
        value = self.get(key, None)
        if value is None:
            return default
        if not isinstance(value, list) or not value:
            self.fail(key, f"must be a non-empty list of {{{bound}, action}}, got {value!r}")
        read = {"max_distance": lambda f: f.integer(bound, None, 0, 256),
                "min_inliers": lambda f: f.integer(bound, None, 8, 10000),
                "min_similarity": lambda f: f.fraction(bound, 0.5, 1.0)}[bound]
        bands = []
        for i, item in enumerate(value):
            fields = _Fields(item, self.origin, f"{self.prefix}{key}[{i}].")
            band = make(read(fields), fields.choice("action", None, BAND_ACTIONS), fields.get("name", None))
            if not isinstance(band.name, str) or not band.name:
                fields.fail("name", f"must be a non-empty string, got {band.name!r}")
            fields.done()
            if bands:
                previous, current = bands[-1].bound, band.bound
                if (current <= previous) if rising else (current >= previous):
                    fields.fail(bound, f"must be {'larger' if rising else 'smaller'} than the previous band's {previous:g}")
            bands.append(band)
        return tuple(bands)

    def fraction(self, key: str, low: float = 0.0, high: float = 1.0) -> float:
        value = self.get(key, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"must be a number from {low:g} to {high:g} (a fraction of the frame), got {value!r}")
        return float(value)

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

    def detector_rules(self, key: str) -> tuple[DetectorRule, ...]:
        from .detectors import require
        from .detectors.nudity import LABELS

        value = self.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"must map detector names (nudenet, ocr) to lists of rules, got {value!r}")
        rules = []
        for detector, items in value.items():
            require(detector, self.origin)
            if not isinstance(items, list) or not items:
                self.fail(f"{key}.{detector}", f"must be a non-empty list of rules, got {items!r}")
            for i, item in enumerate(items):
                fields = _Fields(item, self.origin, f"{self.prefix}{key}.{detector}[{i}].")
                action = fields.choice("action", None, VERDICTS)
                if detector == "nudenet":
                    labels = fields.get("labels", None)
                    if not isinstance(labels, list) or not labels or any(label not in LABELS for label in labels):
                        fields.fail("labels", f"must be a list of NudeNet labels ({', '.join(LABELS)}), got {labels!r}")
                    min_score = fields.fraction("min_score", 0.2, 1.0) if "min_score" in fields.data else 0.5
                    rule = DetectorRule(detector, action, fields.get("name", None) or f"nudenet.{'|'.join(labels)}",
                                        labels=tuple(labels), min_score=min_score)
                else:
                    keywords = fields.get("keywords", [])
                    regex = fields.get("regex", None)
                    if not isinstance(keywords, list) or any(not isinstance(k, str) or not k.strip() for k in keywords):
                        fields.fail("keywords", f"must be a list of words or phrases, got {keywords!r}")
                    if regex is not None:
                        import re

                        try:
                            re.compile(regex)
                        except (re.error, TypeError) as exc:
                            fields.fail("regex", f"not a valid regular expression: {exc}")
                    if not keywords and regex is None:
                        fields.fail("keywords", "an ocr rule needs keywords or a regex")
                    rule = DetectorRule(detector, action, fields.get("name", None) or f"ocr.{'regex' if regex else 'keywords'}",
                                        keywords=tuple(keywords), regex=regex)
                fields.done()
                rules.append(rule)
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

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.seen]
        if unknown:
            self.fail(str(unknown[0]), "unknown field (check the spelling; see policies/default.yaml)")
