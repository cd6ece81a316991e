"""The engine: one pass from an input to a verdict.

    source -> media (decode within budgets) -> regions -> signals -> match (exact PDQ index,
           pooled keypoints) -> verification (RANSAC: inliers, polygon) -> policy (reasons, verdict)

The CLI, hooks and servers are thin front ends over `Engine`; everything they can do, a Python
caller can do with the same objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from ..sinks.audit import AuditLog
from ..detectors import load as load_detector
from ..banks import Banks, default_actor, image_files
from ..errors import MediaError, PolicyError, StoreError
from ..evidence import Evidence
from ..extras import require as require_extra
from .explain import Explanation, explain
from ..media.fetch import fetch, is_url
from ..store.catalog import Catalog, Snapshot
from ..media import Frame, Media, Source, WholeFrames, decode, describe, is_folder, read_bytes
from ..policy import ALLOWLISTED, VERIFIED_ORIGINAL, Policy
from ..provenance import Credentials, Keys, Provenance, Signatures, digests
from ..regions import Region, regions_for
from ..signals import EMBEDDING, LISTED, PDQ, SIGNALS, Context, PdqHash, Query
from ..sinks.queue import ReviewQueue
from ..exchanges import Exchanges
from .lookup import Comparison, LookupMatch, compare, lookup, lookup_batch
from .search import SearchHit, search
from ..store import Store
from ..verdict import Reason, Verdict, severity, worst
from ..sinks.webhooks import deliveries

if TYPE_CHECKING:
    import numpy as np

    from ..signals.embedding import Embedding



# Starting a worker process costs ~0.5 s (imports, index load); a check ~40 ms. Below this many
# inputs one process is faster (measured: 2 files 0.61 s inline, 1.34 s with 2 workers).
MIN_BATCH_FOR_WORKERS = 16


def hashed() -> tuple[str, ...]:
    """What `hash --signal` prints, from the registry: each signal whose values hash lists carry
    (`Engine.hash`), then embeddings (`Engine.embed`: a vector of the bank's model)."""
    return (*LISTED, EMBEDDING.name)


def default_data_dir() -> Path:
    """`MODERATE_HOME`, else the XDG data folder (`~/.local/share/moderate`)."""
    if os.environ.get("MODERATE_HOME"):
        return Path(os.environ["MODERATE_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "moderate"


@dataclass(frozen=True)
class FrameSignals:
    """The signals of one region of one frame (what `moderate hash` prints)."""

    source: str
    frame: int
    region: Region
    pdq: tuple[PdqHash, ...]
    page: int | None = None

    def to_dict(self) -> dict:
        out = {"source": self.source, "frame": self.frame, "region": self.region.to_dict(),
               "signals": [h.to_dict() for h in self.pdq]}
        if self.page is not None:
            out["page"] = self.page
        return out


@dataclass(frozen=True)
class FrameTrace:
    """What one frame's check computed and decided, for `moderate explain` to read instead of
    matching again its own way: the query (its regions, what each signal computed, and every piece
    of evidence found, under `computed["evidence"]`), the context it was matched in, and the
    judged reasons."""

    query: Query
    context: Context
    reasons: tuple[Reason, ...]

    @property
    def frame(self) -> Frame:
        return self.query.frame


class Engine:
    """Checks inputs against banks under a policy.

    `Engine(data_dir=None, chroma_url=None, policy=None)`: the data folder holds embedded Chroma and
    the derived index; `chroma_url` names a Chroma server instead; `policy` is a `Policy`, a path to
    a policy file, or None for the built-in default.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, chroma_url: str | None = None,
                 policy: Policy | str | os.PathLike | None = None, allow_hosts: tuple[str, ...] = (),
                 actor: str | None = None, enqueue_reviews: bool = False, audit: bool = True):
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.chroma_url = chroma_url or None
        if policy is None:
            policy = Policy()
        elif not isinstance(policy, Policy):
            policy = Policy.load(policy)
        self.policy = policy
        self.allow_hosts = tuple(allow_hosts)  # internal hosts URLs may point at (see moderate.media.fetch)
        self.store = Store(self.data_dir, self.chroma_url)
        self.catalog = Catalog(self.store)
        self.banks = Banks(self.store, self.catalog, policy.limits, policy.regions)
        self.keys = Keys(self.data_dir)
        self.signatures = Signatures(self.keys, self.banks, Credentials(self.data_dir), policy.limits)
        self.actor = actor or default_actor()  # who checks, in the audit log (a user, token or hook)
        self.enqueue_reviews = enqueue_reviews  # review verdicts go to the review queue
        self.audit = AuditLog(self.data_dir) if audit else None
        self.exchanges = Exchanges(self.data_dir, self.banks)
        self.queue = ReviewQueue(self.data_dir, self.banks, self.audit or AuditLog(self.data_dir),
                                 opinions=self.exchanges.report_decision)

    def verify(self, source: Source, signature_file: str | os.PathLike | None = None) -> Provenance:
        """Who signed an input and whether it is unchanged (see `moderate.provenance`)."""
        return self.signatures.verify(source, signature_file)

    # -- signals ----------------------------------------------------------------------------------

    def decode(self, source: Source, name: str | None = None, whole: WholeFrames | None = None) -> Media:
        """An input (path, bytes, stream, stdin or http(s) URL) decoded within the policy's budgets
        (`whole`: see `moderate.media.decode`)."""
        name = name or describe(source)
        return decode(self.read(source, name), self.policy.limits, PDQ.working_size, name, whole)

    def read(self, source: Source, name: str | None = None) -> bytes:
        """An input's bytes within `max_bytes` (an http(s) URL fetched safely), before any decoding."""
        if isinstance(source, str) and is_url(source):
            return fetch(source, self.policy.limits, allow_hosts=self.allow_hosts)
        return read_bytes(source, self.policy.limits, name or describe(source))

    def search(self, source: Source, banks: list[str] | None = None, top: int = 10, min_similarity: float = 0.75,
               higher_res: bool = False, signal: str = "auto") -> list[SearchHit]:
        """Reverse image search over the banks (see `moderate.engine.search`)."""
        return search(self, source, banks, top, min_similarity, higher_res, signal=signal)

    def lookup(self, signal: str, value: str, banks: list[str] | None = None,
               max_distance: int | None = None) -> list[LookupMatch]:
        """References matching a hash the caller has (pdq, md5, sha256), no image needed
        (see `moderate.engine.lookup`)."""
        return lookup(self, signal, value, banks, max_distance)

    def lookup_batch(self, items: list[tuple[str, str, int | None]], banks: list[str] | None = None) -> list:
        """`lookup` of each (signal, hash, max_distance): its matches, or its InvalidLookup in its slot."""
        return lookup_batch(self, items, banks)

    def compare(self, signal: str, a: str, b: str) -> Comparison:
        """Two hashes of one signal against each other, and the policy band their distance is in."""
        return compare(self.policy, signal, a, b)

    def embed(self, source: Source, model: str | None = None, name: str | None = None) -> list["Embedding"]:
        """The embedding of every frame of an input (`efficientnet-lite0` or a Hugging Face folder)."""
        from ..signals.embedding import DEFAULT_MODEL, Embedding, load_model

        embedder = load_model(model or self.policy.embedding.model or DEFAULT_MODEL)
        media = self.decode(source, name)
        vectors = embedder.compute([frame.pixels for frame in media.frames])
        return [Embedding(embedder.identity, vector) for vector in vectors]

    def hash(self, source: Source, dihedral: bool = False, name: str | None = None,
             signal: str = PDQ.name) -> list[FrameSignals]:
        """The values of a listable signal (one whose values hash lists carry) for every frame of an
        input; needs no store."""
        media = self.decode(source, name)
        compute = LISTED[signal].compute
        return [FrameSignals(media.source, frame.index, Region.whole(frame), compute(frame.pixels, dihedral), frame.page)
                for frame in media.frames]

    # -- checking ---------------------------------------------------------------------------------

    def check(self, source: Source, name: str | None = None, actor: str | None = None,
              enqueue: bool | None = None) -> Verdict:
        """One verdict for an input: the most severe of its frames', with every frame's reasons."""
        return _combined(self.check_frames(source, name, actor, enqueue))

    def check_frames(self, source: Source, name: str | None = None, actor: str | None = None,
                     enqueue: bool | None = None) -> list[Verdict]:
        """A verdict per frame of an input (one for a still image)."""
        verdicts, data, preview = self._verdicts(source, name)
        return self._record(verdicts, data, actor, enqueue, preview)

    def check_together(self, sources: list[Source], actor: str | None = None, enqueue: bool | None = None) -> Verdict:
        """Several images as one item (a post, an album, a listing): the strongest evidence of any of
        them decides; every reason names the image it came from."""
        if not sources:
            raise ValueError("check_together needs at least one input")
        checked = [self._verdicts(source, None) for source in sources]
        verdicts = [replace(v, reasons=tuple(replace(r, source=v.source) for r in v.reasons))
                    for frame_verdicts, *_ in checked for v in frame_verdicts]
        deciding = max(range(len(checked)), key=lambda i: max(severity(v.verdict) for v in checked[i][0]))
        item = replace(_combined(verdicts), source=" + ".join(frames[0].source for frames, *_ in checked),
                       frames=len(verdicts))
        _, data, preview = checked[deciding]
        return self._record([item], data, actor, enqueue, preview)[0]

    def _verdicts(self, source: Source, name: str | None,
                  trace: list[FrameTrace] | None = None) -> tuple[list[Verdict], bytes | None, np.ndarray | None]:
        """Frame verdicts of one input, its bytes and its first frame's pixels (None when it does not
        decode), not yet recorded anywhere; with `trace`, what each frame's pass computed and
        decided is appended to it (`moderate explain` reads it).

        The input is decoded once: provenance's digests take its full-resolution pixels from that
        decode, and the review queue's thumbnail its first frame."""
        start = time.perf_counter()
        name = name or describe(source)
        policy = self.policy
        snapshot = self.catalog.current()  # a store that is down fails the command, not the input
        self._check_policy_banks(snapshot)
        # Same answer as `verify`: a stripped original is looked up (only when an originals bank exists).
        originals = any(record.get("kind") == "originals" for record in snapshot.banks.values())
        data = None
        try:
            data = self.read(source, name)  # kept when it does not decode: crafted inputs need review most
            content = digests.Content(data, policy.limits, name)
            # What provenance digests is hashed as the check decodes, not decoded again for it.
            hashed = self.signatures.may_digest(data, originals, source, name)
            media = self.decode(data, name, content if hashed else None)
        except MediaError as exc:
            reason = Reason("on_error", policy.on_error, detail=exc.detail)  # no evidence: the input is the problem
            return [Verdict(name, policy.on_error, reasons=(reason,), error=str(exc), error_code=exc.code,
                            elapsed_ms=_ms(start), policy=policy.name,
                            sha256=hashlib.sha256(data).hexdigest() if data else None)], data, None
        provenance = self.signatures.verify(media.data, registry=originals, name=name, path=source, content=content)
        per_frame = [self._judge(snapshot, name, media, frame, provenance, content, trace) for frame in media.frames]
        elapsed = _ms(start)
        return [
            Verdict(name, policy.verdict_for(reasons), frame=signals.frame, page=signals.page,
                    reasons=tuple(replace(r, frame=signals.frame, page=signals.page) if len(media.frames) > 1 else r
                                  for r in reasons),
                    elapsed_ms=elapsed, policy=policy.name, sha256=media.sha256, width=media.width,
                    height=media.height, frames=len(media.frames), signals=signals.pdq[:1], provenance=provenance)
            for signals, reasons in per_frame
        ], media.data, media.frames[0].pixels

    def explain(self, source: Source, reference_id: str, bank: str | None = None) -> "Explanation":
        """Why an input does or does not match one reference, signal by signal (`moderate.engine.explain`)."""
        return explain(self, source, reference_id, bank)

    def _record(self, verdicts: list[Verdict], data: bytes | None, actor: str | None = None,
                enqueue: bool | None = None, preview: np.ndarray | None = None) -> list[Verdict]:
        """Sinks every verdict goes to: the audit log, and the review queue when asked for."""
        combined = _combined(verdicts)
        if self.audit is not None:
            reasons = [{"rule": r.rule, "action": r.action, "bank": r.bank, "reference_id": r.reference_id,
                        "distance": r.distance} for r in combined.reasons[:20]]
            self.audit.append(actor or self.actor, "verdict", combined.sha256, combined.verdict, {
                "source": combined.source, "policy": combined.policy, "frames": combined.frames,
                "error_code": combined.error_code, "reasons": reasons})
        if (self.enqueue_reviews if enqueue is None else enqueue) and combined.verdict == "review":
            self.queue.enqueue(combined, data, preview)
        for hook in self.policy.webhooks:
            if combined.verdict in hook.on:
                deliveries(self.data_dir).send(hook, combined.to_dict())
        return verdicts

    def banks_in_use(self, snapshot: Snapshot) -> frozenset[str]:
        """The banks the policy checks against; PolicyError when it names a bank the store does not
        have (a typo would fail open)."""
        named = [(f"banks.{b}", b) for b in self.policy.banks or ()]
        named += [(f"embedding.banks.{b}", b) for b, _ in self.policy.embedding.per_bank]
        missing = sorted(field for field, bank in named if bank not in snapshot.banks)
        if missing:
            raise PolicyError(f"{self.policy.source}: {missing[0]}: no such bank in {self.store.location}")
        return frozenset(b for b, record in snapshot.banks.items() if self.policy.uses(b, record))

    def _check_policy_banks(self, snapshot: Snapshot) -> None:
        used = self.banks_in_use(snapshot)
        # Nothing to compare with would allow everything: a hook pointed at an empty data folder.
        if not self.policy.detectors and not any(snapshot.banks[b].get("kind") != "allowlist" for b in used):
            raise StoreError(f"{self.data_dir}: nothing to check against: no enabled bank in {self.store.location} and no "
                             f"detector in the policy (point --data-dir / MODERATE_HOME or --chroma-url at your banks)")
        # Refused before any input is read: matching only the other signals would quietly miss what
        # the bank's embeddings were added to find.
        embedded = sorted(b for b, r in snapshot.banks.items() if self.policy.uses(b, r) and r.get("embedding_key"))
        if embedded and self.policy.embedding.enabled:
            require_extra("embeddings", f"{self.policy.source}: embedding: bank {embedded[0]} holds embeddings "
                                        f"(embedding.enabled: false skips them)", PolicyError)

    def _judge(self, snapshot: Snapshot, name: str, media: Media, frame: Frame, provenance: Provenance,
               content: digests.Content, trace: list[FrameTrace] | None = None) -> tuple[FrameSignals, list[Reason]]:
        """One frame through regions, every signal of the registry, verification and the policy."""
        policy = self.policy
        reasons = []
        if provenance.state == "verified" and policy.provenance.allow_verified_originals:
            reasons.append(Reason(VERIFIED_ORIGINAL, "allow", signer=provenance.signer,
                                  detail=f"verified original signed by {provenance.signer}; the policy allows verified originals"))
        found = {detector: load_detector(detector).detect(frame.pixels)
                 for detector in dict.fromkeys(r.detector for r in policy.detectors)}
        regions = regions_for(frame, policy.regions)
        if policy.regions.mode == "objects":  # what detectors box is matched against the banks too
            regions += [_detected(d, frame) for detector, items in found.items() if detector != "ocr" for d in items if d.box]
        query = Query(frame, regions, media=media)
        context = Context(snapshot, self.store, frozenset(b for b, record in snapshot.banks.items() if policy.uses(b, record)))
        running = [(signal, policy.rules_for(name)) for name, signal in SIGNALS.items() if policy.rules_for(name).enabled]
        matches = []
        for signal, rules in running:
            matches += signal.find(query, context, rules)
            reasons += signal.observations(query, rules)
        for signal, rules in running:
            matches = signal.verify(matches, query, context, rules)
        query.computed["evidence"] = tuple(matches)
        hashed = query.computed.get(PDQ.name, [(regions[0], ())])
        signals = FrameSignals(name, frame.index, hashed[0][0], hashed[0][1], frame.page)
        reasons += policy.reasons_for(matches, snapshot.banks)
        reasons += [
            Reason(rule.name, rule.action, Evidence(rule.detector, "score", d.score, region=_detected(d, frame) if d.box else None,
                                                    label=d.label), f"{rule.detector} found {what!r} (score {d.score:.2f})")
            for rule in policy.detectors for d in found[rule.detector] for what in [rule.finds(d)] if what
        ]
        originals = [m for m in matches if snapshot.banks[m.bank].get("kind") == "originals"]
        reasons += self._originals(originals, provenance, content)
        reasons = self._allowlisted(matches, reasons, snapshot)
        reasons.sort(key=lambda r: (r.rule != ALLOWLISTED, -severity(r.action)))
        if trace is not None:
            trace.append(FrameTrace(query, context, tuple(reasons)))
        return signals, reasons

    def _allowlisted(self, matches: list[Evidence], reasons: list[Reason], snapshot: Snapshot) -> list[Reason]:
        """`reasons` with the false positives moderators recorded turned into allow reasons.

        An allow-list entry is a picture a moderator rejected as a false positive of certain
        references (`suppresses` in its metadata). A reason is suppressed only when it names one of
        those references and the input is strictly closer to the entry than to that reference
        (ties go to the flagged side); other evidence in the same input is never suppressed.
        Entries recorded without their references suppress only PDQ evidence for the same region.
        """
        known = [m for m in matches if snapshot.banks[m.bank].get("kind") == "allowlist"
                 and self.policy.band_rank(m) == 0]
        if not known:
            return reasons
        entries = self.banks.lookup(m.reference for m in known)
        out = []
        for reason in reasons:
            entry = min((m for m in known if reason.action != "allow" and reason.evidence is not None
                         and _suppresses(entries.get(m.reference), m, reason.evidence, self.policy)),
                        key=lambda m: m.strength, default=None)
            if entry is None:
                out.append(reason)
                continue
            out.append(Reason(ALLOWLISTED, "allow", entry, detail=(
                f"a moderator rejected a near-identical item as a false positive of {reason.bank}/{reason.reference_id} "
                f"({entry.reference_id}); it would have been: {reason.rule} -> {reason.action}")))
        return out

    def _originals(self, matches: list[Evidence], provenance: Provenance, content: digests.Content) -> list[Reason]:
        """A match with a registered signed original: the original itself, or a modified copy of it."""
        best: dict[tuple[str, str], Evidence] = {}
        for m in matches:
            key = (m.bank, m.reference_id)
            if self.policy.band_for(m) and (key not in best or m.strength < best[key].strength):
                best[key] = m
        references = self.banks.lookup(best) if best else {}
        reasons = []
        for key, m in sorted(best.items(), key=lambda item: item[1].strength):
            reference = references.get(key)
            if reference is None or "signed_digest" not in reference.metadata:
                continue
            signer = reference.metadata.get("signer")
            try:
                same = content.digest(reference.metadata["digest_type"]).hex == reference.metadata["signed_digest"]
            except (MediaError, ValueError):
                same = False
            if same and provenance.state == "verified":  # allowed only as far as `verify` vouches
                rule, action, detail = "provenance.original", "allow", f"the registered original signed by {signer}"
            elif same:
                rule, action = "provenance.unverified_original", self.policy.provenance.modified_copy
                detail = f"{signer}'s registered original {m.reference_id}, but its signature is {provenance.state} now"
            else:
                rule, action = "provenance.modified_copy", self.policy.provenance.modified_copy
                detail = f"modified copy of {signer}'s original {m.reference_id}"
            reasons.append(Reason(rule, action, m, detail, signer))
        return reasons

    def check_many(self, sources: Iterable[Source], workers: int | None = None) -> Iterator[list[Verdict]]:
        """Check many inputs, yielding each input's frame verdicts as soon as it is done.

        With more than one worker, inputs are checked in worker processes (each loads the index
        once); results come in completion order. Standard input is always read here.
        """
        sources = list(sources)
        workers = max(1, workers or os.cpu_count() or 1)
        local = [s for s in sources if _is_stdin(s) or not isinstance(s, (str, os.PathLike)) or is_url(os.fspath(s))]
        remote = [s for s in sources if s not in local]
        for source in local:
            yield self.check_frames(source)
        if workers == 1 or len(remote) < MIN_BATCH_FOR_WORKERS:
            for source in remote:
                yield self.check_frames(source)
            return
        self.catalog.current()  # publish a current snapshot so that workers load it, not rebuild it
        context = get_context("spawn")  # never fork a process that may hold Chroma's threads
        init = (str(self.data_dir), self.chroma_url, self.policy, self.allow_hosts, self.actor, self.enqueue_reviews,
                self.audit is not None)
        with ProcessPoolExecutor(min(workers, len(remote)), mp_context=context, initializer=_worker_init,
                                 initargs=init) as pool:
            pending = set()
            queue = iter(remote)
            for source in queue:
                pending.add(pool.submit(_worker_check, os.fspath(source)))
                if len(pending) >= workers * 4:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done)


def _suppresses(entry, known: Evidence, flagged: Evidence, policy: Policy) -> bool:
    """Whether allow-list evidence `known` (for reference `entry`) outweighs `flagged` evidence."""
    if entry is None:
        return False
    listed = entry.metadata.get("suppresses")
    if listed is not None:
        if [flagged.bank, flagged.reference_id] not in json.loads(listed):
            return False
    elif flagged.signal != "pdq" or flagged.region != known.region:
        return False  # an entry from before references were recorded: only the same region's hash
    if known.signal == flagged.signal:
        return known.strength < flagged.strength
    return policy.band_rank(known) < policy.band_rank(flagged)


def _detected(detection, frame: Frame) -> Region:
    """A detector's box (working pixels) as a region of the original frame."""
    return Region.at_working(frame, *detection.box, f"detector:{detection.label}")


def _combined(verdicts: list[Verdict]) -> Verdict:
    """One verdict for an input: the most severe frame's, with every frame's reasons."""
    if len(verdicts) == 1:
        return verdicts[0]
    deciding = max(verdicts, key=lambda v: severity(v.verdict))
    return Verdict(**{**deciding.__dict__, "reasons": tuple(r for v in verdicts for r in v.reasons)})


def expand_inputs(inputs: Iterable[str], recursive: bool = False) -> list[Source]:
    """Files named, and every file in folders named, hidden ones too (all levels with `recursive`);
    '-' is stdin. A folder entry that cannot be read or is not a file stays in as an `Unlisted`."""
    out: list[Source] = []
    for given in inputs:
        if given == "-" or is_url(given) or not is_folder(given):  # a path that cannot be looked at is an input error
            out.append(given)
        else:
            problems: list[MediaError] = []
            out.extend(str(path) for path, _ in image_files([given], recursive, hidden=True, problems=problems))
            out.extend(Unlisted(problem) for problem in problems)
    return out


class Unlisted:
    """A folder entry that could not be read as a file: a source whose reading raises its error,
    so it gets the `on_error` verdict in the batch instead of vanishing from it."""

    def __init__(self, error: MediaError):
        self.name, self.error = error.source, error

    def read(self, size: int = -1) -> bytes:
        raise self.error


def overall(verdicts: Iterable[Verdict]) -> str:
    return worst(v.verdict for v in verdicts)


def _is_stdin(source: Source) -> bool:
    return isinstance(source, str) and source == "-"


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


_WORKER: Engine | None = None


def _worker_init(data_dir: str, chroma_url: str | None, policy: Policy, allow_hosts: tuple[str, ...], actor: str,
                 enqueue_reviews: bool, audit: bool) -> None:
    global _WORKER
    _WORKER = Engine(data_dir, chroma_url, policy, allow_hosts, actor, enqueue_reviews, audit)


def _worker_check(source: str) -> list[Verdict]:
    assert _WORKER is not None
    return _WORKER.check_frames(source)
