"""Coverage-guided fuzzing of `moderate.media.decode`, the one door every upload goes through.

What it checks: for ANY byte string, `decode` either returns frames or raises `MediaError` whose
message is a single line (the contract in moderate/errors.py that the CLI, the JSON verdicts and
the policy's `on_error` rely on). A finding is anything else:
- any other exception (the caller would crash instead of applying `on_error`);
- a multi-line MediaError (AssertionError raised here);
- a timeout (-timeout=20: one input decoding for over 20 s; the max_seconds=5 budget should stop it);
- an out-of-memory (-rss_limit_mb=2048: the pixel budgets below should keep a decode far under it).

The budgets are small (4 MP per frame) so a budget that is checked too late shows up as an OOM or
a timeout rather than hiding under a generous limit. Pillow's plugins, pillow-heif's and
metafile-render's Python code and moderate itself are instrumented, so Python branch coverage
guides the mutations; the C decoders (libjpeg, libpng, libtiff, libwebp, libavif, libheif, PDFium)
are not instrumented and are only reached by mutating the seeds.

    .venv/bin/python fuzz/seeds.py fuzz/corpus
    .venv/bin/python fuzz/decode_fuzz.py fuzz/corpus -max_total_time=1500 -rss_limit_mb=2048 -timeout=20
    .venv/bin/python fuzz/decode_fuzz.py fuzz/findings/some-input.bin    # replay one input
"""

import sys

import atheris

# Imported before instrumentation: big, and their branches say nothing about parsing the input.
import numpy  # noqa: F401
import pypdfium2  # noqa: F401

with atheris.instrument_imports():
    import metafile_render  # noqa: F401
    import pillow_heif  # noqa: F401
    from PIL import Image

    Image.init()  # import every Pillow plugin now, so they are instrumented too

    import moderate.documents  # noqa: F401  (decode imports it lazily)
    from moderate.errors import MediaError
    from moderate.media import Budgets, decode

BUDGETS = Budgets(max_pixels=4_000_000, max_total_pixels=16_000_000, max_frames=50, max_pages=10, max_seconds=5)


def TestOneInput(data: bytes) -> None:
    try:
        decode(data, BUDGETS, working_size=256, name="fuzz")
    except MediaError as error:
        if "\n" in str(error):
            raise AssertionError(f"MediaError message is not one line: {str(error)!r}") from error


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
