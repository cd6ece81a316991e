"""`python -m bench [--quick] [--only SECTION,...]`: run the benchmarks, print a table, write JSON.

Each section prints a line when it starts and ends so a slow one is visible; the table comes at the
end, and `bench/out/results.json` keeps every raw number with the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone

from . import (bank_import, embedding, hashlists, heldout, hook, load, lookup, provenance, robustness, scale, startup,
               throughput)
from .common import FULL, OUT, QUICK, Row, Scale, Section, load_average

SECTIONS = {
    "throughput": throughput.run_section,
    "lookup": lookup.run_section,
    "bank_import": bank_import.run_section,
    "startup": startup.run_section,
    "provenance": provenance.run_section,
    "load": load.run_section,
    "robustness": robustness.run_section,
    "embedding": embedding.run_section,
    "hook": hook.run_section,
    "heldout": heldout.run_section,
    "scale": scale.run_section,
    "hashlists": hashlists.run_section,
}
RATIO_NOTE = ("ratio: moderate against the baseline, > 1x is better for moderate (rates: moderate/baseline, "
              "times: baseline/moderate); startup: time over bare Python start-up.")
COLUMNS = (("measure", "measure"), ("moderate", "value"), ("baseline", "baseline"), ("ratio", "ratio"),
           ("target", "target"), ("met", "met"))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    scale = QUICK if args.quick else FULL
    scale = replace(scale, scale_sizes=args.scale_sizes or scale.scale_sizes,
                    scale_queries=args.scale_queries or scale.scale_queries)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    load = {"start": load_average()}
    started = time.perf_counter()
    sections = [_run(name, scale) for name in args.only]
    elapsed = time.perf_counter() - started
    load["end"] = load_average()
    print()
    print(table([row for s in sections for row in s.rows]))
    print(RATIO_NOTE)
    path = _write(sections, scale, elapsed, load)
    print(f"{scale.name} run in {elapsed:.0f} s on {os.cpu_count()} cpus, load average {load['start']} -> {load['end']}; "
          f"results in {path}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (< 2 min): 20k/100k codes, 4 photos")
    parser.add_argument("--only", default=",".join(SECTIONS), type=_sections,
                        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--scale-sizes", type=_sizes, default=None,
                        help="bank sizes of the scale section, e.g. 1000,10000 (default: 1000,10000,100000; --quick: 1000)")
    parser.add_argument("--scale-queries", type=int, default=None,
                        help="held-out queries checked per bank size in the scale section (default: 400; --quick: 132)")
    return parser.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n.replace("_", "")) for n in text.split(",") if n.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes are positive integers separated by commas, got {text!r}")
    return sizes


def _sections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section {unknown[0] if unknown else text!r}; choose from {', '.join(SECTIONS)}")
    return names


def _run(name: str, scale: Scale) -> Section:
    print(f"[bench] {name} ({scale.name}) ...", flush=True)
    start = time.perf_counter()
    section = SECTIONS[name](scale)
    section.data["seconds"] = time.perf_counter() - start
    print(f"[bench] {name} done in {section.data['seconds']:.1f} s", flush=True)
    return section


def table(rows: list[Row]) -> str:
    """A plain-text table, one block per section."""
    cells = [[_cell(row, attr) for _, attr in COLUMNS] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _) in enumerate(COLUMNS)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    out = [line([title for title, _ in COLUMNS]), line(["-" * w for w in widths])]
    previous = None
    for row, values in zip(rows, cells):
        if row.section != previous:
            out.append(f"[{row.section}]")
            previous = row.section
        out.append(line(values))
    return "\n".join(out)


def _cell(row: Row, attr: str) -> str:
    if attr == "met":
        return "" if row.met is None else ("yes" if row.met else "NO")
    return getattr(row, attr)


def _write(sections: list[Section], scale: Scale, elapsed: float, load: dict):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    results = {
        "scale": scale.name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": elapsed,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_average": load},
        "sections": {s.name: s.to_dict() for s in sections},
    }
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
