"""OCR: the text in a picture, for rules on words (spam, scams, slurs, contact details in images).

RapidOCR (`moderate[ocr]`) ships PP-OCR detection, orientation and recognition models in its wheel
and runs them through onnxruntime; nothing is downloaded. Each line read becomes one detection
labelled `text`, with the recognizer's confidence and the line's box.
"""

from __future__ import annotations

import logging

import numpy as np

from . import Detection, DetectorRule


class TextDetector:
    name = "ocr"

    def __init__(self):
        from rapidocr import RapidOCR

        # its INFO lines are not for our users; a filter, because it resets its logger's level
        logging.getLogger("RapidOCR").addFilter(lambda record: record.levelno >= logging.WARNING)
        self.reader = RapidOCR()

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        result = self.reader(np.ascontiguousarray(pixels[:, :, ::-1]))  # the reader expects BGR, as OpenCV reads
        out = []
        for text, score, corners in zip(result.txts or (), result.scores or (), result.boxes if result.boxes is not None else ()):
            xs, ys = corners[:, 0], corners[:, 1]
            x0, y0 = int(max(0, xs.min())), int(max(0, ys.min()))
            out.append(Detection("text", round(float(score), 4), (x0, y0, int(xs.max()) - x0, int(ys.max()) - y0), text))
        return out


DETECTOR = TextDetector


def read_rule(fields, action: str) -> DetectorRule:
    """`{keywords: [...], regex: ..., action, name}`: text containing a keyword or matching the pattern."""
    import re

    keywords = fields.get("keywords", [])
    regex = fields.get("regex", None)
    if not isinstance(keywords, list) or any(not isinstance(k, str) or not k.strip() for k in keywords):
        fields.fail("keywords", f"must be a list of words or phrases, got {keywords!r}")
    if regex is not None:
        try:
            re.compile(regex)
        except (re.error, TypeError) as exc:
            fields.fail("regex", f"not a valid regular expression: {exc}")
    if not keywords and regex is None:
        fields.fail("keywords", "an ocr rule needs keywords or a regex")
    return DetectorRule("ocr", action, fields.get("name", None) or f"ocr.{'regex' if regex else 'keywords'}",
                        keywords=tuple(keywords), regex=regex)
