"""Exchanges: hash lists pulled from industry programs into banks, one bank per exchange.

The exchange side is python-threatexchange's `SignalExchangeAPI`: ThreatExchange, NCMEC,
StopNCII, a local file of `TYPE HASH` lines, and pytx's built-in samples. What is kept where (all
in the data folder, never in Chroma):
- `exchanges/config.json`: the configured exchanges: type, bank, action, the exchange's own
  settings, and where the credentials are (an environment variable's name or a file's path, never
  the secret itself);
- `exchanges/NAME.json`: the exchange's checkpoint (pytx's, as JSON) and its last fetch's counts,
  replaced atomically after each fetched batch is committed to the bank, so a killed fetch loses
  nothing committed and the next one resumes from the last committed batch.

A fetched entry becomes one reference whose id is the exchange's key for it (`pdq:HEX` for
exchanges keyed by the signal itself, the entry's id for NCMEC), so a re-fetch or an update
replaces rather than duplicates. PDQ hashes and file digests (pytx's `video_md5`: an entry's MD5
is its file's, whatever it holds) become the reference's hashes, so an exact copy is found by the
digest signal; other signal types are counted as skipped. An entry deleted upstream (pytx's
`None` update) removes its reference. An exchange whose checkpoint records no position (a file,
the samples) delivers its whole list on every fetch: a reference it no longer lists is removed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ExchangeError, ModerateError
from ..files import replace_file
from ..signals.pytx import VALIDATORS, load

# our type name -> pytx's implementation (module:class); imported only when an exchange is used
TYPES = {
    "file": "threatexchange.exchanges.impl.file_api:LocalFileSignalExchangeAPI",
    "sample": "threatexchange.exchanges.impl.static_sample:StaticSampleSignalExchangeAPI",
    "fb_threatexchange": "threatexchange.exchanges.impl.fb_threatexchange_api:FBThreatExchangeSignalExchangeAPI",
    "ncmec": "threatexchange.exchanges.impl.ncmec_api:NCMECSignalExchangeAPI",
    "stop_ncii": "threatexchange.exchanges.impl.stop_ncii_api:StopNCIISignalExchangeAPI",
}
# pytx signal types asked for, by their names (`SignalType.get_name()`, also what hash lists name)
SIGNAL_TYPES = {"pdq": VALIDATORS["pdq"], "video_md5": VALIDATORS["md5"]}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,54}")  # leaves room for the default bank name's prefix
DECISION_OPINIONS = {"confirm": "POSITIVE_CLASS", "reject": "NEGATIVE_CLASS"}


@dataclass(frozen=True)
class Exchange:
    """One configured exchange. `settings` are the exchange's own collaboration fields (a file's
    `filename`, ThreatExchange's `privacy_group`, NCMEC's `environment`); `credentials` is
    {"env": VARIABLE} or {"file": PATH} or empty."""

    name: str
    type: str
    bank: str
    action: str = "block"
    settings: dict = field(default_factory=dict)
    credentials: dict = field(default_factory=dict)


@dataclass
class FetchReport:
    """What one `fetch` did: references added, replaced (their hashes changed upstream) and
    removed; entries already in the bank unchanged; skipped entries per signal type (neither PDQ
    nor a file digest); batches committed; the checkpoint reached (pytx's fields), and `error` when it stopped early
    (what was committed before stays, the next fetch resumes)."""

    exchange: str
    bank: str
    added: int = 0
    replaced: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: dict = field(default_factory=dict)
    batches: int = 0
    checkpoint: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Exchanges:
    """Configured exchanges of a data folder, fetched into `banks` (`engine.exchanges`)."""

    def __init__(self, data_dir: Path, banks):
        self.dir = Path(data_dir) / "exchanges"
        self.banks = banks

    # -- configuration ---------------------------------------------------------------------------

    def add(self, name: str, type: str, bank: str | None = None, action: str = "block",
            settings: dict | None = None, credentials_env: str | None = None,
            credentials_file: str | os.PathLike | None = None) -> Exchange:
        """Configure an exchange (nothing is fetched). Raises ExchangeError for a bad or taken
        name, an unknown type, missing settings (a file exchange's `filename`) or credentials
        (ThreatExchange, NCMEC and StopNCII need them, the others take none)."""
        if not _NAME.fullmatch(name or ""):
            raise ExchangeError(f"exchange name {name!r}: use 1-55 letters, digits, '_', '-' or '.', starting with a letter or digit")
        if type not in TYPES:
            raise ExchangeError(f"exchange {name}: type must be one of {', '.join(TYPES)}, got {type!r}")
        if credentials_env and credentials_file:
            raise ExchangeError(f"exchange {name}: give credentials from an environment variable or a file, not both")
        credentials = {"env": credentials_env} if credentials_env else {}
        if credentials_file:
            credentials = {"file": str(Path(credentials_file).absolute())}
            _read_secret_file(Path(credentials["file"]))  # refused now rather than at the first fetch
        needs = type in ("fb_threatexchange", "ncmec", "stop_ncii")
        if needs and not credentials:
            raise ExchangeError(f"exchange {name}: type {type} needs --credentials-env VAR or --credentials-file PATH")
        if credentials and not needs:
            raise ExchangeError(f"exchange {name}: type {type} takes no credentials")
        exchange = Exchange(name, type, bank or f"exchange.{name}", action, dict(settings or {}), credentials)
        _collab(exchange)  # missing or unknown settings are refused before anything is written
        config = self._config()
        if name in config:
            raise ExchangeError(f"exchange {name} already exists")
        config[name] = dataclasses.asdict(exchange)
        _write_json(self.dir / "config.json", config)
        return exchange

    def list(self) -> list[Exchange]:
        return [Exchange(**record) for _, record in sorted(self._config().items())]

    def get(self, name: str) -> Exchange:
        record = self._config().get(name)
        if record is None:
            raise ExchangeError(f"no exchange named {name!r} (see `moderate exchange list`)")
        return Exchange(**record)

    def state(self, name: str) -> dict:
        """The last fetch of an exchange: {"checkpoint": pytx's fields or None, "fetched_at": ISO
        time, "last": FetchReport as a dict}; empty before the first fetch."""
        try:
            return json.loads((self.dir / f"{name}.json").read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ExchangeError(f"{self.dir / f'{name}.json'}: exchange state is not valid JSON") from None

    def _config(self) -> dict:
        try:
            return json.loads((self.dir / "config.json").read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ExchangeError(f"{self.dir / 'config.json'}: exchange configuration is not valid JSON") from None

    # -- fetching --------------------------------------------------------------------------------

    def fetch(self, name: str, progress: Callable[[], None] = lambda: None) -> FetchReport:
        """Pull an exchange's updates since its checkpoint into its bank (created on first fetch
        with the exchange's action). `progress` is called after each committed batch. An error of
        the exchange (network, credentials, a missing file) is returned in the report's `error`,
        not raised; configuration errors raise ExchangeError."""
        exchange = self.get(name)
        api_cls = _api_class(exchange.type)
        report = FetchReport(exchange.name, exchange.bank)
        checkpoint = self._checkpoint(exchange, api_cls)
        whole = checkpoint is None  # a fetch from scratch lists everything the exchange still holds
        listed: set[str] = set()
        try:
            api = _connect(exchange, api_cls)
            if exchange.bank not in {bank.name for bank in self.banks.list()}:
                self.banks.create(exchange.bank, exchange.action, f"fetched from exchange {exchange.name} ({exchange.type})")
            held = {ref.id: set(ref.hashes()) for ref in self.banks.references(exchange.bank)
                    if ref.metadata.get("exchange") == exchange.name}
            for delta in api.fetch_iter(_signal_types(), checkpoint):
                listed |= self._commit(exchange, api_cls, delta.updates, held, report)
                report.batches += 1
                report.checkpoint = _fields(delta.checkpoint)
                self._save(exchange, report)
                progress()
        except Exception as exc:  # noqa: BLE001 (an exchange's failure is reported, the others go on)
            report.error = _one_line(exc)
            self._save(exchange, report)
            return report
        if whole:
            gone = sorted(set(held) - listed)
            self.banks.remove_all(exchange.bank, gone)
            for ref_id in gone:
                del held[ref_id]
            report.removed += len(gone)
        self._save(exchange, report)
        return report

    def _checkpoint(self, exchange: Exchange, api_cls):
        """The checkpoint to resume from, or None to fetch from scratch (first fetch, a stale
        checkpoint, or an exchange whose checkpoint holds no position)."""
        checkpoint_cls = api_cls.get_checkpoint_cls()
        saved = self.state(exchange.name).get("checkpoint")
        if saved is None or not dataclasses.fields(checkpoint_cls):
            return None
        import dacite

        try:
            checkpoint = dacite.from_dict(checkpoint_cls, saved, dacite.Config(cast=[tuple, set, frozenset]))
        except (dacite.DaciteError, TypeError) as exc:
            raise ExchangeError(f"exchange {exchange.name}: saved checkpoint unreadable ({exc}); delete {self.dir / f'{exchange.name}.json'} to fetch from scratch") from None
        return None if checkpoint.is_stale() else checkpoint

    def _commit(self, exchange: Exchange, api_cls, updates: dict, held: dict[str, set], report: FetchReport) -> set[str]:
        """Apply one batch of updates to the bank; returns the reference ids the batch lists."""
        collab = _collab(exchange)
        signal_types = _signal_types()
        removals, rows, listed = [], [], set()
        for key, value in updates.items():
            ref_id = reference_id(key)
            hashes: list[tuple[str, str]] = []
            if value is not None:
                converted = api_cls.naive_convert_to_signal_type(signal_types, collab, {key: value})
                for signal_type, signals in converted.items():
                    name = signal_type.get_name()
                    if name in SIGNAL_TYPES:
                        hashes += sorted((name, signal) for signal in signals)
                    else:
                        report.skipped[name] = report.skipped.get(name, 0) + 1
                if not converted:  # a signal type pytx does not know, or an invalid value
                    kind = key[0] if isinstance(key, tuple) else "unknown"
                    report.skipped[kind] = report.skipped.get(kind, 0) + 1
            if hashes:
                listed.add(ref_id)
            if ref_id in held and set(hashes) == held[ref_id]:
                report.unchanged += 1
                continue
            if ref_id in held:
                removals.append(ref_id)
                report.replaced += bool(hashes)
                report.removed += not hashes
            else:
                report.added += bool(hashes)
            rows.extend((ref_id, *pair) for pair in hashes)
        self.banks.remove_all(exchange.bank, removals)
        for ref_id in removals:
            del held[ref_id]
        if rows:
            self.banks.import_hashes(exchange.bank, _hash_list(rows, exchange.name), source=f"exchange {exchange.name}",
                                     fmt="csv", metadata={"exchange": exchange.name})
            present = set(self.banks.reference_ids(exchange.bank))  # a hash another entry holds is not added twice
            for ref_id, *pair in rows:
                if ref_id in present:
                    held.setdefault(ref_id, set()).add(tuple(pair))
        return listed

    def _save(self, exchange: Exchange, report: FetchReport) -> None:
        state = self.state(exchange.name)
        if report.checkpoint is not None:
            state["checkpoint"] = report.checkpoint
        state["fetched_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        state["last"] = report.to_dict()
        _write_json(self.dir / f"{exchange.name}.json", state)

    # -- opinions --------------------------------------------------------------------------------

    def report_decision(self, reasons: Iterable[dict], decision: str) -> list[dict]:
        """Tell the exchanges behind a reviewed item's evidence what a moderator decided: confirm
        is a positive opinion (seen, and it is what the exchange says), reject a false positive.
        `reasons` are a verdict's reasons (`bank`, `reference_id`). Returns one outcome per
        exchange reference: {"exchange", "reference_id", "signal", "opinion", "result"} where
        result is "reported", "unsupported" (the exchange takes no such opinion) or
        "failed: ..."; never raises for an exchange's failure."""
        by_bank = {exchange.bank: exchange for exchange in self.list()}
        wanted = sorted({(r["bank"], r["reference_id"]) for r in reasons if r.get("bank") in by_bank and r.get("reference_id")})
        if not wanted:
            return []
        from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory

        category = SignalOpinionCategory[DECISION_OPINIONS[decision]]
        references = self.banks.lookup(wanted)
        outcomes = []
        for bank, ref_id in wanted:
            exchange = by_bank[bank]
            reference = references.get((bank, ref_id))
            if reference is None or reference.metadata.get("exchange") != exchange.name:
                continue  # added by hand to the exchange's bank, or removed since
            (signal_type, signal), *_ = reference.hashes() or ((None, None),)
            outcome = {"exchange": exchange.name, "reference_id": ref_id, "signal": signal, "signal_type": signal_type,
                       "opinion": category.name}
            try:
                api = _connect(exchange, _api_class(exchange.type))
                api.report_opinion(load(SIGNAL_TYPES[signal_type]), signal, SignalOpinion(True, category, set()))
                outcome["result"] = "reported"
            except NotImplementedError:
                outcome["result"] = "unsupported"
            except Exception as exc:  # noqa: BLE001 (the decision stands; the outcome says it failed)
                outcome["result"] = f"failed: {_one_line(exc)}"
            outcomes.append(outcome)
        return outcomes


def reference_id(key) -> str:
    """The reference id of an exchange's key: `TYPE:VALUE` for a (signal type, value) key, the
    key itself for an entry id."""
    return ":".join(key) if isinstance(key, tuple) else str(key)


def _hash_list(rows: list[tuple[str, str, str]], collab: str) -> str:
    """(reference id, signal type, hash) rows as a dataset CSV `import_hashes` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["signal_type", "signal_str", "reference_id", "collab"])
    writer.writerows((signal_type, value, ref_id, collab) for ref_id, signal_type, value in rows)
    return out.getvalue()


def _api_class(type: str):
    if type not in TYPES:
        raise ExchangeError(f"exchange type {type!r} is not known (one of {', '.join(TYPES)})")
    return load(TYPES[type])


def _signal_types() -> list:
    return [load(path) for path in SIGNAL_TYPES.values()]


def _collab(exchange: Exchange):
    """pytx's collaboration config of an exchange: its name, the API's name, and the settings."""
    config_cls = _api_class(exchange.type).get_config_cls()
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(exchange.settings) - names)
    if unknown:
        raise ExchangeError(f"exchange {exchange.name}: type {exchange.type} has no setting {unknown[0]!r}")
    values = {"name": exchange.name, "api": _api_class(exchange.type).get_name(), "enabled": True, **exchange.settings}
    if exchange.type == "ncmec" and "environment" in values:
        from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEnvironment

        try:
            values["environment"] = NCMECEnvironment[values["environment"]]
        except KeyError:
            raise ExchangeError(f"exchange {exchange.name}: NCMEC environment must be one of {', '.join(e.name for e in NCMECEnvironment)}, got {values['environment']!r}") from None
    try:
        return config_cls(**{key: value for key, value in values.items() if key in names})
    except TypeError as exc:  # a required setting is missing
        missing = re.findall(r"'(\w+)'", str(exc))
        raise ExchangeError(f"exchange {exchange.name}: type {exchange.type} needs the setting {missing[0] if missing else exc}") from None


def _connect(exchange: Exchange, api_cls):
    """An authenticated API instance. The secret goes straight to pytx: never stored or logged."""
    collab = _collab(exchange)
    if not exchange.credentials:
        return api_cls.for_collab(collab)
    if "env" in exchange.credentials:
        secret = os.environ.get(exchange.credentials["env"], "")
        if not secret:
            raise ExchangeError(f"environment variable {exchange.credentials['env']} (its credentials) is not set")
    else:
        secret = _read_secret_file(Path(exchange.credentials["file"]))
    try:
        credentials = api_cls.get_credential_cls()._from_str(secret)
    except ValueError:
        raise ExchangeError(f"credentials are not in the form {exchange.type} expects") from None
    return api_cls.for_collab(collab, credentials)


def _read_secret_file(path: Path) -> str:
    """A credentials file's text, refused unless only its owner can read it (0600 or 0400)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ExchangeError(f"credentials file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ExchangeError(f"credentials file {path}: not a regular file")
    if mode & 0o077:
        raise ExchangeError(f"credentials file {path}: mode {stat.S_IMODE(mode):04o} lets others read it (chmod 600 {path})")
    return path.read_text().strip()


def _fields(checkpoint) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(checkpoint), default=sorted))  # sets become lists


def _one_line(exc: BaseException) -> str:
    """Our own errors as they are; another library's with its class (`ConnectionError: ...`)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ModerateError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")


def _write_json(path: Path, content: dict) -> None:
    replace_file(path, json.dumps(content, indent=1, sort_keys=True).encode(), make_folder=True)
