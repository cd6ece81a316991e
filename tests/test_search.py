"""Reverse image search over the banks: ranking, metadata, higher-resolution originals, signers."""

from __future__ import annotations

import json

from PIL import Image

from .conftest import run_cli


def test_source_ranks_first_with_its_metadata(banked, photos, tmp_path):
    copy = tmp_path / "copy.jpg"
    Image.open(photos["coffee"]).convert("RGB").resize((300, 200)).save(copy, quality=60)
    hits = banked.search(copy)
    assert hits[0].reference_id == "set2/coffee" and hits[0].similarity > 0.85
    assert hits[0].metadata["note"] == "case 17" and (hits[0].width, hits[0].height) == (600, 400)
    assert all(h.similarity >= 0.75 for h in hits)
    assert banked.search(photos["moon"]) == []


def test_higher_res_keeps_only_larger_references(banked, photos, tmp_path):
    big = tmp_path / "big.png"
    Image.open(photos["rocket"]).resize((1280, 854)).save(big)
    assert banked.search(big, higher_res=True) == []
    small = tmp_path / "small.jpg"
    Image.open(photos["rocket"]).resize((160, 107)).save(small, quality=80)
    (hit,) = banked.search(small, higher_res=True, top=1)
    assert hit.reference_id == "rocket" and hit.width == 640


def test_search_finds_rotated_copies_and_signers(banked, photos, tmp_path):
    key = banked.keys.generate("desk", signer="The Desk")
    banked.keys.trust(key.path.with_suffix(".pub"), "The Desk Ltd")
    banked.banks.create("ORIGINALS", kind="originals")
    original = tmp_path / "original.jpg"
    Image.open(photos["chelsea"]).save(original, quality=95)
    banked.signatures.sign(original, "desk", register="ORIGINALS")
    turned = tmp_path / "turned.jpg"
    Image.open(original).transpose(Image.Transpose.ROTATE_90).save(turned, quality=80)
    (hit,) = banked.search(turned, banks=["ORIGINALS"])
    assert (hit.reference_id, hit.signer, hit.signer_trusted, hit.variant) == ("original", "The Desk", True, "rotate270")
    assert "signature" not in hit.metadata


def test_cli_search_json(banked, photos):
    out = run_cli("search", str(photos["astronaut"]), "--json", "--top", "3", data_dir=banked.data_dir)
    assert out.returncode == 0
    first = json.loads(out.stdout.splitlines()[0])
    assert (first["reference_id"], first["distance"], first["similarity"]) == ("astronaut", 0, 1.0)
    missing = run_cli("search", str(photos["astronaut"]), "--bank", "NOPE", data_dir=banked.data_dir)
    assert missing.returncode == 1 and "no bank named 'NOPE'" in missing.stderr.decode()
