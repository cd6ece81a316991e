"""The review queue: verdicts that need a human, worked through by moderators.

A `review` verdict becomes a `ReviewItem` with the evidence, the incoming image itself (it is the
platform's own upload; kept under a retention limit and purged after it) and a thumbnail. Items are
ordered by priority: the closer the evidence to a flagged reference, the sooner a human sees it.

Moderators *claim* an item before deciding it; a claim expires (default 15 minutes) so an item is
never lost with a moderator who walked away, and the claim-and-decide updates are single SQL
statements guarded by the item's state, so two moderators can never both decide one item.

Decisions feed back: **confirm** can add the item's signals to a bank (never the image);
**reject** adds them to the allow-list of known false positives, which later checks honour.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from .audit import AuditLog
from .database import Database
from ..errors import MediaError, ModerateError
from ..verdict import Verdict

if TYPE_CHECKING:
    import numpy as np

DECISIONS = ("confirm", "reject")
ALLOWLIST_BANK = "ALLOWLIST"


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS review_items (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,"
    " created_ts REAL NOT NULL, source TEXT NOT NULL, sha256 TEXT, priority INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'open', verdict TEXT NOT NULL, image BLOB, thumbnail BLOB,"
    " claimed_by TEXT, claim_expires REAL, decision TEXT, decided_by TEXT, decided_at TEXT, note TEXT)",
    "CREATE INDEX IF NOT EXISTS review_open ON review_items (status, priority DESC, id)",
)


class QueueError(ModerateError):
    """A queue operation was refused (unknown item, not claimed by you, already decided, ...)."""


class UnknownItem(QueueError):
    """No review item has that id (the HTTP API answers 404)."""


class Conflict(QueueError):
    """The item's state refuses the operation: claimed by someone else, already decided (409)."""


class Purged(NamedTuple):
    purged: int  # items whose image and thumbnail were dropped
    kept: int  # undecided items past the age whose image was kept (a moderator still needs it)


@dataclass(frozen=True)
class ReviewItem:
    id: int
    created_at: str
    source: str
    sha256: str | None
    priority: int
    status: str  # open | claimed | decided (a decision in progress shows as claimed)
    verdict: dict
    claimed_by: str | None
    claim_expires: float | None
    decision: str | None
    decided_by: str | None
    decided_at: str | None
    note: str | None
    has_image: bool

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    @property
    def holder(self) -> str:
        """Who holds the claim and until when, for refusals ("alice until 14:05:09 UTC")."""
        until = datetime.fromtimestamp(self.claim_expires or 0, timezone.utc).strftime("%H:%M:%S UTC")
        return f"{self.claimed_by} until {until}"


@dataclass(frozen=True)
class Group:
    """Open items of one input (same SHA-256): the first by priority stands for the others."""

    item: ReviewItem
    count: int
    ids: tuple[int, ...]


KEYPOINT_PRIORITY = 256 - 31  # a verified local-feature match ranks like a PDQ match at Meta's threshold


def priority_of(verdict: Verdict) -> int:
    """Block-adjacent evidence first: 256 minus the closest distance; errors and no evidence last."""
    scores = [256 - int(r.distance) for r in verdict.reasons if r.distance is not None]
    scores += [KEYPOINT_PRIORITY for r in verdict.reasons if r.distance is None and r.inliers is not None]
    return max(scores, default=0)


def why_first(verdict: dict) -> str:
    """The reason behind an item's priority, in words (from its stored verdict JSON)."""
    reasons = verdict.get("reasons") or []
    closest = min((r for r in reasons if r.get("distance") is not None), key=lambda r: r["distance"], default=None)
    if closest is not None:
        return (f"PDQ distance {int(closest['distance'])} of 256 bits to {closest.get('bank')}/"
                f"{closest.get('reference_id')}: priority 256 - {int(closest['distance'])}; closer evidence is seen first")
    if any(r.get("inliers") is not None for r in reasons):
        return f"a verified local-feature match: ranks like a PDQ distance of {256 - KEYPOINT_PRIORITY}"
    if verdict.get("error_code"):
        return f"the input did not decode ({verdict['error_code']}): no evidence, so it waits behind matches"
    return "no distance-scored evidence: it waits behind matches"


class ReviewQueue:
    def __init__(self, data_dir: Path, banks=None, audit: AuditLog | None = None,
                 claim_seconds: int = 900, retention_days: int = 30,
                 opinions: Callable[[list, str], list[dict]] | None = None):
        self.data_dir = Path(data_dir)
        self.banks = banks
        # (verdict reasons, decision) -> outcomes: tells the exchanges behind the evidence (`Exchanges.report_decision`)
        self.opinions = opinions
        self.audit = audit or AuditLog(self.data_dir)
        self.claim_seconds = claim_seconds
        self.retention_days = retention_days
        self._database = Database(self.data_dir, SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        return self._database.db

    # -- filling ------------------------------------------------------------------------------------

    def enqueue(self, verdict: Verdict, image: bytes | None, pixels: np.ndarray | None = None) -> int:
        """Queue a review verdict with its input's bytes and its first frame's decoded pixels, from
        which the thumbnail is made (None for an input that does not decode: no thumbnail)."""
        if verdict.verdict != "review":
            raise QueueError(f"{verdict.source}: only review verdicts are queued, this one is {verdict.verdict}")
        cursor = self.db.execute(
            "INSERT INTO review_items (created_at, created_ts, source, sha256, priority, verdict, image, thumbnail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (_now(), time.time(), verdict.source, verdict.sha256, priority_of(verdict), verdict.to_json(),
             image, _thumbnail(pixels)),
        )
        return int(cursor.lastrowid)

    # -- working ------------------------------------------------------------------------------------

    def list(self, status: str | None = "open", limit: int = 50) -> list[ReviewItem]:
        now = time.time()
        if status == "open":  # an expired claim is open again
            where, args = "status = 'open' OR (status IN ('claimed', 'deciding') AND claim_expires < ?)", (now,)
        elif status:
            where, args = "status = ?", (status,)
        else:
            where, args = "1", ()
        rows = self.db.execute(
            f"SELECT * FROM review_items WHERE {where} ORDER BY priority DESC, id LIMIT ?", (*args, limit)
        ).fetchall()
        return [self._item(row) for row in rows]

    def get(self, item_id: int) -> ReviewItem:
        row = self.db.execute("SELECT * FROM review_items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise UnknownItem(f"no review item {item_id}")
        return self._item(row)

    def image(self, item_id: int, thumbnail: bool = False) -> bytes | None:
        column = "thumbnail" if thumbnail else "image"
        row = self.db.execute(f"SELECT {column} FROM review_items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise UnknownItem(f"no review item {item_id}")
        return row[0]

    def claim(self, moderator: str, item_id: int | None = None) -> ReviewItem:
        """Claim an item (or the next by priority) for `claim_seconds`; refuses one claimed by someone else."""
        now = time.time()
        claimable = ("(status = 'open' OR (status = 'claimed' AND (claim_expires < ? OR claimed_by = ?))"
                     " OR (status = 'deciding' AND claim_expires < ?))")
        if item_id is None:
            row = self.db.execute(
                f"UPDATE review_items SET status = 'claimed', claimed_by = ?, claim_expires = ?"
                f" WHERE id = (SELECT id FROM review_items WHERE {claimable} ORDER BY priority DESC, id LIMIT 1)"
                f" RETURNING id", (moderator, now + self.claim_seconds, now, moderator, now)).fetchone()
            if row is None:
                raise QueueError("the queue is empty")
            return self.get(row[0])
        row = self.db.execute(
            f"UPDATE review_items SET status = 'claimed', claimed_by = ?, claim_expires = ?"
            f" WHERE id = ? AND {claimable} RETURNING id", (moderator, now + self.claim_seconds, item_id, now, moderator, now)
        ).fetchone()
        if row is None:
            item = self.get(item_id)
            who = f" by {item.decided_by}" if item.status == "decided" else f" by {item.holder}"
            raise Conflict(f"review item {item_id} is already {item.status}{who}")
        return self.get(item_id)

    def release(self, moderator: str, item_id: int) -> ReviewItem:
        """Give a claim back: the item is open for anyone again."""
        row = self.db.execute(
            "UPDATE review_items SET status = 'open', claimed_by = NULL, claim_expires = NULL"
            " WHERE id = ? AND status = 'claimed' AND claimed_by = ? RETURNING id", (item_id, moderator)).fetchone()
        if row is None:
            item = self.get(item_id)
            raise Conflict(f"review item {item_id} is not claimed by {moderator}"
                           + (f": {item.holder} holds it" if item.status == "claimed" else f" (it is {item.status})"))
        return self.get(item_id)

    def next_for(self, moderator: str, skip: set[int] | frozenset = frozenset()) -> ReviewItem | None:
        """The item `moderator` should look at next, without claiming it: their own claims and open
        items by priority, except those skipped."""
        now = time.time()
        marks = ",".join("?" * len(skip))
        skipped = f" AND id NOT IN ({marks})" if skip else ""
        row = self.db.execute(
            "SELECT * FROM review_items WHERE (status = 'open' OR (status IN ('claimed', 'deciding')"
            f" AND (claim_expires < ? OR (claimed_by = ? AND status = 'claimed')))){skipped}"
            " ORDER BY priority DESC, id LIMIT 1", (now, moderator, *sorted(skip))).fetchone()
        return self._item(row) if row is not None else None

    def copies(self, item: ReviewItem) -> int:
        """Undecided items of the same input as `item` (itself included)."""
        if not item.sha256:
            return 1
        return self.db.execute("SELECT COUNT(*) FROM review_items WHERE sha256 = ? AND (status != 'decided' OR id = ?)",
                               (item.sha256, item.id)).fetchone()[0]

    def groups(self, limit: int = 200) -> list[Group]:
        """Waiting items (open or claimed) grouped by input digest, by priority: the same upload
        enqueued twice is one row with a count."""
        rows = self.db.execute("SELECT * FROM review_items WHERE status != 'decided' ORDER BY priority DESC, id"
                               " LIMIT ?", (limit * 20,)).fetchall()
        grouped: dict[str, list[ReviewItem]] = {}
        for item in map(self._item, rows):
            grouped.setdefault(item.sha256 or f"item-{item.id}", []).append(item)
        return [Group(items[0], len(items), tuple(i.id for i in items)) for items in grouped.values()][:limit]

    def decide(self, item_id: int, moderator: str, decision: str, note: str | None = None,
               bank: str | None = None) -> ReviewItem:
        """Decide a claimed item, then feed the decision back into the banks."""
        if decision not in DECISIONS:
            raise QueueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        if bank and decision != "confirm":
            raise QueueError("--bank goes with --confirm (a rejection goes to the allow-list)")
        # Take the item into 'deciding' in one guarded update, so the feedback below runs once.
        row = self.db.execute(
            "UPDATE review_items SET status = 'deciding' WHERE id = ? AND status = 'claimed' AND claimed_by = ?"
            " AND claim_expires >= ? RETURNING id", (item_id, moderator, time.time())).fetchone()
        if row is None:
            item = self.get(item_id)
            if item.status == "decided":
                raise Conflict(f"review item {item_id} was already decided ({item.decision} by {item.decided_by})")
            if item.status == "claimed":
                raise Conflict(f"review item {item_id} is not claimed by {moderator}: {item.holder} holds it")
            raise Conflict(f"review item {item_id} is not claimed by {moderator} (claim it first; claims expire)")
        item = self.get(item_id)
        try:
            self._feed_back(item, decision, bank, moderator, note)
        except BaseException:
            self.db.execute("UPDATE review_items SET status = 'claimed' WHERE id = ? AND status = 'deciding'", (item_id,))
            raise  # the item stays claimed: the decision can be retried
        self.db.execute(
            "UPDATE review_items SET status = 'decided', decision = ?, decided_by = ?, decided_at = ?, note = ?"
            " WHERE id = ? AND status = 'deciding'", (decision, moderator, _now(), note, item_id))
        self.audit.append(moderator, "decision", item.sha256, decision,
                          {"item": item_id, "source": item.source, "bank": bank, "note": note})
        # after the decision is committed: an exchange that is slow or down never undoes it
        for outcome in self.opinions(item.verdict.get("reasons", []), decision) if self.opinions else ():
            self.audit.append(moderator, "exchange opinion", item.sha256, decision, {"item": item_id, **outcome})
        return self.get(item_id)

    def _feed_back(self, item: ReviewItem, decision: str, bank: str | None, moderator: str, note: str | None) -> None:
        if self.banks is None or (decision == "confirm" and not bank):
            return
        image = self.image(item.id)
        if image is None:
            raise QueueError(f"review item {item.id}: the image was purged, its signals cannot be added to a bank")
        target = bank if decision == "confirm" else self.banks.allowlist()
        metadata = {"note": note, "added_by": moderator, "review_item": item.id, "source_url": None}
        if decision == "reject":  # what it is a false positive of: the allow-list suppresses only that
            flagged = {(r["bank"], r["reference_id"]) for r in item.verdict.get("reasons", [])
                       if r.get("bank") and r.get("action") != "allow"}
            metadata["suppresses"] = json.dumps(sorted(flagged))
        try:
            self.banks.add_bytes(target, image, f"review-{item.id}", metadata)
        except MediaError as exc:
            if decision == "confirm":
                raise QueueError(f"review item {item.id}: {exc.detail}, so it has no signals to add to bank {bank}; "
                                 "confirm it without --bank") from None
            # A rejected input that does not decode has no signals for the allow-list; the decision
            # stands, and the same input gets the on_error verdict again (fail closed).

    def stats(self) -> dict:
        now = time.time()
        counts = dict(self.db.execute(
            "SELECT CASE WHEN status IN ('claimed', 'deciding') AND claim_expires < ? THEN 'open'"
            " WHEN status = 'deciding' THEN 'claimed' ELSE status END AS s, COUNT(*)"
            " FROM review_items GROUP BY s", (now,)).fetchall())
        oldest = self.db.execute("SELECT MIN(created_ts) FROM review_items WHERE status != 'decided'").fetchone()[0]
        decisions = dict(self.db.execute(
            "SELECT decision, COUNT(*) FROM review_items WHERE status = 'decided' GROUP BY decision").fetchall())
        return {"open": counts.get("open", 0), "claimed": counts.get("claimed", 0), "decided": counts.get("decided", 0),
                "confirmed": decisions.get("confirm", 0), "rejected": decisions.get("reject", 0),
                "oldest_waiting_seconds": round(now - oldest) if oldest else None}

    def purge(self, older_than_days: int | None = None, include_open: bool = False) -> Purged:
        """Drop images and thumbnails past the retention limit (evidence and decisions stay). Items
        not decided yet keep theirs unless `include_open`: a moderator cannot decide without it."""
        days = self.retention_days if older_than_days is None else older_than_days
        old = "created_ts < ? AND image IS NOT NULL"
        cutoff = time.time() - days * 86400
        undecided = 0 if include_open else self.db.execute(
            f"SELECT COUNT(*) FROM review_items WHERE {old} AND status != 'decided'", (cutoff,)).fetchone()[0]
        which = "" if include_open else " AND status = 'decided'"
        cursor = self.db.execute(f"UPDATE review_items SET image = NULL, thumbnail = NULL WHERE {old}{which}", (cutoff,))
        return Purged(cursor.rowcount, undecided)

    @staticmethod
    def _item(row) -> ReviewItem:
        return ReviewItem(
            id=row["id"], created_at=row["created_at"], source=row["source"], sha256=row["sha256"],
            priority=row["priority"],
            status=_status(row["status"], row["claim_expires"]),
            verdict=json.loads(row["verdict"]), claimed_by=row["claimed_by"], claim_expires=row["claim_expires"],
            decision=row["decision"], decided_by=row["decided_by"], decided_at=row["decided_at"], note=row["note"],
            has_image=row["image"] is not None,
        )


def _status(stored: str, claim_expires: float | None) -> str:
    """What a stored state means now: an expired claim is open again; 'deciding' shows as claimed."""
    if stored in ("claimed", "deciding"):
        return "open" if (claim_expires or 0) < time.time() else "claimed"
    return stored


def _thumbnail(pixels: np.ndarray | None) -> bytes | None:
    """A 256 px PNG of the first frame, for the review UI, made from the check's decoded pixels."""
    if pixels is None:
        return None
    from PIL import Image

    from ..media.pixels import fitted_rgb

    out = io.BytesIO()
    Image.fromarray(fitted_rgb(Image.fromarray(pixels), 256)).save(out, "PNG")
    return out.getvalue()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
