"""Reference thumbnails: banks keep signals, never images, unless a bank explicitly allows a
thumbnail, which moderators then see beside a match (issue #14)."""

from __future__ import annotations

import re

import httpx
from PIL import Image

from moderate import Engine, Policy

from .test_api import api  # noqa: F401 (the real `moderate serve` fixture)


def _signed_in(client: httpx.Client, secret: str) -> httpx.Client:
    form = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    client.post("/ui/login", data={"token": secret, "csrf": csrf})
    return client


def test_a_bank_that_allows_thumbnails_shows_them_and_one_that_does_not_never_stores_them(api, banked, photos,  # noqa: F811
                                                                                         tmp_path):
    client, auth = api
    banked.banks.create("SPAM", action="review", thumbnails=True)
    banked.banks.add("SPAM", [photos["chelsea"]])
    (spam,) = banked.banks.references("SPAM")
    assert spam.metadata["thumbnail"].startswith("data:image/jpeg;base64,")
    assert all("thumbnail" not in ref.metadata for ref in banked.banks.references("TERROR"))  # not allowed: none
    assert "thumbnail" not in banked.search(photos["chelsea"])[0].metadata  # search shows metadata, not pictures

    near = tmp_path / "cat.jpg"
    Image.open(photos["chelsea"]).convert("RGB").resize((300, 200)).save(near, quality=80)
    reviewing = Engine(banked.data_dir, policy=Policy.from_mapping({"banks": {"SPAM": "bank"}}), enqueue_reviews=True)
    assert reviewing.check(near).verdict == "review"
    (item,) = reviewing.queue.list()
    page = _signed_in(client, auth["moderator"]["Authorization"].split()[1]).get(f"/ui/items/{item.id}")
    assert page.status_code == 200
    assert re.search(r'<img class="reference-thumb" src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', page.text)
    assert "img-src 'self' data:" in page.headers["content-security-policy"]
