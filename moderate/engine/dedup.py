"""Duplicates in a photo library: group exact and near copies, keep one of each, move or delete the rest.

Each file is decoded once (within the usual budgets), reduced to its signals and dropped, so memory
holds 32 bytes of PDQ per file (plus the embedding, when asked for), never the pictures: 100k files
fit easily. Near copies are found with the exact Hamming index (`moderate.store.catalog.PdqIndex`) and,
for embeddings, a faiss inner-product range search; groups are the connected pieces of "is a near
copy of" (union-find). Flat pictures (PDQ quality below 50) hash unstably, so they only group with
byte-identical copies.

The keeper of a group is chosen by `prefer`: largest resolution, then largest file, then oldest
modification time, by default. Nothing is touched unless asked, and never the keeper.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import MediaError
from ..media import Budgets, decode

PREFERENCES = {
    "resolution": lambda item: -item.width * item.height,
    "size": lambda item: -item.bytes,
    "oldest": lambda item: item.mtime,
    "newest": lambda item: -item.mtime,
}
DEFAULT_PREFER = ("resolution", "size", "oldest")
SIGNALS = ("pdq", "embedding", "both")  # what ties copies: PDQ distance, embedding similarity, either


@dataclass(frozen=True)
class Item:
    path: str
    width: int
    height: int
    bytes: int
    mtime: float
    sha256: str
    pdq: str
    quality: int

    def to_dict(self) -> dict:
        return {"path": self.path, "width": self.width, "height": self.height, "bytes": self.bytes,
                "sha256": self.sha256}


@dataclass(frozen=True)
class Duplicate:
    item: Item
    signal: str  # exact | pdq | embedding
    distance: float  # bits for pdq, 1 - cosine for embedding, 0 for exact

    def to_dict(self) -> dict:
        return {**self.item.to_dict(), "signal": self.signal, "distance": self.distance}


@dataclass(frozen=True)
class Group:
    keeper: Item
    duplicates: tuple[Duplicate, ...]

    def to_dict(self) -> dict:
        return {"keeper": self.keeper.to_dict(), "duplicates": [d.to_dict() for d in self.duplicates]}


@dataclass(frozen=True)
class Scan:
    items: tuple[Item, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why)
    vectors: np.ndarray | None = field(default=None, repr=False)  # (N, d) embeddings, when asked for


def scan(paths: Iterable[Path], budgets: Budgets = Budgets(), model: str | None = None,
         progress: Callable[[], None] | None = None, workers: int = 1) -> Scan:
    """Signals of every readable file (with `model`, an embedding too); unreadable ones are listed
    with the reason. With several workers, files are read in spawned processes, 32 at a time."""
    if model is not None:
        from ..signals.embedding import require

        require(model)  # before any file is read, in this process rather than in each worker
    paths = list(paths)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=get_context("spawn")) as pool:
            parts = []
            for part in pool.map(_scan_chunk, chunks, [budgets] * len(chunks), [model] * len(chunks)):
                parts.append(part)
                for _ in range(len(part[0]) + len(part[1]) if progress else 0):
                    progress()
    else:
        parts = [_scan_chunk(chunk, budgets, model, progress) for chunk in chunks]
    vectors = [v for _, _, vs in parts for v in vs]
    return Scan(tuple(i for items, _, _ in parts for i in items), tuple(s for _, skipped, _ in parts for s in skipped),
                np.stack(vectors).astype(np.float32) if vectors else None)


CHUNK = 32


def _scan_chunk(paths: list[Path], budgets: Budgets, model: str | None, progress=None) -> tuple[list, list, list]:
    from ..signals import PDQ

    embedder = None
    if model is not None:
        from ..signals.embedding import load_model

        embedder = load_model(model)
    items, skipped, vectors = [], [], []
    for path in paths:
        try:
            stat = path.stat()
            media = decode(path, budgets, PDQ.working_size)
            frame = media.frames[0]
            (value,) = PDQ.compute(frame.pixels)
            if embedder is not None:
                vectors.append(embedder.compute([frame.pixels])[0])
            items.append(Item(str(path), media.width, media.height, stat.st_size, stat.st_mtime, media.sha256,
                              value.hex, value.quality))
        except (MediaError, OSError) as exc:
            skipped.append((str(path), str(exc)))
        if progress:
            progress()
    return items, skipped, vectors


def group(found: Scan, max_distance: int | None = 31, min_similarity: float | None = None,
          prefer: tuple[str, ...] = DEFAULT_PREFER, min_quality: int = 50) -> list[Group]:
    """Groups of two or more copies; `max_distance` (PDQ) and/or `min_similarity` (embedding)."""
    from ..signals.pdq import PdqIndex

    items = found.items
    parent = list(range(len(items)))
    how: dict[tuple[int, int], tuple[str, float]] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int, signal: str, distance: float) -> None:
        how.setdefault((min(a, b), max(a, b)), (signal, distance))
        parent[root(a)] = root(b)

    by_digest: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.sha256 in by_digest:
            join(i, by_digest[item.sha256], "exact", 0)
        by_digest.setdefault(item.sha256, i)
    if max_distance is not None and items:
        usable = [i for i, item in enumerate(items) if item.quality >= min_quality]
        codes = np.frombuffer(b"".join(bytes.fromhex(items[i].pdq) for i in usable), np.uint8).reshape(-1, 32)
        index = PdqIndex.of_codes(codes, [str(i) for i in usable])
        for start in range(0, len(usable), 4096):  # bounded result lists per batch
            for row, position, distance in index.search(codes[start : start + 4096], max_distance):
                a, b = usable[start + row], usable[position]
                if a != b:
                    join(a, b, "pdq", distance)
    if min_similarity is not None and found.vectors is not None and len(items):
        import faiss

        faiss.omp_set_num_threads(1)
        space = faiss.IndexFlatIP(found.vectors.shape[1])
        space.add(found.vectors)
        for start in range(0, len(items), 4096):
            lims, similarities, positions = space.range_search(found.vectors[start : start + 4096], min_similarity)
            for row in range(len(lims) - 1):
                for k in range(lims[row], lims[row + 1]):
                    if int(positions[k]) != start + row:
                        join(start + row, int(positions[k]), "embedding", round(1.0 - float(similarities[k]), 4))
    members: dict[int, list[int]] = {}
    for i in range(len(items)):
        members.setdefault(root(i), []).append(i)
    order = lambda i: tuple(PREFERENCES[p](items[i]) for p in prefer) + (items[i].path,)  # noqa: E731
    groups = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        indices.sort(key=order)
        keeper = indices[0]
        duplicates = tuple(Duplicate(items[i], *_evidence(how, keeper, i, indices)) for i in indices[1:])
        groups.append(Group(items[keeper], duplicates))
    groups.sort(key=lambda g: g.keeper.path)
    return groups


def _evidence(how: dict, keeper: int, i: int, indices: list[int]) -> tuple[str, float]:
    """How `i` is tied to the keeper: directly if it is, else through its closest link in the group."""
    direct = how.get((min(keeper, i), max(keeper, i)))
    if direct:
        return direct
    return next(how[(min(i, j), max(i, j))] for j in indices if (min(i, j), max(i, j)) in how)


def move(groups: list[Group], target: Path, root: Path | None = None) -> list[tuple[str, str]]:
    """Move every duplicate (never a keeper) under `target`; returns (from, to) pairs."""
    keepers = {g.keeper.path for g in groups}
    moved = []
    for duplicate in (d for g in groups for d in g.duplicates):
        source = Path(duplicate.item.path)
        if str(source) in keepers:
            continue
        relative = source.relative_to(root) if root and source.is_relative_to(root) else Path(source.name)
        destination = _free(target / relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), destination)
        moved.append((str(source), str(destination)))
    return moved


def delete(groups: list[Group]) -> list[str]:
    """Delete every duplicate (never a keeper); returns the paths deleted."""
    keepers = {g.keeper.path for g in groups}
    deleted = []
    for duplicate in (d for g in groups for d in g.duplicates):
        if duplicate.item.path not in keepers:
            os.unlink(duplicate.item.path)
            deleted.append(duplicate.item.path)
    return deleted


def _free(path: Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`... if it is taken: a move never overwrites."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


THUMBNAIL = 192  # longest side, in pixels, of a picture in a report


def thumbnail(path: str, budgets: Budgets = Budgets(), side: int = THUMBNAIL) -> bytes | None:
    """A small JPEG of a file's first frame, decoded as for hashing (orientation applied,
    transparency on white); None when the file can no longer be read."""
    import io

    from PIL import Image

    try:
        pixels = decode(Path(path), budgets, side).frames[0].pixels
    except (MediaError, OSError):
        return None
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=80)
    return out.getvalue()


def html_report(groups: list[Group], out: Path, budgets: Budgets = Budgets(),
                progress: Callable[[], None] | None = None) -> Path:
    """One self-contained HTML page: each group's keeper beside its duplicates, as thumbnails.

    Pictures are inlined as data: URIs and the style is inline, so the page opens anywhere, offline,
    and fetches nothing. Every path and value is HTML-escaped: file names are not markup.
    `progress()` is called after each picture.
    """
    import base64
    from html import escape

    def card(item: Item, role: str, detail: str) -> str:
        picture = thumbnail(item.path, budgets)
        if progress:
            progress()
        image = (f'<img src="data:image/jpeg;base64,{base64.b64encode(picture).decode()}" alt="">' if picture
                 else '<div class="gone">cannot be read</div>')
        return (f'<figure class="{role}">{image}<figcaption><b>{role}</b> {escape(detail)}<br>'
                f'<span class="path">{escape(item.path)}</span></figcaption></figure>')

    sections = []
    for n, g in enumerate(groups):
        k = g.keeper
        cards = [card(k, "keep", f"{k.width}x{k.height}, {k.bytes} bytes")]
        cards += [card(d.item, "duplicate", f"{d.signal} d={d.distance}, {d.item.width}x{d.item.height}, "
                                            f"{d.item.bytes} bytes") for d in g.duplicates]
        sections.append(f'<section><h2>group {n}: {len(g.duplicates)} duplicates of {escape(k.path)}</h2>'
                        f'<div class="row">{"".join(cards)}</div></section>')
    duplicates = sum(len(g.duplicates) for g in groups)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>moderate dedup: {len(groups)} groups</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
section {{ border-top: 1px solid #ccc; padding: .5em 0; }}
h2 {{ font-size: 15px; font-weight: 600; overflow-wrap: anywhere; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: {THUMBNAIL + 8}px; padding: 4px; border: 3px solid #bbb; border-radius: 4px; }}
figure.keep {{ border-color: #2a9d3a; }}
figure.duplicate {{ border-color: #d9822b; }}
img {{ display: block; max-width: {THUMBNAIL}px; max-height: {THUMBNAIL}px; margin: auto; }}
figcaption {{ font-size: 12px; overflow-wrap: anywhere; }}
.path {{ font-family: ui-monospace, monospace; color: #555; }}
.gone {{ height: 80px; display: flex; align-items: center; justify-content: center; background: #eee; }}
</style></head><body>
<h1>{len(groups)} groups, {duplicates} duplicates</h1>
<p>Green: the keeper of each group (never moved or deleted). Orange: its duplicates.</p>
{"".join(sections)}
</body></html>
"""
    out = Path(out)
    out.write_text(page, encoding="utf-8")
    return out
