"""Frames too small to describe get a verdict on every surface, never an exception (issue #12 item 8)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from .test_api import api  # noqa: F401 (the real `moderate serve` fixture)


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (2, 500), (500, 2), (15, 15)])
def test_the_api_answers_tiny_images_with_a_verdict(api, size):  # noqa: F811
    client, auth = api
    answer = client.post("/v1/check", files={"file": ("pixel.png", _png(size), "image/png")}, headers=auth["checker"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verdict"] == "allow" and body["reasons"][0]["rule"] == "pdq.low_quality"
    assert (body["width"], body["height"]) == size
