"""The signal interface: what every kind of fingerprint provides, and what the engine asks of it.

A signal is one module (python-threatexchange's `SignalType` is the model: a name, an index,
comparison and validation behind one registry line). The engine, the policy, `explain` and
`search` iterate `moderate.signals.SIGNALS` instead of naming signals:

- `name`, `measure` (the evidence scale: "distance", "score" or "inliers") and `rules` (the type
  that reads the signal's policy section and holds its bands, see `moderate.rules`);
- `find(query, context, rules)`: evidence for every reference of the context's banks within the
  rules' loosest band, duplicates included (every matching entry, never only the best);
- `verify(evidence, query, context, rules)`: optional ability: add geometric verification to
  evidence other signals found (keypoints localize PDQ matches);
- `observations(query, rules)`: reasons about the query itself (a hash too flat to use);
- `nearest(reference, query, context, rules)`: the reference's closest evidence in a query that
  check already ran on, also outside every band, with a note (`explain`);
- `search(query, context, banks, min_similarity)`: evidence for reverse image search, ranked on
  one similarity scale shared by every signal (`similarity(value)`: 1.0 identical; each signal's
  first default band sits near 0.88 and its review band near 0.80).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..evidence import Evidence
    from ..media import Media
    from ..media.pixels import Frame
    from ..policy import RegionRules
    from ..regions import Region
    from ..rules import SignalRules
    from ..store import Store
    from ..store.catalog import Snapshot
    from ..verdict import Reason


@dataclass
class Query:
    """One frame being checked, its regions, and what signals computed from it so far (by signal
    name), so that a signal can use another's values and `explain` can read them afterwards.
    `media` is the whole input the frame came from (its bytes, for digests of the file)."""

    frame: Frame
    regions: list[Region]
    computed: dict = field(default_factory=dict)
    media: Media | None = None


@dataclass(frozen=True)
class ReferenceImage:
    """One frame of an image being added to a bank: `box` is the part that is the reference (the
    whole frame unless `bank add --region`), `media` the decoded input, `regions` the policy's
    region rules (references get the same de-bordered and part hashes queries get)."""

    media: Media
    frame: Frame
    box: Region
    regions: RegionRules


@dataclass(frozen=True)
class Context:
    """What matching reads: the banks' derived indexes, the store (vector search), and the banks
    whose references count."""

    snapshot: Snapshot
    store: Store
    banks: frozenset[str]


class Signal:
    """Base of every signal; subclasses set the class attributes and implement `find`."""

    name: ClassVar[str]
    measure: ClassVar[str]
    rules: ClassVar[type[SignalRules]]
    # values have a text form hash lists carry: `parse` validates it, and `compute(pixels, dihedral)`
    # makes them from a frame for `moderate hash`
    listable: ClassVar[bool] = False
    # hash-list signal types (python-threatexchange's names first) whose rows become this signal's
    # values -> the kind of value each is; `parse(text, list_type)` validates a row's value
    list_types: ClassVar[dict[str, str]] = {}
    search_every_frame: ClassVar[bool] = False  # search each frame of an animation, not only the first

    def parse(self, text: str, list_type: str | None = None) -> str:
        """A value from a hash list row (of `list_type`, a key of `list_types`) in its canonical
        form; ValueError naming the problem."""
        raise ValueError(f"{self.name} values are not carried by hash lists")

    def listed_value(self, text: str, list_type: str, flag: int):
        """The stored value of a hash-list row: its canonical text (`parse`), its signal type and the
        number the row keeps beside it (a PDQ hash's quality; for a digest, whether it lists its
        reference)."""
        raise NotImplementedError

    def find(self, query: Query, context: Context, rules: SignalRules) -> list[Evidence]:
        raise NotImplementedError

    def verify(self, evidence: list[Evidence], query: Query, context: Context, rules: SignalRules) -> list[Evidence]:
        return evidence

    def observations(self, query: Query, rules: SignalRules) -> list[Reason]:
        return []

    def nearest(self, reference: tuple[str, str], query: Query, context: Context,
                rules: SignalRules) -> tuple[Evidence | None, str | None, bool]:
        """(evidence, note, judged): the reference's closest evidence in the query check ran on,
        a note on why there is none or what else to know, and whether the policy's bands judge it
        (False for evidence computed only to show how far a reference fell short). Default: the
        strongest of check's own evidence for the reference."""
        found = [e for e in query.computed.get("evidence", ()) if e.reference == reference and e.signal == self.name]
        best = min(found, key=lambda e: e.strength, default=None)
        return best, None if best else f"no {self.name} evidence for this reference within the policy's loosest band", True

    def search(self, query: Query, context: Context, rules: SignalRules, min_similarity: float) -> list[Evidence]:
        return []

    def similarity(self, value: float) -> float:
        raise NotImplementedError

    def unavailable(self, context: Context) -> str | None:
        """Why this signal cannot be searched in the context's banks, or None."""
        return None

    def holds(self, reference: tuple[str, str], context: Context) -> bool:
        """Whether the reference has values of this signal (else `explain` leaves it out)."""
        return False


class StoredSignal(Signal):
    """A signal whose reference values are kept in a Chroma collection of their own and matched
    through an index derived from it (persisted with the catalog's snapshot, rebuilt from Chroma).

    Records are named `BANK::REFERENCE_ID::N` (see `moderate.ids`). The index type has
    `build(records)`, `appended(records)` (records: (record id, value) pairs), `without(mask)`,
    `ids` (a `RecordIds`), and `arrays()` / `from_arrays(arrays, extra)` for persistence.
    """

    collection: ClassVar[str]
    index: ClassVar[type]
    page: ClassVar[int] = 5000  # records per Chroma round trip
    include: ClassVar[tuple[str, ...]] = ("embeddings",)  # what `decode` reads from a Chroma page

    def reference_values(self, image: ReferenceImage) -> list:
        """The values one frame of a reference image contributes (none for later frames, say)."""
        raise NotImplementedError

    def encode(self, values: list) -> dict:
        """Chroma `add` arguments for these values: `embeddings`, and `documents` if any."""
        raise NotImplementedError

    def decode(self, page: dict) -> list:
        """The values of a Chroma `get` page (which has the fields in `include`)."""
        raise NotImplementedError

    def record_metadata(self, value) -> dict:
        """Metadata a record keeps besides its bank and reference id."""
        return {}
