"""Chroma, the system of record for banks and references.

Embedded (`chromadb.PersistentClient` in the data folder) by default, or a Chroma server
(`chromadb.HttpClient`) when a URL is given: the scale-out path is Chroma's, not ours.

What lives here:
- `moderate-banks`: one record per bank (action, description, enabled, created_at), plus a state
  record whose `generation` changes with every write, so any process can tell whether the
  indexes it derived are current.
- `moderate-pdq`: one record per PDQ hash of a reference, with the bank and reference id as
  metadata. Record ids are `BANK::REFERENCE_ID::N`, N counting the hashes of that reference.
- `moderate-emb-MODEL-VERSION`: one collection per embedding model (cosine HNSW), one record per
  image of a reference, ids as above; the model's identity (name, version, dimension,
  preprocessing) is the collection's metadata, so vectors of different models never mix.
- one collection per stored signal (`moderate.signals.base.StoredSignal`), named by the signal:
  `moderate-keypoints` (one record per reference image: ORB corners and descriptors as base64 in
  the record's metadata, not its full-text-indexed document), `moderate-digests` (one record per
  exact digest of a reference image).
  Their vectors are placeholders: these records are read, never searched by Chroma; each signal's
  index is derived from them, like the PDQ index.
- `moderate-lists`: hash-list imports, a record per 1,000 rows (`moderate.store.packs`): each row
  becomes a PDQ or digest record of the derived indexes, as if it had a Chroma record of its own.

Never the images. Chroma is only imported when a store is touched: it costs over a second.
We always pass our own vectors (Chroma's default embedding function would download a model) and
turn its telemetry off.
"""

from __future__ import annotations

import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from ..errors import ModerateError, StoreError
from ..extras import require
from ..signals import PDQ
from . import packs as packs_module

BANKS_COLLECTION = "moderate-banks"
# Chroma builds an HNSW graph over every collection's vectors, but only embedding collections are
# searched through it: signal records are read by id and metadata and matched by moderate's exact
# indexes. So theirs is as cheap as Chroma allows (measured: 1.65x the `add` rate of the default,
# 5.5k against 3.3k PDQ records/s with their metadata). A collection keeps the graph it was made with.
STORAGE_ONLY = {"hnsw": {"ef_construction": 8, "max_neighbors": 4}}
EMBEDDING_PREFIX = "moderate-emb-"
STATE_ID = "@state"  # bank names cannot start with "@"
PAGE = 5000  # records per Chroma round trip; under Chroma's max batch size
PACKS_PAGE = 250  # packs per round trip, 250,000 rows: Chroma's cost per call grows with the collection
DEFAULT_TIMEOUT = 30.0  # seconds a Chroma server may take to answer one call (MODERATE_CHROMA_TIMEOUT)


class Store:
    """Typed access to the Chroma collections; every Chroma failure becomes one-line `StoreError`."""

    def __init__(self, data_dir: Path, chroma_url: str | None = None, timeout: float | None = None):
        self.data_dir = Path(data_dir)
        self.chroma_url = chroma_url or None
        self.timeout = timeout or (_timeout_from_env() if self.chroma_url else DEFAULT_TIMEOUT)
        self._client_obj = None
        self._collections: dict[str, object] = {}
        self._seen_stamp: list | None = None  # the database files' stamp after our last call
        # One Chroma call at a time per store: a server's threads share it, and a reconnect (after
        # another process wrote) must not pull the client from under a call in flight.
        self._lock = threading.RLock()

    @property
    def location(self) -> str:
        return self.chroma_url or f"embedded Chroma in {self.chroma_path}"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    # -- connection -----------------------------------------------------------------------

    @contextmanager
    def _calling(self, what: str):
        try:
            yield
            self._seen_stamp = self.stamp()
        except ModerateError:
            raise
        except Exception as exc:  # chromadb raises many types (httpx, ValueError, its own errors)
            text = " ".join(str(exc).split()) or type(exc).__name__
            if self.chroma_url and _timed_out(exc):
                text = f"no answer within {self.timeout:g} s (MODERATE_CHROMA_TIMEOUT)"
            raise StoreError(f"{self.location}: {what} failed: {text[:300]}") from None

    @contextmanager
    def _using(self, collection: str, what: str, metadata: dict | None = None, configuration: dict | None = None):
        """The named collection (created with `metadata` and `configuration` if new), under the
        store's lock, with failures turned into StoreError."""
        with self._lock, self._calling(what):
            yield self._collection(collection, metadata, configuration)

    def reset(self) -> None:
        """Drop the client; the next call connects afresh (after another process wrote, an embedded
        client's cached view of segments can be gone: "Nothing found on disk")."""
        if self._client_obj is not None and not self.chroma_url:
            from chromadb.api.shared_system_client import SharedSystemClient

            # Chroma shares one system per path within a process; drop only ours so the next client
            # opens the files afresh (other clients of the path then share that new system).
            SharedSystemClient._identifier_to_system.pop(self._client_obj._identifier, None)
        self._client_obj = None
        self._collections = {}

    def _client(self):
        if self._client_obj is not None and not self.chroma_url and self.stamp() != self._seen_stamp:
            self.reset()  # another process wrote since our last call: reconnect to see its segments
        if self._client_obj is None:
            require("chroma", f"{self.location}: reading or writing banks")
            with self._calling("connecting"):
                os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
                import chromadb
                from chromadb.config import Settings

                settings = Settings(anonymized_telemetry=False)
                if self.chroma_url:
                    url = urlparse(self.chroma_url if "://" in self.chroma_url else f"http://{self.chroma_url}")
                    if not url.hostname:
                        raise StoreError(f"--chroma-url {self.chroma_url!r}: expected http(s)://HOST:PORT")
                    https = url.scheme == "https"
                    client = _timed_http_client(url.hostname, url.port or (443 if https else 8000), https, settings,
                                                self.timeout)
                    client.heartbeat()
                else:
                    try:
                        self.chroma_path.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise StoreError(f"{self.chroma_path}: cannot create the data folder: {exc.strerror}") from None
                    client = chromadb.PersistentClient(path=str(self.chroma_path), settings=settings)
            self._client_obj = client
        return self._client_obj

    def _collection(self, name: str, metadata: dict | None = None, configuration: dict | None = None):
        client = self._client()
        if name not in self._collections:
            with self._calling(f"opening collection {name}"):
                self._collections[name] = client.get_or_create_collection(
                    name, embedding_function=None, metadata={"created_by": "moderate", **(metadata or {})},
                    configuration=configuration or STORAGE_ONLY,
                )
        return self._collections[name]

    def stamp(self) -> list | None:
        """Size and mtime of the embedded database files: unchanged means no one wrote since.

        Lets a check trust its derived index without importing Chroma at all. None for a server,
        whose writers we cannot see.
        """
        if self.chroma_url:
            return None
        out = []
        for name in ("chroma.sqlite3", "chroma.sqlite3-wal"):
            try:
                st = (self.chroma_path / name).stat()
            except FileNotFoundError:
                continue
            out.append([name, st.st_size, st.st_mtime_ns])
        return out

    # -- banks and state --------------------------------------------------------------------

    def bank_records(self) -> dict[str, dict]:
        with self._using(BANKS_COLLECTION, "listing banks") as col:
            got = col.get(include=["metadatas"])
        return {rid: dict(md or {}) for rid, md in zip(got["ids"], got["metadatas"]) if rid != STATE_ID}

    def put_bank(self, name: str, metadata: dict) -> None:
        with self._using(BANKS_COLLECTION, f"writing bank {name}") as col:
            col.upsert(ids=[name], embeddings=[[1.0]], metadatas=[_clean(metadata)])

    def delete_bank(self, name: str) -> None:
        with self._using(BANKS_COLLECTION, f"deleting bank {name}") as col:
            col.delete(ids=[name])

    def generation(self) -> str:
        with self._using(BANKS_COLLECTION, "reading state") as col:
            got = col.get(ids=[STATE_ID], include=["metadatas"])
        if got["ids"]:
            return str(got["metadatas"][0].get("generation"))
        return "empty"

    def bump(self) -> str:
        """Mark that references or banks changed; derived indexes at another generation are stale."""
        generation = uuid.uuid4().hex
        with self._using(BANKS_COLLECTION, "writing state") as col:
            col.upsert(ids=[STATE_ID], embeddings=[[1.0]], metadatas=[{"generation": generation}])
        return generation

    # -- signal records (see `moderate.signals.base.StoredSignal`) ------------------------------

    def existing_ids(self, ids: list[str], signal=PDQ) -> set[str]:
        """Which of these record ids of a stored signal exist."""
        found: set[str] = set()
        for start in range(0, len(ids), PAGE):
            with self._using(signal.collection, "looking up references") as col:
                found.update(col.get(ids=ids[start : start + PAGE], include=[])["ids"])
        return found

    def add_records(self, signal, records: list[tuple[str, object, dict]]) -> None:
        """Add (record id, value, metadata) records of a signal, in pages; each record also keeps
        the signal's own metadata of its value (`StoredSignal.record_metadata`)."""
        for start in range(0, len(records), signal.page):
            page = records[start : start + signal.page]
            with self._using(signal.collection, f"adding {signal.name} records") as col:
                col.add(ids=[rid for rid, _, _ in page],
                        metadatas=[_clean({**md, **signal.record_metadata(value)}) for _, value, md in page],
                        **signal.encode([value for _, value, _ in page]))

    def records(self, signal, where: dict | None = None, ids: list[str] | None = None,
                values: bool = True) -> Iterator[tuple[str, object, dict]]:
        """Yield (record id, value, metadata) of a signal, optionally filtered by metadata or ids,
        page by page; without `values`, the value is None (metadata only: less to read, except for
        keypoint records, whose corners are metadata)."""
        include = [*(signal.include if values else ()), "metadatas"]
        for got in self._pages(signal.collection, f"reading {signal.name} records", signal.page, ids=ids, where=where,
                               include=include):
            decoded = signal.decode(got) if values else [None] * len(got["ids"])
            for rid, value, md in zip(got["ids"], decoded, got["metadatas"]):
                yield rid, value, dict(md or {})

    def delete_records(self, signal, ids: list[str]) -> None:
        for start in range(0, len(ids), PAGE):
            with self._using(signal.collection, "deleting references") as col:
                col.delete(ids=ids[start : start + PAGE])

    # -- hash-list packs (see `moderate.store.packs`) -------------------------------------------------

    def add_packs(self, packs: list) -> None:
        """Add packs (`Pack`), a Chroma page at a time: a page is committed whole or not at all."""
        for start in range(0, len(packs), PACKS_PAGE):
            page = packs[start : start + PACKS_PAGE]
            with self._using(packs_module.COLLECTION, "adding hash-list packs") as col:
                col.upsert(ids=[p.id for p in page], metadatas=[p.metadata() for p in page], embeddings=[[1.0]] * len(page))

    def packs(self, where: dict | None = None, ids: list[str] | None = None) -> Iterator:
        """Packs (`Pack`) by bank (`where`) or id."""
        if ids is not None and not ids:
            return
        for got in self._pages(packs_module.COLLECTION, "reading hash-list packs", PACKS_PAGE, ids=ids, where=where,
                               include=["metadatas"]):
            yield from (packs_module.Pack.from_record(pid, md) for pid, md in zip(got["ids"], got["metadatas"]))

    def delete_packs(self, ids: list[str]) -> None:
        """Delete packs by id (none: no call)."""
        for start in range(0, len(ids), PAGE):
            with self._using(packs_module.COLLECTION, "deleting hash-list packs") as col:
                col.delete(ids=ids[start : start + PAGE])

    def pdq_records(self, where: dict | None = None, ids: list[str] | None = None) -> Iterator[tuple[str, str, dict]]:
        """(record id, pdq hex, metadata): PDQ records carry their reference's metadata."""
        return self.records(PDQ, where, ids)

    def _pages(self, collection: str, what: str, page: int, **query) -> Iterator[dict]:
        """`get` results of a collection, `page` records at a time (one Chroma call each)."""
        offset = 0
        while True:
            with self._using(collection, what) as col:
                got = col.get(**query, limit=page, offset=offset)
            yield got
            if len(got["ids"]) < page:
                return
            offset += page

    # -- embedding records --------------------------------------------------------------------------

    @contextmanager
    def _embeddings(self, model: dict, what: str):
        """The collection of one embedding model (`ModelIdentity.to_dict()` plus `key`)."""
        identity = {k: v for k, v in model.items() if k != "key"}
        with self._using(f"{EMBEDDING_PREFIX}{model['key']}", what, identity, {"hnsw": {"space": "cosine"}}) as col:
            yield col

    def add_embeddings(self, model: dict, records: list[tuple[str, list[float], dict]]) -> None:
        for start in range(0, len(records), PAGE):
            page = records[start : start + PAGE]
            with self._embeddings(model, "adding embeddings") as col:
                col.add(ids=[rid for rid, _, _ in page], embeddings=[v for _, v, _ in page],
                        metadatas=[_clean(md) for _, _, md in page])

    def embedding_records(self, model: dict, ids: list[str]) -> Iterator[tuple[str, list[float], dict]]:
        """(record id, vector, metadata) of these records of one model's collection."""
        for start in range(0, len(ids), PAGE):
            with self._embeddings(model, "reading embeddings") as col:
                got = col.get(ids=ids[start : start + PAGE], include=["embeddings", "metadatas"])
            for rid, vector, md in zip(got["ids"], got["embeddings"], got["metadatas"]):
                yield rid, [float(x) for x in vector], dict(md or {})

    def nearest_embeddings(self, model: dict, vector: list[float], count: int) -> list[tuple[str, float]]:
        """(record id, cosine similarity) of the `count` nearest records."""
        with self._embeddings(model, "searching embeddings") as col:
            total = col.count()
            if total == 0:
                return []
            got = col.query(query_embeddings=[vector], n_results=min(count, total), include=["distances"])
        return [(rid, 1.0 - float(d)) for rid, d in zip(got["ids"][0], got["distances"][0])]

    def delete_embeddings(self, model: dict, ids: list[str]) -> None:
        for start in range(0, len(ids), PAGE):
            with self._embeddings(model, "deleting embeddings") as col:
                col.delete(ids=ids[start : start + PAGE])


def _timed_out(exc: BaseException | None) -> bool:
    """Whether an httpx timeout is behind `exc` (chromadb re-raises some as ValueError)."""
    while exc is not None:
        if type(exc).__name__.endswith("Timeout"):  # httpx's ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _timeout_from_env() -> float:
    value = os.environ.get("MODERATE_CHROMA_TIMEOUT", "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise StoreError(f"MODERATE_CHROMA_TIMEOUT must be a number of seconds, got {value[:40]!r}") from None
    if not 0 < seconds <= 3600:
        raise StoreError(f"MODERATE_CHROMA_TIMEOUT must be from 0 to 3600 seconds, got {value[:40]!r}")
    return seconds


def _timed_http_client(host: str, port: int, ssl: bool, settings, timeout: float):
    """`chromadb.HttpClient`, but with a timeout on every request: chromadb builds its HTTP session
    with none (a server that accepts and never answers would hang us), and its constructor already
    sends requests, so the timeout is set just before its first one (`get_user_identity`)."""
    import httpx
    from chromadb.api.client import Client

    class TimedClient(Client):
        def get_user_identity(self):
            self._server._session.timeout = httpx.Timeout(timeout)
            return super().get_user_identity()

    settings.chroma_api_impl = "chromadb.api.fastapi.FastAPI"  # what HttpClient sets up, as it does
    settings.chroma_server_host, settings.chroma_server_http_port, settings.chroma_server_ssl_enabled = host, port, ssl
    return TimedClient(settings=settings)


def _clean(metadata: dict) -> dict:
    """Chroma metadata holds no None values."""
    return {k: v for k, v in metadata.items() if v is not None}
