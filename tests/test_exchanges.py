"""Exchanges: python-threatexchange's local-file and sample exchanges (and subclasses of the
local-file one defined here) fetched into banks, through the CLI and the library. Nothing here
reaches a network."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("threatexchange")

from threatexchange.exchanges import fetch_state as state  # noqa: E402
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI  # noqa: E402

from moderate import Engine  # noqa: E402
from moderate.exchanges import TYPES  # noqa: E402

from .conftest import run_cli  # noqa: E402

URL = "url https://example.com/flagged"  # a signal type pytx knows and banks do not take


@pytest.fixture(scope="module")
def pdq_of(photos, tmp_path_factory) -> dict[str, str]:
    engine = Engine(tmp_path_factory.mktemp("hashing"))
    return {name: engine.hash(photos[name])[0].pdq[0].hex for name in ("astronaut", "coffee", "rocket", "motorcycle", "chelsea")}


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@dataclass
class LinesCheckpoint(state.FetchCheckpointBase):
    line: int = 0  # lines of the file already delivered


class LinesExchange(LocalFileSignalExchangeAPI):
    """A tailing exchange: two lines a batch from where its checkpoint says, `del TYPE HASH` lines
    are deletions (pytx's None updates); raises after its first batch while `fail` is set."""

    fail = False
    starts: t.ClassVar[list] = []

    @staticmethod
    def get_checkpoint_cls():
        return LinesCheckpoint

    def fetch_iter(self, _types, checkpoint):
        lines = Path(self.collab.filename).read_text().splitlines()
        start = checkpoint.line if checkpoint else 0
        type(self).starts.append(start)
        for at in range(start, len(lines), 2):
            updates = {}
            for line in lines[at:at + 2]:
                deleted = line.startswith("del ")
                kind, _, value = line.removeprefix("del ").partition(" ")
                updates[kind, value] = None if deleted else state.FetchedSignalMetadata()
            yield state.FetchDelta(updates, LinesCheckpoint(min(at + 2, len(lines))))
            if type(self).fail:
                raise ConnectionError("connection reset by peer")


class RecordingExchange(LocalFileSignalExchangeAPI):
    """pytx's local file exchange recording every opinion it is given. Like pytx's, it takes
    positive opinions only and appends their hash to its file; pytx 1.2.17's own append opens
    the file in mode "wta", which Python refuses, so this one does the append itself."""

    opinions: t.ClassVar[list] = []

    def report_opinion(self, s_type, signal, opinion):
        type(self).opinions.append((s_type.get_name(), signal, opinion.category.name))
        if opinion.category != state.SignalOpinionCategory.POSITIVE_CLASS:
            raise NotImplementedError
        with Path(self.collab.filename).open("a") as listed:
            listed.write(f"{s_type.get_name()} {signal}\n")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_file_exchange_through_the_cli_incremental_idempotent_and_removals(tmp_path, data_dir, photos, pdq_of):
    chelsea = f"video_md5 {md5_of(photos['chelsea'])}"  # an exchange's MD5: the file's, an exact copy is found
    listed = write_list(tmp_path / "list.txt", [f"pdq {pdq_of['astronaut']}", f"pdq {pdq_of['coffee']}", chelsea, URL])
    added = run_cli("exchange", "add", "local", "--type", "file", "--path", str(listed), data_dir=data_dir)
    assert added.returncode == 0, added.stderr
    assert added.stdout.decode().strip() == "added exchange local (file) feeding bank exchange.local"

    first = run_cli("exchange", "fetch", "local", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().startswith("local: added 3, replaced 0, removed 0, unchanged 0 in bank exchange.local; "
                                            "skipped 1 of other types (url 1)")
    assert run_cli("check", str(photos["astronaut"]), data_dir=data_dir).returncode == 4  # block, the default action
    assert run_cli("check", str(photos["rocket"]), data_dir=data_dir).returncode == 0
    exact = json.loads(run_cli("check", "--json", str(photos["chelsea"]), data_dir=data_dir).stdout)
    assert [(r["rule"], r["reference_id"], r["variant"]) for r in exact["reasons"]] == [
        ("digest.exact", chelsea.replace(" ", ":"), "md5")]

    again = json.loads(run_cli("exchange", "fetch", "--json", data_dir=data_dir).stdout)
    assert (again["added"], again["unchanged"], again["skipped"]) == (0, 3, {"url": 1})

    write_list(listed, [f"pdq {pdq_of['astronaut']}", f"pdq {pdq_of['coffee']}", chelsea, f"pdq {pdq_of['rocket']}"])
    grown = json.loads(run_cli("exchange", "fetch", "local", "--json", data_dir=data_dir).stdout)
    assert (grown["added"], grown["unchanged"], grown["removed"]) == (1, 3, 0)

    write_list(listed, [f"pdq {pdq_of['astronaut']}", f"pdq {pdq_of['rocket']}"])  # coffee and the MD5 withdrawn
    shrunk = json.loads(run_cli("exchange", "fetch", "local", "--json", data_dir=data_dir).stdout)
    assert (shrunk["added"], shrunk["unchanged"], shrunk["removed"]) == (0, 2, 2)
    assert run_cli("check", str(photos["coffee"]), data_dir=data_dir).returncode == 0
    assert run_cli("check", str(photos["chelsea"]), data_dir=data_dir).returncode == 0
    assert run_cli("check", str(photos["rocket"]), data_dir=data_dir).returncode == 4

    engine = Engine(data_dir)
    assert engine.banks.reference_ids("exchange.local") == sorted([f"pdq:{pdq_of['astronaut']}", f"pdq:{pdq_of['rocket']}"])
    (row,) = json.loads(run_cli("exchange", "list", "--json", data_dir=data_dir).stdout)
    assert (row["name"], row["type"], row["bank"], row["credentials"]) == ("local", "file", "exchange.local", None)
    assert row["fetched_at"] and row["last"]["removed"] == 2 and row["references"] == 2
    assert run_cli("exchange", "list", data_dir=data_dir).stdout.decode().startswith("local  file  -> exchange.local (block, 2 refs)  fetched ")


def test_sample_exchange_fills_its_bank_once(data_dir):
    engine = Engine(data_dir)
    engine.exchanges.add("samples", "sample", bank="SAMPLES", action="review")
    first = engine.exchanges.fetch("samples")
    assert first.error is None and first.added == 18 and first.skipped == {}  # 16 PDQ, 2 video MD5
    bank = engine.banks.get("SAMPLES")
    assert (bank.action, bank.references, bank.hashes) == ("review", 18, 18)
    listed = sorted(pair[0] for ref in engine.banks.references("SAMPLES") for pair in ref.hashes())
    assert listed == ["pdq"] * 16 + ["video_md5"] * 2
    second = engine.exchanges.fetch("samples")
    assert (second.added, second.unchanged, second.removed) == (0, 18, 0)


def test_a_failed_fetch_resumes_from_its_last_committed_batch(tmp_path, data_dir, pdq_of, monkeypatch):
    monkeypatch.setitem(TYPES, "lines", f"{__name__}:LinesExchange")
    monkeypatch.setattr(LinesExchange, "starts", [])
    names = ["astronaut", "coffee", "rocket", "motorcycle", "chelsea"]
    listed = write_list(tmp_path / "feed.txt", [f"pdq {pdq_of[name]}" for name in names])
    engine = Engine(data_dir)
    engine.exchanges.add("feed", "lines", settings={"filename": str(listed)})

    monkeypatch.setattr(LinesExchange, "fail", True)
    broken = engine.exchanges.fetch("feed")
    assert broken.error == "ConnectionError: connection reset by peer"
    assert (broken.batches, broken.added, broken.checkpoint) == (1, 2, {"line": 2})
    assert engine.exchanges.state("feed")["checkpoint"] == {"line": 2}

    monkeypatch.setattr(LinesExchange, "fail", False)
    resumed = engine.exchanges.fetch("feed")
    assert resumed.error is None and (resumed.added, resumed.unchanged) == (3, 0)
    assert LinesExchange.starts == [0, 2]  # the second fetch asked only for what followed the checkpoint
    bank = engine.banks.get("exchange.feed")
    assert (bank.references, bank.hashes) == (5, 5)

    with listed.open("a") as feed:  # pytx's deletions: an update whose value is None
        feed.write(f"del pdq {pdq_of['coffee']}\n")
    deleted = engine.exchanges.fetch("feed")
    assert (deleted.removed, deleted.added) == (1, 0)
    assert f"pdq:{pdq_of['coffee']}" not in engine.banks.reference_ids("exchange.feed")


def test_credentials_come_from_a_private_file_or_the_environment_and_are_never_stored(tmp_path, data_dir):
    secret = tmp_path / "ncmec.credentials"
    secret.write_text("user:hunter2\n")
    secret.chmod(0o644)
    refused = run_cli("exchange", "add", "ncmec", "--type", "ncmec", "--environment", "Industry",
                      "--credentials-file", str(secret), data_dir=data_dir)
    assert refused.returncode == 1
    assert refused.stderr.decode() == f"error: credentials file {secret}: mode 0644 lets others read it (chmod 600 {secret})\n"

    secret.chmod(0o600)
    engine = Engine(data_dir)
    engine.exchanges.add("ncmec", "ncmec", settings={"environment": "Industry"}, credentials_file=secret)
    engine.exchanges.add("te", "fb_threatexchange", settings={"privacy_group": 1234}, credentials_env="MODERATE_TEST_TE_TOKEN")
    config = (data_dir / "exchanges" / "config.json").read_text()
    assert "hunter2" not in config and str(secret) in config and "MODERATE_TEST_TE_TOKEN" in config
    with pytest.raises(Exception, match="needs --credentials-env VAR or --credentials-file PATH"):
        engine.exchanges.add("te2", "fb_threatexchange", settings={"privacy_group": 1})
    with pytest.raises(Exception, match="type ncmec needs the setting environment"):
        engine.exchanges.add("n2", "ncmec", credentials_env="X")


def test_one_failing_exchange_does_not_stop_the_others(tmp_path, data_dir, pdq_of, monkeypatch):
    monkeypatch.delenv("MODERATE_TEST_TE_TOKEN", raising=False)
    engine = Engine(data_dir)
    gone = write_list(tmp_path / "gone.txt", [f"pdq {pdq_of['rocket']}"])
    engine.exchanges.add("a-gone", "file", settings={"filename": str(gone)})
    engine.exchanges.add("b-good", "file", settings={"filename": str(write_list(tmp_path / "ok.txt", [f"pdq {pdq_of['coffee']}"]))})
    engine.exchanges.add("c-te", "fb_threatexchange", settings={"privacy_group": 1}, credentials_env="MODERATE_TEST_TE_TOKEN")
    gone.unlink()
    out = run_cli("exchange", "fetch", data_dir=data_dir)
    assert out.returncode == 5
    assert out.stderr.decode().splitlines() == [
        f"error: exchange a-gone: AssertionError: No such file {gone}",
        "error: exchange c-te: environment variable MODERATE_TEST_TE_TOKEN (its credentials) is not set",
    ]
    assert "b-good: added 1," in out.stdout.decode()
    assert engine.banks.reference_ids("exchange.b-good") == [f"pdq:{pdq_of['coffee']}"]
    assert "exchange.c-te" not in {bank.name for bank in engine.banks.list()}  # nothing fetched, no bank


def test_review_decisions_report_opinions_to_the_exchange(tmp_path, data_dir, photos, pdq_of, monkeypatch):
    monkeypatch.setitem(TYPES, "recording", f"{__name__}:RecordingExchange")
    monkeypatch.setattr(RecordingExchange, "opinions", [])
    rocket = md5_of(photos["rocket"])
    listed = write_list(tmp_path / "list.txt", [f"pdq {pdq_of['astronaut']}", f"pdq {pdq_of['coffee']}", f"video_md5 {rocket}"])
    engine = Engine(data_dir, enqueue_reviews=True)
    engine.exchanges.add("shared", "recording", action="review", settings={"filename": str(listed)})
    assert engine.exchanges.fetch("shared").added == 3
    for name in ("astronaut", "coffee", "rocket"):
        assert engine.check(photos[name]).verdict == "review"
    items = {item.source: item for item in engine.queue.list()}
    decided = [(items[str(photos[name])], decision) for name, decision in
               (("astronaut", "confirm"), ("coffee", "reject"), ("rocket", "confirm"))]
    for item, decision in decided:
        engine.queue.claim("alice", item.id)
        engine.queue.decide(item.id, "alice", decision)

    assert RecordingExchange.opinions == [("pdq", pdq_of["astronaut"], "POSITIVE_CLASS"),
                                          ("pdq", pdq_of["coffee"], "NEGATIVE_CLASS"),
                                          ("video_md5", rocket, "POSITIVE_CLASS")]
    assert listed.read_text().splitlines()[-2:] == [f"pdq {pdq_of['astronaut']}", f"video_md5 {rocket}"]  # pytx's file exchange appends
    reported = [(e.detail["item"], e.detail["opinion"], e.detail["result"]) for e in engine.audit.entries()
                if e.kind == "exchange opinion"]
    assert reported == [(item.id, opinion, result) for (item, _), opinion, result in
                        zip(decided, ("POSITIVE_CLASS", "NEGATIVE_CLASS", "POSITIVE_CLASS"), ("reported", "unsupported", "reported"))]


def test_the_command_line_imports_threatexchange_only_to_use_an_exchange():
    probe = "import sys, moderate.cli, moderate.engine; print('threatexchange' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout.strip() == "False"
