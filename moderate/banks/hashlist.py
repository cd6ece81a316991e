"""Hash lists: how hashes without images travel between platforms.

Industry programs share hashes, not images. Two formats are read, detected from the content:
- `csv`: python-threatexchange's dataset CSV (`threatexchange dataset -P --csv`), a header naming
  at least `signal_type` and `signal_str`; optional `reference_id`, `source_url`, `note`, `collab`,
  `category` and `tags` columns are kept as reference metadata, and `quality` as a PDQ hash's
  (what `bank export` writes for a hash too flat to match).
- `txt`: one `SIGNAL_TYPE HASH` per line (`pdq 3b1e...`), `#` comments and blank lines ignored,
  which is what `threatexchange dataset -P -S` prints and pytx's local-file exchange reads.
  `moderate hash` output imports as is: after the hash it prints `quality=N` (kept: a PDQ hash
  under quality 50 is listed but never matched, as for `bank add`), then a variant and the source,
  which are ignored. Any other third field is an error (a line holding two hashes, say).

Signal types are python-threatexchange's names (`pdq`, `video_md5`, `video_sha256`), with `md5`,
`photo_md5` (ThreatExchange's), `sha256` and `photo_sha256` (`moderate.signals.LIST_TYPES`): a PDQ
row becomes a PDQ hash, a digest row an exact file digest (`moderate.signals.digest`). Every line
is validated by its signal (`Signal.parse`); a bad one is reported with its line number.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from typing import Iterable, Iterator, NamedTuple, TextIO

from ..ids import check_reference_id
from ..signals import LIST_TYPES, PDQ

FORMATS = ("csv", "txt")
# a line inside a quoted field that starts as a row does: a list's signal type, a comma, hex
_ROW_START = re.compile(rf"\n\s*({'|'.join(map(re.escape, LIST_TYPES))})\s*,\s*[0-9a-fA-F]{{8}}", re.IGNORECASE)
CSV_METADATA = ("source_url", "note", "collab", "category", "tags")


class ListedHash(NamedTuple):
    """One valid hash from a list, with the line it came from and the metadata given beside it (a
    tuple: a 10M-line list makes 10M of them)."""

    line: int
    signal: str  # ours: pdq or digest
    value: str  # canonical
    reference_id: str | None = None
    metadata: dict = {}  # never changed in place
    list_type: str = PDQ.name  # the row's signal type, as listed (lowercase): md5, photo_md5, video_md5, ...
    quality: int = 100  # of a PDQ hash, when the list gives it (lists carry usable hashes)

    @property
    def kind(self) -> str:
        """What value it is: pdq, md5 or sha256."""
        return LIST_TYPES[self.list_type].list_types[self.list_type]


def detect_format(text: str) -> str:
    first = next((line for line in _lines(text) if line.strip() and not line.lstrip().startswith("#")), "")
    try:
        header = [cell.strip().lower() for cell in next(csv.reader([first]), [])]
    except csv.Error:  # a first line no CSV header could be (over the csv module's field limit)
        return "txt"
    return "csv" if "signal_type" in header and "signal_str" in header else "txt"


def parse(text: str, fmt: str | None = None) -> tuple[list[ListedHash], list[tuple[int, str]]]:
    """Parse a hash list: (valid hashes, [(line number, problem)])."""
    return _collect(_rows(text, fmt))


def chunks(text: str, fmt: str | None = None, size: int = 200_000) -> Iterator[tuple[list[ListedHash], list[tuple[int, str]]]]:
    """`parse`, `size` rows at a time: a 10M-line list is never 10M objects at once. ValueError
    for an unknown format, before the first chunk."""
    return _chunked(_rows(text, fmt), size)


def _chunked(rows: Iterator[tuple], size: int):
    while True:
        good, bad = _collect(itertools.islice(rows, size))
        if not good and not bad:
            return
        yield good, bad


def _rows(text: str, fmt: str | None) -> Iterator[tuple]:
    text = text.removeprefix("\ufeff")  # spreadsheets write a byte-order mark
    fmt = fmt or detect_format(text)
    if fmt not in FORMATS:
        raise ValueError(f"unknown hash list format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return _csv_rows(text) if fmt == "csv" else _txt_rows(text)


def _collect(rows: Iterable[tuple]):
    """Rows are (line, signal type, value, reference id, metadata, quality), or (line, problem) for
    a bad shape."""
    good: list[ListedHash] = []
    bad: list[tuple[int, str]] = []
    for row in rows:
        if len(row) == 2:
            bad.append(row)
            continue
        line, type_name, value, reference_id, metadata, quality = row
        list_type = type_name.strip().lower()
        signal = LIST_TYPES.get(list_type)
        if signal is None:
            bad.append((line, f"unknown signal type {type_name.strip()!r} (supported: {', '.join(LIST_TYPES)})"))
            continue
        try:
            if reference_id:
                check_reference_id(reference_id)
            good.append(ListedHash(line, signal.name, signal.parse(value, list_type), reference_id or None, metadata,
                                   list_type, quality))
        except ValueError as exc:
            bad.append((line, str(exc)))
    return good, bad


def _lines(text: str, block: int = 1 << 20) -> Iterator[str]:
    """The lines of `text`, each with its "\n" (the last may have none), a block at a time (a list
    of 10M lines, or `io.StringIO`'s 4-byte-per-character copy, would cost gigabytes). Only "\n"
    ends a line, as for `wc -l`: `str.splitlines` also breaks at \r, \f, \x1c-\x1e, NEL and
    U+2028/9, which a quoted note may hold. A CRLF line keeps its "\r" (csv and txt take it off)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + block)
        end = len(text) if end < 0 else end + 1
        *whole, rest = text[start:end].split("\n")
        yield from (line + "\n" for line in whole)
        if rest:
            yield rest
        start = end


def _txt_rows(text: str):
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or (len(parts) > 2 and not parts[2].startswith("quality=")):
            yield number, f"expected 'SIGNAL_TYPE HASH' (or `moderate hash` output), got {len(parts)} fields"
            continue
        quality = _quality(parts[2].removeprefix("quality=") if len(parts) > 2 else None)
        if isinstance(quality, str):
            yield number, quality
            continue
        yield number, parts[0], parts[1], None, {}, quality


def _quality(text: str | None) -> int | str:
    """A PDQ hash's quality (100 when not given), or the problem with it."""
    try:
        quality = 100 if text is None else int(text)
    except ValueError:
        quality = -1
    return quality if 0 <= quality <= 100 else f"quality must be an integer from 0 to 100, got {text!r}"


def _csv_rows(text: str):
    source, taken = _lines(text), []

    def read(lines):  # the lines the current row took, to read them again if it is a runaway quote
        for line in lines:
            taken.append(line)
            yield line

    # strict: a quote never closed is an error at the end of the file, not a last field holding
    # every line after it
    reader, before = csv.reader(read(source), strict=True), 0  # lines read by earlier readers
    header: list[str] | None = None
    while True:
        taken.clear()
        first = before + reader.line_num + 1
        try:
            row, problem = next(reader), None
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the csv module's limit (128 kB), a NUL byte, a quote not closed
            row, problem = None, f"unreadable CSV row: {exc}"
        last = before + reader.line_num
        if header is not None and row is not None and len(row) != len(header):
            problem = f"expected {len(header)} columns as in the header, got {len(row)}"
        if last > first and (problem or _holds_rows(row)):
            # A quote opened on line `first` ran on through `last`: that line is the bad one, and
            # the lines it took are read again as rows of their own.
            yield first, (f"{problem or 'a quoted field holds what look like rows'} "
                          f"(a quote opened here runs on to line {last}; the lines after it are read on their own)")
            again, before = taken[1:], first
            reader = csv.reader(read(itertools.chain(again, source)), strict=True)
            continue
        if problem:
            yield first, problem
            continue
        if not row or not any(cell.strip() for cell in row) or (header is None and row[0].lstrip().startswith("#")):
            continue  # comments only before the header: after it, a first column may start with '#'

        if header is None:
            header = [cell.strip().lower() for cell in row]
            twice = sorted(name for name, count in Counter(header).items() if name and count > 1)
            if "signal_type" not in header or "signal_str" not in header or twice:
                yield first, (f"CSV header names {', '.join(twice)} more than once" if twice else
                              "CSV header must name signal_type and signal_str columns")
                return
            continue
        record = dict(zip(header, (cell.strip() for cell in row)))
        metadata = {key: record[key] for key in CSV_METADATA if record.get(key)}
        quality = _quality(record.get("quality") or None)  # an empty cell: a row that gives none
        if isinstance(quality, str):
            yield first, quality
            continue
        yield first, record["signal_type"], record["signal_str"], record.get("reference_id"), metadata, quality


def _holds_rows(row: list[str] | None) -> bool:
    """Whether a field read across lines holds a line that starts like a hash-list row
    (`pdq,<hex>`...): a quote left open on one line and closed by a stray one lines later."""
    return bool(row) and any(_ROW_START.search(cell) for cell in row if "\n" in cell)


def write(rows: Iterable[dict], out: TextIO, fmt: str = "csv") -> int:
    """Write references as a hash list; rows carry signal_type, signal_str, bank, reference_id, ..."""
    count = 0
    if fmt == "csv":
        columns = ["signal_type", "signal_str", "bank", "reference_id", "quality", *CSV_METADATA, "added_at", "added_by"]
        # RFC 4180's CRLF: the csv module then quotes a field holding a lone \r as well as \n
        writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    elif fmt == "txt":
        for row in rows:
            quality = f" quality={row['quality']}" if row.get("quality") is not None else ""
            out.write(f"{row['signal_type']} {row['signal_str']}{quality}\n")
            count += 1
    else:
        raise ValueError(f"unknown hash list format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return count
