"""The review queue and the audit log, in SQLite under the data folder, through the library and CLI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time

import pytest
from PIL import Image

from moderate import Engine
from moderate.sinks.queue import QueueError

from .conftest import run_cli


@pytest.fixture
def reviewing(banked):
    """An engine that queues review verdicts (a tight band turns near copies into reviews)."""
    from moderate import Policy

    policy = Policy.from_mapping({"pdq": {"thresholds": [{"max_distance": 4, "action": "bank"},
                                                         {"max_distance": 52, "action": "review"}]},
                                  "keypoints": {"thresholds": [{"min_inliers": 12, "action": "review"}]}})
    return Engine(banked.data_dir, policy=policy, enqueue_reviews=True)


def near_copy(photos, name, tmp_path, size=(200, 200)):
    path = tmp_path / f"{name}-small.jpg"
    Image.open(photos[name]).convert("RGB").resize(size).save(path, quality=60)
    return path


def test_review_verdicts_are_queued_by_priority_with_image_and_thumbnail(reviewing, photos, tmp_path):
    sources = [near_copy(photos, "rocket", tmp_path, (120, 80)), near_copy(photos, "astronaut", tmp_path)]
    verdicts = [reviewing.check(p) for p in sources]
    assert [v.verdict for v in verdicts] == ["review", "review"]
    assert reviewing.check(photos["chelsea"]).verdict == "allow"
    items = reviewing.queue.list()
    assert len(items) == 2
    distance = {str(p): v.reasons[0].distance for p, v in zip(sources, verdicts)}
    assert distance[items[0].source] <= distance[items[1].source]  # the closer evidence comes first
    assert items[0].priority == 256 - distance[items[0].source]
    first = items[0]
    assert first.has_image and reviewing.queue.image(first.id) == open(first.source, "rb").read()
    assert reviewing.queue.image(first.id, thumbnail=True).startswith(b"\x89PNG")
    assert first.verdict["reasons"][0]["bank"] == "TERROR"


def test_claims_expire_and_two_moderators_never_both_decide(reviewing, photos, tmp_path):
    reviewing.check(near_copy(photos, "coffee", tmp_path))
    (item,) = reviewing.queue.list()
    reviewing.queue.claim("alice", item.id)
    with pytest.raises(QueueError, match="already claimed by alice"):
        reviewing.queue.claim("bob", item.id)
    with pytest.raises(QueueError, match="not claimed by bob"):
        reviewing.queue.decide(item.id, "bob", "reject")
    reviewing.queue.claim_seconds = 0
    reviewing.queue.claim("alice", item.id)  # re-claim with a claim that expires at once
    time.sleep(0.05)
    assert reviewing.queue.list()[0].id == item.id  # expired: open again
    reviewing.queue.claim_seconds = 900
    reviewing.queue.claim("bob", item.id)

    results = []

    def decide(who):
        try:
            reviewing.queue.decide(item.id, who, "reject")  # with feedback: it must run once
            results.append(who)
        except QueueError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=decide, args=("bob",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("bob") == 1 and len(results) == 4
    assert reviewing.queue.stats()["rejected"] == 1
    assert reviewing.banks.get("ALLOWLIST").references == 1
    decisions = [e for e in reviewing.audit.entries() if e.kind == "decision"]
    assert len(decisions) == 1


def test_decisions_feed_banks_and_the_allow_list(reviewing, photos, tmp_path):
    reviewing.banks.create("CONFIRMED", action="block")
    reviewing.check(near_copy(photos, "rocket", tmp_path))
    reviewing.check(near_copy(photos, "motorcycle", tmp_path))
    rocket, motorcycle = sorted(reviewing.queue.list(), key=lambda i: i.source.find("rocket"), reverse=True)

    reviewing.queue.claim("alice", rocket.id)
    reviewing.queue.decide(rocket.id, "alice", "confirm", note="yes", bank="CONFIRMED")
    refs = {r.id: r for r in reviewing.banks.references("CONFIRMED")}
    assert refs[f"review-{rocket.id}"].metadata["added_by"] == "alice"

    reviewing.queue.claim("alice", motorcycle.id)
    reviewing.queue.decide(motorcycle.id, "alice", "reject", note="not the flagged photo")
    again = reviewing.check(motorcycle.source)
    assert again.verdict == "allow"
    assert again.reasons[0].rule == "allowlist.known_false_positive" and "rejected" in again.reasons[0].detail
    assert reviewing.check(photos["motorcycle"]).verdict == "block"  # the exact flagged photo still blocks


def test_purge_drops_images_but_keeps_decisions(reviewing, photos, tmp_path):
    reviewing.check(near_copy(photos, "coffee", tmp_path))
    (item,) = reviewing.queue.list()
    assert reviewing.queue.purge(older_than_days=1) == (0, 0)
    assert reviewing.queue.purge(older_than_days=0) == (0, 1)  # undecided: its image is kept
    assert reviewing.queue.image(item.id) is not None
    assert reviewing.queue.purge(older_than_days=0, include_open=True) == (1, 0)
    assert reviewing.queue.image(item.id) is None and reviewing.queue.get(item.id).verdict["verdict"] == "review"


def test_purge_from_the_command_line_keeps_undecided_items_and_says_so(reviewing, photos, tmp_path):
    reviewing.check(near_copy(photos, "coffee", tmp_path))
    reviewing.check(near_copy(photos, "rocket", tmp_path))
    decided, waiting = reviewing.queue.list()
    reviewing.queue.claim("m", decided.id)
    reviewing.queue.decide(decided.id, "m", "reject")
    out = run_cli("queue", "purge", "--older-than-days", "0", data_dir=reviewing.data_dir)
    assert out.returncode == 0 and out.stdout.decode().startswith("purged images of 1 items; kept the images of 1 undecided")
    assert reviewing.queue.image(decided.id) is None and reviewing.queue.image(waiting.id) is not None
    everything = run_cli("queue", "purge", "--older-than-days", "0", "--include-open", data_dir=reviewing.data_dir)
    assert everything.stdout == b"purged images of 1 items\n" and reviewing.queue.image(waiting.id) is None


def test_inputs_that_do_not_decode_are_kept_for_review_and_can_be_decided(reviewing, photos, tmp_path):
    crafted = photos["coins"].read_bytes()[:300]  # a PNG cut short
    verdict = reviewing.check(crafted, name="upload.png")
    digest = hashlib.sha256(crafted).hexdigest()
    assert (verdict.verdict, verdict.error_code, verdict.sha256) == ("review", "truncated", digest)
    (item,) = reviewing.queue.list()
    assert (item.sha256, item.has_image) == (digest, True) and reviewing.queue.image(item.id) == crafted
    assert [e.input_sha256 for e in reviewing.audit.entries()][-1] == digest
    reviewing.queue.claim("m", item.id)
    reviewing.banks.create("CONFIRMED", action="block")
    with pytest.raises(QueueError, match="no signals to add to bank CONFIRMED; confirm it without --bank"):
        reviewing.queue.decide(item.id, "m", "confirm", bank="CONFIRMED")
    rejected = reviewing.queue.decide(item.id, "m", "reject", note="a broken upload")
    assert (rejected.status, rejected.decision) == ("decided", "reject")
    assert reviewing.check(crafted).verdict == "review"  # nothing was allow-listed: still fails closed


def test_an_undecodable_item_is_confirmed_through_the_command_line(reviewing, tmp_path):
    path = tmp_path / "crafted.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    out = run_cli("check", str(path), "--enqueue", "--json", data_dir=reviewing.data_dir)
    assert out.returncode == 3 and json.loads(out.stdout)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    (item,) = reviewing.queue.list()
    assert run_cli("queue", "claim", str(item.id), "--moderator", "m", data_dir=reviewing.data_dir).returncode == 0
    decided = run_cli("queue", "decide", str(item.id), "--confirm", "--moderator", "m", data_dir=reviewing.data_dir)
    assert decided.returncode == 0 and b"decided" in decided.stdout


def test_audit_chain_records_verdicts_and_decisions_and_detects_edits(reviewing, photos, tmp_path):
    reviewing.check(photos["chelsea"])
    reviewing.check(near_copy(photos, "coffee", tmp_path))
    (item,) = reviewing.queue.list()
    reviewing.queue.claim("carol", item.id)
    reviewing.queue.decide(item.id, "carol", "reject")
    entries = list(reviewing.audit.entries())
    assert [e.kind for e in entries[-3:]] == ["verdict", "verdict", "decision"]
    assert entries[-1].actor == "carol" and entries[-3].verdict == "allow"
    assert all(e.input_sha256 and len(e.input_sha256) == 64 for e in entries[-3:])
    assert reviewing.audit.verify() == (len(entries), None)
    db = sqlite3.connect(reviewing.data_dir / "moderate.sqlite3")
    db.execute("UPDATE audit SET verdict = 'allow' WHERE seq = ?", (entries[-2].seq,))
    db.commit()
    seq, problem = reviewing.audit.verify()
    assert seq == entries[-2].seq and "changed" in problem
    out = run_cli("audit", "verify", data_dir=reviewing.data_dir)
    assert out.returncode == 1 and f"entry {seq}" in out.stderr.decode()


def test_queue_cli_round_trip(banked, photos, tmp_path):
    policy = tmp_path / "tight.yaml"
    policy.write_text("pdq:\n  thresholds:\n    - {max_distance: 4, action: bank}\n    - {max_distance: 52, action: review}\n"
                      "keypoints:\n  thresholds:\n    - {min_inliers: 12, action: review}\n")
    path = near_copy(photos, "astronaut", tmp_path)
    out = run_cli("check", str(path), "--policy", str(policy), "--enqueue", data_dir=banked.data_dir)
    assert out.returncode == 3
    (item,) = [json.loads(line) for line in run_cli("queue", "list", "--json", data_dir=banked.data_dir).stdout.splitlines()]
    assert run_cli("queue", "decide", str(item["id"]), "--confirm", "--moderator", "m", data_dir=banked.data_dir).returncode == 1
    assert run_cli("queue", "claim", "--moderator", "m", data_dir=banked.data_dir).returncode == 0
    decided = run_cli("queue", "decide", str(item["id"]), "--reject", "--note", "fp", "--moderator", "m",
                      data_dir=banked.data_dir)
    assert decided.returncode == 0, decided.stderr
    stats = json.loads(run_cli("queue", "stats", data_dir=banked.data_dir).stdout)
    assert (stats["open"], stats["rejected"]) == (0, 1)
    tail = [json.loads(line) for line in run_cli("audit", "tail", "-n", "2", data_dir=banked.data_dir).stdout.splitlines()]
    assert tail[-1]["kind"] == "decision" and tail[-1]["actor"] == "m"
    assert run_cli("audit", "verify", data_dir=banked.data_dir).returncode == 0


def test_viewing_does_not_claim_skips_release_and_duplicates_group(reviewing, photos, tmp_path):
    first = near_copy(photos, "rocket", tmp_path, (120, 80))
    reviewing.check(first)
    reviewing.check(first)  # the same upload twice
    reviewing.check(near_copy(photos, "astronaut", tmp_path))
    queue = reviewing.queue
    groups = queue.groups()
    assert sorted(g.count for g in groups) == [1, 2] and sum(len(g.ids) for g in groups) == 3
    assert [queue.copies(g.item) for g in sorted(groups, key=lambda g: g.count)] == [1, 2]
    top = queue.next_for("alice")
    assert top.status == "open" and queue.get(top.id).claimed_by is None  # looking is not claiming
    assert queue.next_for("alice", {top.id}).id != top.id  # a skip moves past it
    queue.claim("alice", top.id)
    assert queue.next_for("alice").id == top.id and queue.next_for("bob").id != top.id
    with pytest.raises(QueueError, match=r"not claimed by bob: alice until \d\d:\d\d:\d\d UTC holds it"):
        queue.decide(top.id, "bob", "reject")
    with pytest.raises(QueueError, match="alice until"):
        queue.release("bob", top.id)
    assert queue.release("alice", top.id).status == "open"
    with pytest.raises(QueueError, match="it is open"):
        queue.release("alice", top.id)
    out = run_cli("queue", "claim", str(top.id), "--moderator", "carol", data_dir=reviewing.data_dir)
    assert out.returncode == 0
    refused = run_cli("queue", "decide", str(top.id), "--reject", "--moderator", "dave", data_dir=reviewing.data_dir)
    assert refused.returncode == 1 and b"carol until" in refused.stderr and b"UTC" in refused.stderr


def test_why_an_item_is_first_in_words(reviewing, photos, tmp_path):
    from moderate.sinks.queue import why_first

    reviewing.check(near_copy(photos, "rocket", tmp_path))
    (item,) = reviewing.queue.list()
    distance = int(item.verdict["reasons"][0]["distance"])
    assert why_first(item.verdict).startswith(f"PDQ distance {distance} of 256 bits to TERROR/rocket: priority 256 - {distance}")
    assert "did not decode (truncated)" in why_first({"reasons": [{"rule": "on_error"}], "error_code": "truncated"})


def test_processes_opening_a_new_database_at_once_all_open_it(tmp_path):
    """`check --workers` starts processes that each open the data folder's new database at once (the
    audit log). Switching it to WAL takes a lock SQLite does not wait for: about one opening in
    twenty failed with "database is locked", and the whole batch with it."""
    import multiprocessing

    from .dbrace import open_and_write

    context = multiprocessing.get_context("spawn")
    failed = []
    for trial in range(25):
        start, results = context.Barrier(8), context.Queue()
        processes = [context.Process(target=open_and_write, args=(str(tmp_path / str(trial)), start, results))
                     for _ in range(8)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join()
        failed += [outcome for outcome in outcomes if outcome != "ok"]
    assert failed == []
