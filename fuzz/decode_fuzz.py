"""Coverage-guided fuzzing of `moderate.media.decode`, the one door every upload goes through.

What it checks: for ANY byte string, `decode` either returns frames or raises `MediaError` whose
message is a single line (the contract in moderate/errors.py that the CLI, the JSON verdicts and
the policy's `on_error` verdict rely on). A finding is anything else:
- any other exception: the caller would crash instead of applying `on_error`;
- a MediaError whose message spans several lines;
- a decoded frame that is not RGB uint8 at most 256 px a side, or declares an empty original size;
- a timeout (-timeout=20): one input decoding for over 20 s, though max_seconds=5;
- an out-of-memory (-rss_limit_mb=2048): the pixel budgets below should keep a decode far under it.
The budgets are small (4 MP per frame) so a budget that is checked too late shows up as an OOM or
a timeout rather than hiding under a generous limit.

Coverage: the Python code of Pillow's plugins, pillow-heif, pypdfium2, metafile-render and moderate is
instrumented, so Python branch coverage guides the mutations; the C decoders (libjpeg, libpng,
libtiff, libwebp, libavif, libheif, PDFium) are not instrumented and are reached through the seeds.

Documents: moderate renders PDF, WMF and EMF in a separate renderer process (memory limit,
deadline), which atheris cannot see into: there the fuzzing is blind. FUZZ_IN_PROCESS=1 renders them
in this process instead, so their code is covered and guides mutations, and a bomb in the renderer
shows up as a libFuzzer timeout or out-of-memory rather than as a `too_slow` MediaError.

Exceptions: a shallow bug (say, every PDF with one broken page) would otherwise stop libFuzzer
within seconds, every run. So by default each distinct finding (exception type + where it was
raised + the innermost moderate frame) is printed with its traceback and its input saved once to
fuzz/out/ as `<signature>.bin`; fuzzing goes on. FUZZ_STRICT=1 re-raises instead (plain libFuzzer
behaviour: stop, write crash-<sha1>), for replaying one input. Timeouts and OOMs always stop the run.

    .venv/bin/python fuzz/seeds.py fuzz/corpus
    .venv/bin/python fuzz/decode_fuzz.py fuzz/corpus -max_total_time=1500 -rss_limit_mb=2048 -timeout=20
    FUZZ_STRICT=1 .venv/bin/python fuzz/decode_fuzz.py fuzz/findings/<file>      # replay one input
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

if __name__ == "__main__" and os.environ.get("FUZZ_SUPERVISED") != "1":
    # libFuzzer ends the process without running Python's exit handlers, which would leave moderate's
    # renderer processes behind: fuzz in a child process group, and end that group when it is done.
    fuzzer = subprocess.Popen([sys.executable, *sys.argv], env={**os.environ, "FUZZ_SUPERVISED": "1"}, start_new_session=True)
    try:
        code = fuzzer.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fuzzer.pid, signal.SIGKILL)
    sys.exit(code)

import atheris  # noqa: E402

import numpy  # noqa: E402  imported before instrumentation: big, and its branches say nothing about the input

# Instrument only when fuzzing: not when minimize.py imports this module, nor in moderate's renderer
# process, which re-imports the main script as __mp_main__.
with atheris.instrument_imports() if __name__ == "__main__" else contextlib.nullcontext():
    import metafile_render  # noqa: F401
    import pypdfium2  # noqa: F401
    import pillow_heif  # noqa: F401
    from PIL import Image

    Image.init()  # import every Pillow plugin now, so they are instrumented too

    import moderate.media.documents  # noqa: F401  (decode imports it lazily)
    from moderate.errors import MediaError
    from moderate.media import Budgets, decode

BUDGETS = Budgets(max_pixels=4_000_000, max_total_pixels=16_000_000, max_frames=50, max_pages=10, max_seconds=5)
STRICT = os.environ.get("FUZZ_STRICT") == "1"
if os.environ.get("FUZZ_IN_PROCESS") == "1":
    def _in_process(render, data, budgets, working_size, name, deadline):
        return render(data, budgets, working_size, name, max(0.1, deadline - time.monotonic()))

    moderate.media.documents._isolated = _in_process  # same call as moderate.media.documents._isolated makes, minus the process
OUT = Path(os.environ.get("FUZZ_OUT", Path(__file__).parent / "out"))
seen: set[str] = set()


class MultiLineMediaError(AssertionError):
    """A MediaError whose message is not one line (moderate/errors.py promises one)."""


class BadFrame(AssertionError):
    """decode returned, but a frame breaks the Frame contract the signals rely on."""


def target(data: bytes) -> None:
    try:
        media = decode(data, BUDGETS, working_size=256, name="fuzz")
    except MediaError as error:
        if "\n" in str(error):
            raise MultiLineMediaError(repr(str(error))) from error
        return
    for frame in media.frames:
        shape = frame.pixels.shape
        if frame.width < 1 or frame.height < 1:
            raise BadFrame(f"{media.format}-empty-size", f"frame {frame.index} declares {frame.width}x{frame.height}")
        if frame.pixels.dtype != numpy.uint8 or len(shape) != 3 or shape[2] != 3 or not 1 <= min(shape[:2]) <= max(shape[:2]) <= 256:
            raise BadFrame(f"{media.format}-pixels", f"frame {frame.index}: pixels {shape} {frame.pixels.dtype}")


def signature(error: BaseException) -> str:
    """Type, the line that raised, and the innermost moderate line: one per distinct bug."""
    if isinstance(error, BadFrame):
        return f"BadFrame-{error.args[0]}"
    raised = error.__cause__ if isinstance(error, MultiLineMediaError) else error  # where the MediaError came from
    frames = traceback.extract_tb(raised.__traceback__)
    ours = [f for f in frames if f"{os.sep}moderate{os.sep}" in f.filename] or frames
    where = f"{Path(frames[-1].filename).stem}{frames[-1].lineno}-{Path(ours[-1].filename).stem}{ours[-1].lineno}"
    return re.sub(r"[^\w.-]+", "_", f"{type(error).__name__}-{where}")


def TestOneInput(data: bytes) -> None:
    try:
        target(data)
    except Exception as error:
        if STRICT:
            raise
        key = signature(error)
        if key not in seen:
            seen.add(key)
            (OUT / f"{key}.bin").write_bytes(data)
            print(f"\n=== FINDING {len(seen)}: {key} ({len(data)} bytes) ===", file=sys.stderr)
            traceback.print_exc(limit=-6, file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)  # also the usual -artifact_prefix
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
