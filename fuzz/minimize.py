"""Shrink a finding while it keeps failing the same way (same signature as decode_fuzz.py gives it).

Greedy delta debugging: remove chunks of half the input, then quarters, ... down to single bytes,
keeping every removal after which decoding still raises the same exception at the same place.
Runs in-process (about 1 ms a try); Python-level hangs are cut by a 10 s alarm and count as "not
the same". libFuzzer's -minimize_crash would accept any crash, and drift from one bug to another.

    .venv/bin/python fuzz/minimize.py fuzz/out/<signature>.bin fuzz/findings/<name>.bin
"""

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import decode_fuzz  # noqa: E402


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang


def outcome(data: bytes) -> str | None:
    signal.alarm(10)
    try:
        decode_fuzz.target(data)
    except Hang:
        return "hang"
    except Exception as error:
        return decode_fuzz.signature(error)
    finally:
        signal.alarm(0)
    return None


def minimize(data: bytes, seconds: float = 300) -> tuple[bytes, str]:
    key = outcome(data)
    if key is None or key == "hang":
        raise SystemExit(f"input does not fail with an exception ({key}); nothing to minimize")
    deadline = time.monotonic() + seconds
    best, chunk = data, max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, progress = 0, False
        while i < len(best) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk:]
            if candidate and outcome(candidate) == key:
                best, progress = candidate, True
            else:
                i += chunk
        if not progress:
            chunk //= 2
    return best, key


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    signal.signal(signal.SIGALRM, _alarm)
    data = source.read_bytes()
    small, key = minimize(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(small)
    print(f"{key}: {len(data)} -> {len(small)} bytes, written to {target}")


if __name__ == "__main__":
    main()
