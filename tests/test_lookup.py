"""Hash lookups without the image: `Engine.lookup` / `compare`, and the HTTP routes over a real server."""

from __future__ import annotations

import hashlib
import json

import pytest

from moderate.errors import InvalidLookup, StoreError

from .test_api import api  # noqa: F401  (the fixture: a real `moderate serve` over the `banked` data folder)


def flip_first_bit(hex_value: str) -> str:
    return f"{int(hex_value[0], 16) ^ 8:x}{hex_value[1:]}"


@pytest.fixture
def copy(edited):
    """A JPEG q70 re-encode of the flagged astronaut photo: its path."""
    return next(path for photo, edit, path in edited if (photo, edit) == ("astronaut", "jpeg70"))


def test_engine_lookup_and_compare(banked, photos, copy):
    pdq = banked.hash(copy)[0].pdq[0].hex
    (reason,) = [r for r in banked.check(copy).reasons if r.reference_id == "astronaut"]
    matches = banked.lookup("pdq", pdq.upper())  # canonical lowercase, as hash lists are read
    assert [(m.bank, m.reference_id) for m in matches] == [("TERROR", "astronaut")]
    (match,) = matches
    assert (match.distance, match.band, match.action) == (reason.distance, reason.rule, "block")
    assert match.similarity == 1 - match.distance / 256 and match.metadata["note"] == "case 17"
    assert "signature" not in match.metadata
    assert banked.lookup("pdq", pdq, max_distance=match.distance - 1) == []
    assert len(banked.lookup("pdq", pdq, max_distance=256)) == 4  # every reference, outside every band too
    assert {m.band for m in banked.lookup("pdq", pdq, max_distance=256)} >= {None}

    md5 = hashlib.md5(photos["rocket"].read_bytes()).hexdigest()
    (exact,) = banked.lookup("md5", md5)
    assert (exact.reference_id, exact.distance, exact.band, exact.action) == ("rocket", 0, "digest.exact", "block")
    assert banked.lookup("md5", flip_first_bit(md5)) == []
    sha = hashlib.sha256(photos["rocket"].read_bytes()).hexdigest()
    assert [m.reference_id for m in banked.lookup("sha256", sha)] == ["rocket"]

    for args, field in [(("pdq", "0" * 64), "hash"), (("pdq", pdq[:-1]), "hash"), (("pdq", "g" * 64), "hash"),
                        (("md5", sha), "hash"), (("sha256", md5), "hash"), (("phash", pdq), "signal"),
                        (("md5", md5, None, 3), "max_distance"), (("pdq", pdq, None, 257), "max_distance"),
                        (("pdq", pdq, ["NOPE"]), "bank")]:
        with pytest.raises(InvalidLookup) as refused:
            banked.lookup(*args)
        assert refused.value.field == field and str(refused.value).startswith(f"{field}: "), args

    results = banked.lookup_batch([("pdq", pdq, None), ("pdq", "0" * 64, None), ("md5", md5, None)])
    assert [m.reference_id for m in results[0]] == ["astronaut"] and [m.reference_id for m in results[2]] == ["rocket"]
    assert isinstance(results[1], InvalidLookup) and "all zeros" in str(results[1])

    original = banked.hash(photos["astronaut"])[0].pdq[0].hex
    same = banked.compare("pdq", pdq, original)
    assert same.distance == (int(pdq, 16) ^ int(original, 16)).bit_count() and same.band == "pdq.distance<=31"
    assert same.action == "bank" and not same.equal
    far = banked.compare("pdq", pdq, banked.hash(photos["chelsea"])[0].pdq[0].hex)
    assert far.distance > 52 and far.band is None and far.action is None
    assert banked.compare("md5", md5, md5.upper()).equal
    differ = banked.compare("md5", md5, flip_first_bit(md5))
    assert (differ.equal, differ.distance, differ.band) == (False, None, None)
    with pytest.raises(InvalidLookup, match="^b: "):
        banked.compare("pdq", pdq, "xyz")

    banked.banks.disable("TERROR")  # nothing the policy uses: refused, not an empty "no match"
    with pytest.raises(StoreError, match="nothing to look up in"):
        banked.lookup("pdq", pdq)
    (named,) = banked.lookup("pdq", pdq, banks=["TERROR"])  # named: looked in, and the policy acts on none of it
    assert (named.band, named.action) == ("pdq.distance<=31", None)


def test_lookup_routes(api, banked, photos, copy):
    client, auth = api
    pdq = banked.hash(copy)[0].pdq[0].hex
    checked = client.post("/v1/check", content=copy.read_bytes(), headers=auth["checker"]).json()
    reason = next(r for r in checked["reasons"] if r["reference_id"] == "astronaut")

    found = client.get("/v1/lookup", params={"signal": "pdq", "hash": pdq}, headers=auth["checker"])
    assert found.status_code == 200, found.text
    body = found.json()
    assert (body["signal"], body["hash"], body["truncated"]) == ("pdq", pdq, False)
    (match,) = body["matches"]
    assert {key: match[key] for key in ("bank", "reference_id", "signal", "distance", "band", "action")} == {
        "bank": "TERROR", "reference_id": "astronaut", "signal": "pdq", "distance": reason["distance"],
        "band": reason["rule"], "action": "block"}
    assert match["similarity"] == round(1 - match["distance"] / 256, 4) and match["metadata"]["note"] == "case 17"
    wide = client.get("/v1/lookup", params={"signal": "pdq", "hash": pdq, "max_distance": 256, "limit": 2,
                                            "bank": ["TERROR", "TERROR"]}, headers=auth["checker"]).json()
    assert len(wide["matches"]) == 2 and wide["truncated"] and wide["matches"][0]["reference_id"] == "astronaut"

    md5 = hashlib.md5(photos["coffee"].read_bytes()).hexdigest()
    exact = client.get("/v1/lookup", params={"signal": "md5", "hash": md5}, headers=auth["checker"]).json()
    assert [(m["reference_id"], m["distance"], m["action"]) for m in exact["matches"]] == [("set2/coffee", 0, "block")]
    missed = client.get("/v1/lookup", params={"signal": "md5", "hash": flip_first_bit(md5)}, headers=auth["checker"])
    assert missed.status_code == 200 and missed.json()["matches"] == []

    items = [{"signal": "pdq", "hash": pdq}, {"signal": "md5", "hash": "abc"}, {"signal": "md5", "hash": md5},
             {"signal": "pdq", "hash": pdq, "max_distance": 300}, ["not", "an", "object"],
             {"signal": "pdq", "hash": pdq, "colour": "red"}]
    batch = client.post("/v1/lookup/batch", json=items, headers=auth["checker"])
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == len(items)
    assert [m["reference_id"] for m in results[0]["matches"]] == ["astronaut"]
    assert [m["reference_id"] for m in results[2]["matches"]] == ["set2/coffee"]
    assert results[1] == {"signal": "md5", "hash": "abc", "matches": None, "truncated": False,
                          "error": "hash: md5 digest must be 32 hex characters, got 3"}
    assert results[3]["matches"] is None and results[3]["error"].startswith("max_distance: ")
    assert results[4]["error"] == "must be a {signal, hash} object, got a list" and results[4]["signal"] is None
    assert results[5]["error"].startswith("colour: ")

    compared = client.get("/v1/compare", params={"signal": "pdq", "a": pdq, "b": flip_first_bit(pdq)},
                          headers=auth["checker"]).json()
    assert (compared["distance"], compared["similarity"], compared["band"], compared["equal"]) == (
        1, round(1 - 1 / 256, 4), "pdq.distance<=31", False)
    equal = client.get("/v1/compare", params={"signal": "md5", "a": md5, "b": md5.upper()}, headers=auth["checker"])
    assert equal.json()["equal"] is True and equal.json()["distance"] == 0

    for route, params in [("/v1/lookup", {"signal": "pdq", "hash": pdq}),
                          ("/v1/compare", {"signal": "pdq", "a": pdq, "b": pdq})]:
        assert client.get(route, params=params).status_code == 401
        assert client.get(route, params=params, headers={"Authorization": "Bearer mod_wrong"}).status_code == 401
        assert client.get(route, params=params, headers=auth["moderator"]).status_code == 200  # roles nest
    assert client.post("/v1/lookup/batch", json=items[:1]).status_code == 401


def test_lookup_refusals_are_one_line_400s(api, banked, copy):
    client, auth = api
    pdq = banked.hash(copy)[0].pdq[0].hex
    cases = [
        ("/v1/lookup", {"signal": "pdq", "hash": "0" * 64}, "hash: pdq hash is all zeros"),
        ("/v1/lookup", {"signal": "pdq", "hash": pdq[:10]}, "hash: pdq hash must be 64 hex characters, got 10"),
        ("/v1/lookup", {"signal": "pdq", "hash": "z" * 64}, "hash: pdq hash has non-hex characters"),
        ("/v1/lookup", {"signal": "sha256", "hash": "0" * 32}, "hash: sha256 digest must be 64 hex characters"),
        ("/v1/lookup", {"signal": "phash", "hash": pdq}, "query.signal: "),
        ("/v1/lookup", {"signal": "pdq"}, "query.hash: "),
        ("/v1/lookup", {"signal": "pdq", "hash": pdq, "max_distance": 257}, "query.max_distance: "),
        ("/v1/lookup", {"signal": "pdq", "hash": pdq, "max_distance": "far"}, "query.max_distance: "),
        ("/v1/lookup", {"signal": "md5", "hash": "0" * 32, "max_distance": 3}, "max_distance: only pdq hashes"),
        ("/v1/lookup", {"signal": "pdq", "hash": pdq, "bank": "NOPE"}, "bank: no bank named 'NOPE'"),
        ("/v1/lookup", {"signal": "pdq", "hash": pdq * 1000}, "hash: pdq hash must be 64 hex characters"),
        ("/v1/lookup", [("signal", "pdq"), ("hash", pdq), ("hash", pdq)], "query parameter 'hash' is given more than once"),
        ("/v1/compare", {"signal": "pdq", "a": pdq, "b": "00"}, "b: pdq hash must be 64 hex characters, got 2"),
        ("/v1/compare", {"signal": "md5", "a": "x", "b": "00"}, "a: md5 digest must be 32"),
    ]
    for route, params, error in cases:
        response = client.get(route, params=params, headers=auth["checker"])
        assert response.status_code == 400, (params, response.text[:300])
        assert response.headers["content-type"] == "application/json"
        message = response.json()["error"]
        assert message.startswith(error) and "\n" not in message and len(message) < 400, (params, message)
    for body in (b"{}", b"[]", json.dumps([{"signal": "pdq", "hash": pdq}] * 101).encode(), b"[" * 100_000, b"[1,"):
        refused = client.post("/v1/lookup/batch", content=body, headers={**auth["checker"], "Content-Type": "application/json"})
        assert refused.status_code == 400 and "\n" not in refused.json()["error"], body[:40]
    unknown = client.post("/v1/lookup/batch?bank=NOPE", json=[{"signal": "pdq", "hash": pdq}], headers=auth["checker"])
    assert unknown.status_code == 400 and unknown.json()["error"] == "bank: no bank named 'NOPE'"


def test_openapi_documents_the_lookup_routes(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    routes = {("/v1/lookup", "get"): "LookupResult", ("/v1/lookup/batch", "post"): "LookupBatch",
              ("/v1/compare", "get"): "Comparison"}
    for (path, method), schema in routes.items():
        operation = spec["paths"][path][method]
        assert operation["tags"] == ["lookups"] and operation["summary"], path
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{schema}")
        assert operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    parameters = {p["name"]: p for p in spec["paths"]["/v1/lookup"]["get"]["parameters"]}
    assert set(parameters["signal"]["schema"]["enum"]) == {"pdq", "md5", "sha256"} and parameters["hash"]["required"]
    assert parameters["bank"]["schema"]["anyOf"][0]["type"] == "array"
    body = spec["paths"]["/v1/lookup/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array" and body["maxItems"] == 100 and set(body["items"]["required"]) == {"signal", "hash"}
    schemas = spec["components"]["schemas"]
    assert {"LookupMatch", "LookupResult", "LookupBatch", "Comparison"} <= set(schemas)
    assert {"band", "action", "distance", "similarity", "metadata"} <= set(schemas["LookupMatch"]["properties"])
