"""NudeNet: a YOLOv8 nudity detector (18 labels: exposed and covered body parts, faces).

The ONNX model ships in the `nudenet` package (AGPL-3.0: an optional extra, `moderate[nsfw]`); it
runs here through onnxruntime on pixels we decoded ourselves within budgets, never through the
package's own file reader. The picture is padded to a square (bottom and right) and resized to the
model's 320 px input; boxes are mapped back and overlapping ones merged (non-maximum suppression).
"""

from __future__ import annotations

import os

import numpy as np

from . import Detection, DetectorRule

LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)
INPUT = 320
MIN_SCORE = 0.2  # candidates below this are dropped before merging; policies set their own minimums
OVERLAP = 0.45


class NudityDetector:
    name = "nudenet"

    def __init__(self):
        import nudenet
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # workers parallelize across processes
        path = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        import cv2

        height, width = pixels.shape[:2]
        side = max(height, width)
        square = np.zeros((side, side, 3), np.uint8)
        square[:height, :width] = pixels
        batch = cv2.resize(square, (INPUT, INPUT), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        (output,) = self.session.run(None, {self.input: batch.transpose(2, 0, 1)[None]})
        rows = output[0].T  # (candidates, 4 box values + one score per label)
        scores = rows[:, 4:]
        labels = scores.argmax(axis=1)
        best = scores[np.arange(len(rows)), labels]
        keep = best >= MIN_SCORE
        scale = side / INPUT
        centre_x, centre_y, w, h = (rows[keep, i] * scale for i in range(4))
        boxes = np.stack([centre_x - w / 2, centre_y - h / 2, w, h], axis=1)
        chosen = cv2.dnn.NMSBoxes(boxes.tolist(), best[keep].tolist(), MIN_SCORE, OVERLAP)
        out = []
        for i in np.asarray(chosen).ravel():
            x, y, bw, bh = boxes[i]
            x0, y0 = max(0, int(x)), max(0, int(y))
            box = (x0, y0, max(1, min(width, int(x + bw)) - x0), max(1, min(height, int(y + bh)) - y0))
            out.append(Detection(LABELS[labels[keep][i]], round(float(best[keep][i]), 4), box))
        return out


DETECTOR = NudityDetector


def read_rule(fields, action: str) -> DetectorRule:
    """`{labels: [...], min_score: 0.5, action, name}`: any of the labels at that score or more."""
    labels = fields.get("labels", None)
    if not isinstance(labels, list) or not labels or any(label not in LABELS for label in labels):
        fields.fail("labels", f"must be a list of NudeNet labels ({', '.join(LABELS)}), got {labels!r}")
    min_score = fields.fraction("min_score", MIN_SCORE, 1.0) if "min_score" in fields.data else 0.5
    return DetectorRule("nudenet", action, fields.get("name", None) or f"nudenet.{'|'.join(labels)}",
                        labels=tuple(labels), min_score=min_score)
