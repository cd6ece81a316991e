"""Banks in Chroma: references, ids, hash-list import and export, and what a change leaves behind."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from moderate import BankError, Engine, HashListError, StoreError
from moderate.signals import PDQ

from .conftest import FLAGGED


def random_hashes(n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    return [bytes(row).hex() for row in rng.integers(0, 256, size=(n, 32), dtype=np.uint8)]


def test_folder_add_ids_metadata_and_no_image_stored(banked, flagged_folder):
    refs = {r.id: r for r in banked.banks.references("TERROR")}
    assert set(refs) == {"astronaut", "set2/coffee", "rocket", "set2/motorcycle"}
    astronaut = refs["astronaut"]
    assert astronaut.metadata["note"] == "case 17"
    assert (astronaut.metadata["width"], astronaut.metadata["height"]) == (512, 512)
    assert astronaut.metadata["filename"].endswith("astronaut.png")
    assert astronaut.metadata["added_at"] and astronaut.metadata["added_by"]
    assert len(astronaut.pdq) == 1 and len(astronaut.pdq[0]) == 64
    # Privacy: nothing in the data folder holds the image bytes.
    raw = (flagged_folder / "astronaut.png").read_bytes()
    probe = raw[len(raw) // 2 : len(raw) // 2 + 64]
    for file in banked.data_dir.rglob("*"):
        if file.is_file():
            assert probe not in file.read_bytes(), file


def test_bank_list_counts_and_single_file_id(banked, photos):
    banked.banks.add("TERROR", [photos["chelsea"]], reference_id="cat-17")
    (bank,) = banked.banks.list()
    assert (bank.name, bank.action, bank.enabled, bank.references, bank.hashes) == ("TERROR", "block", True, 5, 5)
    assert "cat-17" in {r.id for r in banked.banks.references("TERROR")}
    banked.banks.add("TERROR", [photos["moon"]])
    assert "moon" in {r.id for r in banked.banks.references("TERROR")}


def test_duplicate_reference_id_is_refused_and_nothing_overwritten(banked, photos):
    before = {r.id: r.pdq for r in banked.banks.references("TERROR")}
    with pytest.raises(BankError, match="'astronaut' is already used"):
        banked.banks.add("TERROR", [photos["chelsea"]], reference_id="astronaut")
    assert {r.id: r.pdq for r in banked.banks.references("TERROR")} == before
    assert banked.check(photos["chelsea"]).verdict == "allow"


def test_same_id_twice_in_one_add_is_refused(engine, tmp_path, photos):
    engine.banks.create("B")
    shutil.copy(photos["astronaut"], tmp_path / "x.png")
    Image.open(photos["coffee"]).save(tmp_path / "x.jpg")
    with pytest.raises(BankError, match="would both get reference id 'x'"):
        engine.banks.add("B", [tmp_path], reference_id=None)


def test_add_is_all_or_nothing_unless_skip_invalid(engine, tmp_path, photos):
    engine.banks.create("B")
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(photos["astronaut"], folder / "good.png")
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    with pytest.raises(BankError, match=r"bad\.jpg.*nothing added"):
        engine.banks.add("B", [folder])
    assert engine.banks.get("B").references == 0
    report = engine.banks.add("B", [folder], skip_invalid=True)
    assert [r.id for r in report.added] == ["good"]
    assert "bad.jpg" in report.skipped[0].message


def _gradient(path, start=(30, 60, 160), end=(40, 70, 170)):
    """A smooth wallpaper-like gradient: PDQ quality far below 50, few or no corners."""
    ramp = np.linspace(0.0, 1.0, 512)[None, :, None]
    pixels = (np.array(start) + (np.array(end) - np.array(start)) * ramp) * np.ones((384, 1, 1))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_a_flat_reference_is_kept_and_an_exact_copy_of_it_blocks(engine, photos, tmp_path):
    """Issue #11 item 4: scikit-image's `clock` and a smooth gradient were refused, so even a
    byte-identical re-upload of them was allowed; a folder failed because of one flat file."""
    from skimage import data

    folder = tmp_path / "flagged"
    folder.mkdir()
    _gradient(folder / "gradient.png")
    Image.fromarray(data.clock()).convert("RGB").save(folder / "clock.png")
    Image.new("RGB", (200, 200), "white").save(folder / "blank.png")
    shutil.copy(photos["coffee"], folder / "coffee.png")
    engine.banks.create("B")
    report = engine.banks.add("B", [folder])
    assert sorted(r.id for r in report.added) == ["blank", "clock", "coffee", "gradient"]
    flat = {p.source.rsplit("/", 1)[-1] for p in report.warnings}
    assert {"gradient.png", "blank.png"} <= flat and "coffee.png" not in flat
    assert all("too flat for PDQ" in p.message for p in report.warnings)
    for name in ("gradient", "clock", "blank"):
        verdict = engine.check(folder / f"{name}.png")
        assert verdict.verdict == "block" and verdict.reasons[0].signal == "digest", name
    assert {r.id: r.pdq for r in engine.banks.references("B")}["gradient"] == ()  # listed, no hash to match
    other = _gradient(tmp_path / "other.png", (35, 62, 150), (45, 75, 180))  # another flat picture
    assert engine.check(other).verdict == "allow"  # the flat reference's hash is never matched
    engine.banks.remove("B", "gradient")
    assert engine.check(folder / "gradient.png").verdict == "allow"


@pytest.mark.parametrize("name", ["", "has space", "-dash-first", "@state", "x" * 65, "semi;colon"])
def test_bad_bank_names(engine, name):
    with pytest.raises(BankError, match="bank name"):
        engine.banks.create(name)


def test_bank_errors_name_the_problem(engine):
    with pytest.raises(BankError, match="action must be one of block, review"):
        engine.banks.create("X", action="delete")
    engine.banks.create("X")
    with pytest.raises(BankError, match="already exists"):
        engine.banks.create("X")
    with pytest.raises(BankError, match="no bank named 'NOPE'"):
        engine.banks.add("NOPE", [])
    with pytest.raises(BankError, match="no bank named 'NOPE'"):
        engine.banks.remove("NOPE", "x")
    with pytest.raises(BankError, match="has no reference 'ghost'"):
        engine.banks.remove("X", "ghost")


def test_remove_and_delete(banked, photos):
    assert banked.check(photos["astronaut"]).verdict == "block"
    assert banked.banks.remove("TERROR", "astronaut") == 1
    assert banked.check(photos["astronaut"]).verdict == "allow"
    assert banked.check(photos["rocket"]).verdict == "block"
    assert banked.banks.delete("TERROR") == 3
    assert banked.banks.list() == []
    with pytest.raises(StoreError, match="nothing to check against"):  # no bank left: never a silent allow
        banked.check(photos["rocket"])
    # A fresh process (new engine, rebuilt from Chroma) agrees.
    assert Engine(banked.data_dir).banks.list() == []


def test_import_txt_then_match_and_idempotent(engine, photos):
    engine.banks.create("SPAM", action="review")
    astronaut = PDQ.compute(np.asarray(Image.open(photos["astronaut"]).convert("RGB")))[0].hex
    text = "# industry list\n\n" + "".join(f"pdq {h}\n" for h in random_hashes(50)) + f"pdq {astronaut.upper()}\n"
    report = engine.banks.import_hashes("SPAM", text, source="list.txt")
    assert (report.imported, report.already_present) == (51, 0)
    verdict = engine.check(photos["astronaut"])
    assert verdict.verdict == "review" and verdict.reasons[0].reference_id == astronaut
    again = engine.banks.import_hashes("SPAM", text + f"pdq {astronaut}\n", source="list.txt")
    assert (again.imported, again.already_present) == (0, 52)
    assert engine.banks.get("SPAM").hashes == 51


def test_import_threatexchange_csv_with_metadata(engine):
    engine.banks.create("TX")
    hashes = random_hashes(3)
    text = "collab,signal_type,signal_str,category,tags\n" + "".join(
        f"Sample Collab,pdq,{h},ADVERSARIAL,tag1 tag2\n" for h in hashes
    )
    assert engine.banks.import_hashes("TX", text, source="tx.csv").imported == 3
    refs = {r.id: r for r in engine.banks.references("TX")}
    assert set(refs) == set(hashes)
    assert refs[hashes[0]].metadata["collab"] == "Sample Collab"
    assert refs[hashes[0]].metadata["tags"] == "tag1 tag2"


BAD_LINES = [
    ("pdq abc", "must be 64 hex characters, got 3"),
    ("pdq " + "g" * 64, "non-hex"),
    ("pdq " + "0" * 64, "all zeros"),
    ("tmk " + "a" * 32, "unknown signal type 'tmk'"),
    ("md5 " + "a" * 31, "md5 digest must be 32 hex characters, got 31"),
    ("video_md5 " + "z" * 32, "md5 digest has non-hex characters"),
    ("sha256 " + "a" * 32, "sha256 digest must be 64 hex characters, got 32"),
    ("pdq", "expected 'SIGNAL_TYPE HASH'"),
    ("pdq " + "a" * 64 + " " + "b" * 64, "expected 'SIGNAL_TYPE HASH' (or `moderate hash` output), got 3 fields"),
    ("pdq " + "a" * 64 + " quality=101 x.png#0", "quality must be an integer from 0 to 100, got '101'"),
]


@pytest.mark.parametrize("line, problem", BAD_LINES)
def test_bad_line_reported_with_line_number_and_nothing_imported(engine, line, problem):
    engine.banks.create("SPAM")
    good = random_hashes(2)
    text = f"pdq {good[0]}\n{line}\npdq {good[1]}\n"
    with pytest.raises(HashListError) as info:
        engine.banks.import_hashes("SPAM", text, source="hashes.txt")
    assert str(info.value).startswith("hashes.txt:2: ") and problem in str(info.value)
    assert engine.banks.get("SPAM").hashes == 0
    report = engine.banks.import_hashes("SPAM", text, source="hashes.txt", skip_invalid=True)
    assert report.imported == 2
    assert [p.source for p in report.skipped] == ["hashes.txt:2"]


def test_bad_csv_lines_are_numbered(engine):
    engine.banks.create("TX")
    h = random_hashes(1)[0]
    text = f"signal_type,signal_str\npdq,{h}\npdq,{h[:-1]}\npdq,{h},extra\n"
    with pytest.raises(HashListError) as info:
        engine.banks.import_hashes("TX", text, source="tx.csv")
    assert "tx.csv:3: " in str(info.value) and "and 1 more" in str(info.value)
    assert [line for line, _ in info.value.problems] == [3, 4]


def test_export_round_trip(engine):
    engine.banks.create("A")
    engine.banks.create("B")
    hashes = random_hashes(20)
    engine.banks.import_hashes("A", "\n".join(f"pdq {h}" for h in hashes))
    for fmt in ("csv", "txt"):
        out = io.StringIO()
        assert engine.banks.export("A", out, fmt) == 20
        report = engine.banks.import_hashes("B", out.getvalue(), fmt=None)
        assert report.imported + report.already_present == 20
    assert sorted(r.pdq[0] for r in engine.banks.references("B")) == sorted(hashes)


def test_flagged_ids_keep_their_folder(banked):
    ids = {r.id for r in banked.banks.references("TERROR")}
    assert {f"set2/{n}" for i, n in enumerate(FLAGGED) if i % 2} <= ids


def test_csv_rows_sharing_a_reference_id_become_its_hashes(engine):
    engine.banks.create("TX")
    a, b, c = random_hashes(3, seed=11)
    text = ("signal_type,signal_str,reference_id\n"
            f"pdq,{a},case-1\npdq,{b},case-1\npdq,{a},case-1\npdq,{c},case-2\n")
    report = engine.banks.import_hashes("TX", text, source="tx.csv")
    assert (report.imported, report.already_present) == (3, 1)
    refs = {r.id: sorted(r.pdq) for r in engine.banks.references("TX")}
    assert refs == {"case-1": sorted([a, b]), "case-2": [c]}
    bank = engine.banks.get("TX")
    assert (bank.references, bank.hashes) == (2, 3)
    again = engine.banks.import_hashes("TX", text, source="tx.csv")
    assert (again.imported, again.already_present) == (0, 4)


def test_csv_with_byte_order_mark_and_without_required_columns(engine):
    engine.banks.create("TX")
    h = random_hashes(1)[0]
    assert engine.banks.import_hashes("TX", f"\ufeffsignal_type,signal_str\npdq,{h}\n").imported == 1
    with pytest.raises(HashListError, match="must name signal_type and signal_str"):
        engine.banks.import_hashes("TX", f"type,hash\npdq,{h}\n", fmt="csv")


def test_caller_metadata_cannot_move_a_reference_to_another_bank(engine, photos):
    engine.banks.create("T")
    engine.banks.add("T", [photos["coffee"]], metadata={"bank": "case-17", "reference_id": "x"})
    (ref,) = engine.banks.references("T")
    assert ref.id == "coffee"
    assert engine.banks.delete("T") == 1
    engine.banks.create("T")
    assert engine.banks.get("T").references == 0


def test_rename_moves_every_signal_and_keeps_blocking(banked, photos, tmp_path):
    crop = tmp_path / "crop.jpg"
    rocket = Image.open(photos["rocket"]).convert("RGB")
    rocket.crop((0, 0, rocket.width * 7 // 10, rocket.height * 7 // 10)).save(crop, quality=90)  # keypoints only
    before = {name: len(index) for name, index in banked.catalog.current().indexes.items()}
    renamed = banked.banks.rename("TERROR", "EXTREMISM")
    assert (renamed.name, renamed.action, renamed.references) == ("EXTREMISM", "block", 4)
    fresh = Engine(banked.data_dir)  # another process: everything is in Chroma under the new name
    assert {name: len(index) for name, index in fresh.catalog.current().indexes.items()} == before
    assert [b.name for b in fresh.banks.list()] == ["EXTREMISM"]
    for path, signal in ((photos["rocket"], "digest"), (crop, "keypoints")):
        verdict = fresh.check(path)
        assert verdict.verdict == "block" and verdict.reasons[0].bank == "EXTREMISM" and verdict.reasons[0].signal == signal
    fresh.banks.create("OTHER")
    with pytest.raises(BankError, match="already exists"):
        fresh.banks.rename("OTHER", "EXTREMISM")
    with pytest.raises(BankError, match="no bank|unknown"):
        fresh.banks.rename("TERROR", "AGAIN")


def test_hashing_in_worker_processes_adds_the_same_references_and_reports_bad_files(data_dir, photos, tmp_path):
    """`bank add --workers`: a batch hashed in spawned processes gives the references one process
    gives, in the same order, and a file that does not decode is one problem, not a stopped batch."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(3)
    names = list(photos)
    for n in range(20):
        image = Image.open(photos[names[n % len(names)]]).convert("RGB")
        w, h = image.size
        x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        image.crop((x, y, x + w // 2, y + h // 2)).save(folder / f"c{n:02d}.jpg", quality=90)
    (folder / "c99.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    found = {}
    for workers in (1, 2):
        engine = Engine(data_dir / str(workers))
        engine.banks.create("MANY")
        report = engine.banks.add("MANY", [folder], workers=workers, skip_invalid=True)
        assert [p.source for p in report.skipped] == [str(folder / "c99.jpg")]
        found[workers] = [(r.id, r.pdq, [k.descriptors.tobytes() for k in r.keypoints], r.digests) for r in report.added]
    assert len(found[1]) == 20 and found[1] == found[2]


def test_a_hashing_worker_that_dies_fails_the_add_in_one_line_and_writes_nothing(data_dir, photos, tmp_path,
                                                                               monkeypatch):
    """A worker killed mid-batch (out of memory, a signal) is one clear error, and the bank is untouched."""
    import moderate.banks as banks

    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(banks.MIN_BATCH_FOR_WORKERS):
        Image.open(photos["coffee"]).convert("RGB").rotate(n).save(folder / f"c{n:02d}.jpg", quality=90)
    engine = Engine(data_dir)
    engine.banks.create("MANY")
    monkeypatch.setattr(banks._Job, "outcome", _die)  # spawned workers import this test module and die
    with pytest.raises(BankError, match="a process hashing references died; nothing added"):
        engine.banks.add("MANY", [folder], workers=2)
    assert engine.banks.get("MANY").references == 0


def _die(job):
    import os

    os._exit(9)
