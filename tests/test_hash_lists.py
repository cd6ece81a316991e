"""Hash lists as industry programs share them: PDQ rows and file digests (MD5 and SHA-256 under
python-threatexchange's, ThreatExchange's and our names) imported into banks, found by `check` and
`lookup` through the one exact-digest path reference images use, exported as pytx reads them, and
`moderate hash` output imported as is."""

from __future__ import annotations

import hashlib
import json
import io
import random
import uuid

import numpy as np
import pytest
from PIL import Image

from moderate import Engine
from moderate.errors import HashListError
from moderate.signals import LIST_TYPES

from .conftest import run_cli


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reasons(verdict) -> list[tuple]:
    return sorted((r.rule, r.reference_id, r.evidence.variant) for r in verdict.reasons)


def test_digest_rows_of_every_name_become_exact_references_found_by_check_and_lookup(engine, photos, tmp_path):
    engine.banks.create("LIST", "block")
    rows = {"astronaut": f"md5 {md5(photos['astronaut'])}", "coffee": f"photo_md5 {md5(photos['coffee']).upper()}",
            "rocket": f"video_md5 {md5(photos['rocket'])}", "motorcycle": f"video_sha256 {sha256(photos['motorcycle'])}",
            "chelsea": f"sha256 {sha256(photos['chelsea'])}"}
    report = engine.banks.import_hashes("LIST", "\n".join(rows.values()), source="list.txt")
    assert (report.imported, report.already_present, report.skipped) == (5, 0, ())
    bank = engine.banks.get("LIST")
    assert (bank.references, bank.hashes) == (5, 5)

    for name, row in rows.items():
        kind = "sha256" if "sha256" in row else "md5"
        value = row.split()[1].lower()
        assert reasons(engine.check(photos[name])) == [("digest.exact", value, kind)]
        (match,) = engine.lookup(kind, value, ["LIST"])
        assert (match.reference_id, match.action, match.metadata["imported_from"]) == (value, "block", "list.txt")
    # the same picture re-encoded is another file: no digest matches it (PDQ would, had the list one)
    recoded = tmp_path / "astronaut.jpg"
    Image.open(photos["astronaut"]).save(recoded, quality=90)
    assert engine.check(recoded).verdict == "allow"
    assert engine.check(photos["camera"]).verdict == "allow"


def test_a_listed_digest_and_a_reference_images_digest_share_one_exact_path(engine, photos):
    engine.banks.create("MIXED", "review")
    engine.banks.add("MIXED", [photos["astronaut"]], reference_id="astro")
    listed = f"md5 {md5(photos['astronaut'])}\nmd5 {md5(photos['coffee'])}\n"
    report = engine.banks.import_hashes("MIXED", listed)
    assert (report.imported, report.already_present) == (1, 1)  # the image's own MD5 is already there
    assert engine.banks.reference_ids("MIXED") == sorted(["astro", md5(photos["coffee"])])
    assert reasons(engine.check(photos["coffee"])) == [("digest.exact", md5(photos["coffee"]), "md5")]
    assert ("digest.exact", "astro") in {r[:2] for r in reasons(engine.check(photos["astronaut"]))}


@pytest.mark.usefixtures("duplicates_found")
def test_a_reference_with_pdq_and_digest_rows_is_one_reference_and_exports_both(engine, photos, tmp_path):
    engine.banks.create("TX", "block")
    pdq = engine.hash(photos["rocket"])[0].pdq[0].hex
    text = ("signal_type,signal_str,reference_id,note\n"
            f"pdq,{pdq},item-1,rocket\nvideo_md5,{md5(photos['rocket'])},item-1,rocket\n"
            f"md5,{md5(photos['coffee'])},item-2,coffee\nsha256,{sha256(photos['coffee'])},item-2,coffee\n")
    assert engine.banks.import_hashes("TX", text).imported == 4
    bank = engine.banks.get("TX")
    assert (bank.references, bank.hashes, engine.banks.reference_ids("TX")) == (2, 3, ["item-1", "item-2"])
    refs = {ref.id: ref for ref in engine.banks.references("TX")}
    assert refs["item-1"].hashes() == (("pdq", pdq), ("video_md5", md5(photos["rocket"])))
    assert refs["item-2"].hashes() == (("md5", md5(photos["coffee"])), ("sha256", sha256(photos["coffee"])))
    assert (refs["item-1"].metadata["note"], refs["item-2"].metadata["note"]) == ("rocket", "coffee")
    assert engine.banks.lookup([("TX", "item-2")])[("TX", "item-2")].metadata["note"] == "coffee"

    out = io.StringIO()
    assert engine.banks.export("TX", out, "txt") == 4
    assert sorted(out.getvalue().splitlines()) == sorted([f"pdq {pdq}", f"video_md5 {md5(photos['rocket'])}",
                                                          f"md5 {md5(photos['coffee'])}", f"sha256 {sha256(photos['coffee'])}"])
    csv_out = io.StringIO()
    engine.banks.export("TX", csv_out, "csv")
    engine.banks.create("COPY", "block")
    assert engine.banks.import_hashes("COPY", csv_out.getvalue()).imported == 4
    copied = {ref.id: ref.hashes() for ref in engine.banks.references("COPY")}
    assert copied == {ref.id: ref.hashes() for ref in refs.values()}

    # a later PDQ hash for a reference that held digests only: listed once, by the PDQ hash now
    coffee = engine.hash(photos["coffee"])[0].pdq[0].hex
    assert engine.banks.import_hashes("TX", f"signal_type,signal_str,reference_id\npdq,{coffee},item-2\n").imported == 1
    for view in (engine, fresh(engine)):
        assert (view.banks.get("TX").references, view.banks.reference_ids("TX")) == (2, ["item-1", "item-2"])
        (item2,) = [ref for ref in view.banks.references("TX") if ref.id == "item-2"]
        assert item2.hashes() == (("pdq", coffee), ("md5", md5(photos["coffee"])), ("sha256", sha256(photos["coffee"])))


def test_digest_only_references_are_removed_renamed_and_deleted_like_others(engine, photos):
    engine.banks.create("GONE", "block")
    engine.banks.import_hashes("GONE", f"md5 {md5(photos['coffee'])}\nmd5 {md5(photos['rocket'])}\n")
    assert engine.banks.remove("GONE", md5(photos["coffee"])) == 0  # no PDQ hash went
    assert engine.check(photos["coffee"]).verdict == "allow"
    assert engine.banks.reference_ids("GONE") == [md5(photos["rocket"])]
    with pytest.raises(Exception, match="has no reference"):
        engine.banks.remove("GONE", md5(photos["coffee"]))
    engine.banks.rename("GONE", "KEPT")
    assert reasons(engine.check(photos["rocket"])) == [("digest.exact", md5(photos["rocket"]), "md5")]
    assert engine.banks.get("KEPT").references == 1
    engine.banks.create("AGAIN", "block")
    engine.banks.import_hashes("AGAIN", f"sha256 {sha256(photos['coffee'])}\n")
    engine.banks.delete("KEPT")
    assert engine.check(photos["rocket"]).verdict == "allow"
    # a fresh process rebuilds the index from Chroma and lists the same references
    rebuilt = Engine(engine.data_dir)
    rebuilt.catalog.dir.joinpath("snapshot.json").unlink()
    assert rebuilt.banks.get("AGAIN").references == 1
    assert reasons(rebuilt.check(photos["coffee"])) == [("digest.exact", sha256(photos["coffee"]), "sha256")]


def test_moderate_hash_output_imports_as_is(data_dir, photos, tmp_path):
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(flat)  # PDQ quality 0: listed, never matched
    listed = run_cli("hash", str(photos["astronaut"]), str(photos["coffee"]), str(flat), data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    dihedral = run_cli("hash", "--dihedral", str(photos["rocket"]), data_dir=data_dir)
    (tmp_path / "list.txt").write_bytes(listed.stdout + dihedral.stdout)
    assert run_cli("bank", "create", "HASHED", data_dir=data_dir).returncode == 0
    imported = run_cli("bank", "import", "HASHED", str(tmp_path / "list.txt"), data_dir=data_dir)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.decode().strip() == "imported 11 hashes into HASHED; 0 already present"
    assert imported.stderr.decode() == (f"warning: {tmp_path / 'list.txt'}:3: PDQ quality 0 is below 50: "
                                        "listed, but never matched (too flat)\n")
    for name in ("astronaut", "coffee", "rocket"):
        assert run_cli("check", str(photos[name]), data_dir=data_dir).returncode == 4
    rotated = tmp_path / "rocket90.png"
    Image.open(photos["rocket"]).rotate(90, expand=True).save(rotated)
    assert run_cli("check", str(rotated), data_dir=data_dir).returncode == 4  # the dihedral rows
    other_flat = tmp_path / "other-flat.png"
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(other_flat)
    assert run_cli("check", str(other_flat), data_dir=data_dir).returncode == 0


# -- python-threatexchange ------------------------------------------------------------------------


def pytx_types() -> dict:
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal
    from threatexchange.signal_type.sha256 import VideoSHA256Signal

    return {cls.get_name(): cls for cls in (PdqSignal, VideoMD5Signal, VideoSHA256Signal)}


def test_list_types_validate_as_python_threatexchange_does():
    """Every pytx signal type a bank takes is one of ours; a value pytx accepts we accept with the
    same canonical form, and what we accept pytx accepts, except the all-zeros PDQ hash (a blank
    image's), which we refuse on purpose."""
    rng = random.Random(13)
    for name, cls in pytx_types().items():
        assert name in LIST_TYPES
        signal = LIST_TYPES[name]
        good = [*cls.get_examples(), *(cls.get_random_signal() for _ in range(50))]
        for value in good:
            assert signal.parse(value, name) == cls.validate_signal_str(value)
        width = len(good[0])
        candidates = ["", "0" * width, "g" * width, "a" * (width - 1), "a" * (width + 1), "A" * width, " " + "b" * width,
                      *("".join(rng.choice("0123456789abcdefxyz") for _ in range(width)) for _ in range(50))]
        for value in candidates:
            try:
                ours = signal.parse(value, name)
            except ValueError:
                ours = None
            try:
                theirs = cls.validate_signal_str(ours if ours is not None else value)
            except ValueError:
                theirs = None
            if name == "pdq" and value == "0" * width:
                assert ours is None and theirs == value
            else:
                assert ours == theirs, (name, value)


def test_pytx_decides_what_a_list_row_or_a_lookup_may_carry(engine, monkeypatch):
    """Validation is pytx's, not a copy of it: a value its signal type refuses is refused, in a
    hash list and in a lookup alike."""
    from threatexchange.signal_type.md5 import VideoMD5Signal
    from threatexchange.signal_type.pdq.signal import PdqSignal

    vetoed_md5, vetoed_pdq = "ab" * 16, "cd" * 32

    def veto(original, vetoed):
        def validate(value):
            if value == vetoed:
                raise ValueError("vetoed")
            return original(value)
        return staticmethod(validate)

    monkeypatch.setattr(VideoMD5Signal, "validate_signal_str", veto(VideoMD5Signal.validate_signal_str, vetoed_md5))
    monkeypatch.setattr(PdqSignal, "validate_signal_str", veto(PdqSignal.validate_signal_str, vetoed_pdq))
    engine.banks.create("V", "block")
    with pytest.raises(HashListError) as refused:
        engine.banks.import_hashes("V", f"photo_md5 {vetoed_md5.upper()}\npdq {vetoed_pdq}\nmd5 {'ef' * 16}\n")
    assert refused.value.problems == [(1, "md5 digest is refused by python-threatexchange (vetoed)"),
                                      (2, "pdq hash is refused by python-threatexchange (vetoed)")]
    from moderate.errors import InvalidLookup
    with pytest.raises(InvalidLookup, match="is refused by python-threatexchange"):
        engine.lookup("md5", vetoed_md5)


def test_export_is_read_by_pytxs_file_exchange(engine, photos, tmp_path):
    types = pytx_types()
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI

    engine.banks.create("OUT", "block")
    engine.banks.add("OUT", [photos["astronaut"], photos["coffee"]])
    engine.banks.import_hashes("OUT", f"video_md5 {md5(photos['rocket'])}\n")
    path = tmp_path / "exported.txt"
    with path.open("w") as out:
        written = engine.banks.export("OUT", out, "txt")
    api = LocalFileSignalExchangeAPI(FileCollaborationConfig(name="out", api=LocalFileSignalExchangeAPI.get_name(),
                                                             enabled=True, filename=str(path)))
    (delta,) = api.fetch_iter(list(types.values()), None)
    converted = LocalFileSignalExchangeAPI.naive_convert_to_signal_type(list(types.values()), api.collab, delta.updates)
    got = {(cls.get_name(), value) for cls, values in converted.items() for value in values}
    assert len(got) == written == len(delta.updates)
    assert ("video_md5", md5(photos["rocket"])) in got
    assert {value for kind, value in got if kind == "pdq"} == {h for ref in engine.banks.references("OUT") for h in ref.pdq}


def test_import_endpoint_reports_unmatchable_rows_as_warnings(engine, photos):
    engine.banks.create("W", "block")
    text = "pdq " + "f0" * 32 + " quality=12 x.png#0\nmd5 " + md5(photos["coffee"]) + "\n"
    report = engine.banks.import_hashes("W", text, source="w.txt")
    assert report.imported == 2
    assert [(p.source, p.message) for p in report.warnings] == [
        ("w.txt:1", "PDQ quality 12 is below 50: listed, but never matched (too flat)")]
    assert engine.lookup("pdq", "f0" * 32, ["W"], max_distance=0) == []  # listed, never matched
    assert engine.banks.reference_ids("W") == sorted(["f0" * 32, md5(photos["coffee"])])


# -- packs: imports kept as a few Chroma records ---------------------------------------------------


def random_list(n: int, seed: int) -> list[str]:
    codes = np.random.default_rng(seed).integers(0, 256, size=(n, 32), dtype=np.uint8)
    codes[:, 0] |= 1
    return [c.tobytes().hex() for c in codes]


def fresh(engine: Engine) -> Engine:
    """Another process's view, its index rebuilt from what Chroma holds."""
    again = Engine(engine.data_dir)
    again.catalog.dir.joinpath("snapshot.json").unlink()
    return again


@pytest.fixture(params=["sorted", "looked up"])
def duplicates_found(request, monkeypatch):
    """An import finds what the bank holds either way: the bank's hashes sorted once, or each row
    looked up (a small chunk in a big bank: substring tables, which small banks get here too)."""
    import moderate.banks
    from moderate.signals import pdq

    monkeypatch.setattr(pdq, "MIH_FROM", 1)
    per_code = 0 if request.param == "sorted" else 1 << 30
    monkeypatch.setattr(moderate.banks._Held, "LOOKUPS_PER_CODE", per_code)
    monkeypatch.setattr(pdq, "LOOKUPS_PER_CODE", per_code)  # `PdqIndex.positions_of`, which the rows' holders ask
    lookups = []
    original = moderate.banks._Held._looked_up
    monkeypatch.setattr(moderate.banks._Held, "_looked_up", lambda *args: lookups.append(1) or original(*args))
    yield
    assert bool(lookups) == (request.param == "looked up")  # the path asked for was taken (an empty bank sorts)


def test_a_reference_split_across_chunks_is_one_reference(engine, photos, monkeypatch):
    import moderate.banks

    monkeypatch.setattr(moderate.banks, "IMPORT_ROWS", 2)
    engine.banks.create("SPLIT", "block")
    rocket = engine.hash(photos["rocket"])[0].pdq[0].hex
    text = ("signal_type,signal_str,reference_id\n" f"md5,{md5(photos['rocket'])},R\n" f"sha256,{sha256(photos['rocket'])},R\n"
            f"pdq,{rocket},R\n" f"md5,{md5(photos['coffee'])},C\n")
    assert engine.banks.import_hashes("SPLIT", text).imported == 4
    for view in (engine, fresh(engine)):
        assert (view.banks.get("SPLIT").references, view.banks.reference_ids("SPLIT")) == (2, ["C", "R"])
        assert view.check(photos["rocket"]).verdict == view.check(photos["coffee"]).verdict == "block"


def test_a_bad_line_late_in_a_long_list_imports_nothing_and_names_every_bad_line(engine, monkeypatch):
    import moderate.banks

    monkeypatch.setattr(moderate.banks, "IMPORT_ROWS", 1000)  # the list spans five chunks
    engine.banks.create("LONG", "block")
    lines = [f"pdq {hx}" for hx in random_list(5000, 1)]
    lines[3499], lines[4799] = "pdq 1234", "md5 xyz"
    with pytest.raises(HashListError) as info:
        engine.banks.import_hashes("LONG", "\n".join(lines), source="long.txt")
    assert [line for line, _ in info.value.problems] == [3500, 4800]
    assert str(info.value).startswith("long.txt:3500: pdq hash must be 64 hex characters, got 4 (and 1 more bad lines)")
    assert engine.banks.get("LONG").hashes == 0
    assert fresh(engine).banks.get("LONG").hashes == 0  # the chunks written before the bad line were taken back
    report = engine.banks.import_hashes("LONG", "\n".join(lines), source="long.txt", skip_invalid=True)
    assert (report.imported, len(report.skipped)) == (4998, 2)
    assert fresh(engine).banks.get("LONG").hashes == 4998


def test_an_import_taken_back_restores_the_packs_it_changed(engine, photos, monkeypatch):
    """A digest-only reference given a PDQ hash in an import that is then taken back (a bad line in
    a later chunk) is listed by its digests again, in Chroma too, not left unlisted but matching."""
    import moderate.banks

    monkeypatch.setattr(moderate.banks, "IMPORT_ROWS", 3)
    engine.banks.create("RB", "block")
    engine.banks.import_hashes("RB", f"signal_type,signal_str,reference_id\nmd5,{md5(photos['rocket'])},r1\n")
    rocket = engine.hash(photos["rocket"])[0].pdq[0].hex
    rows = [f"pdq,{rocket},r1"] + [f"pdq,{hx}," for hx in random_list(5, 8)] + ["pdq,nothex,bad"]
    with pytest.raises(HashListError):
        engine.banks.import_hashes("RB", "signal_type,signal_str,reference_id\n" + "\n".join(rows) + "\n")
    for view in (engine, fresh(engine)):
        assert (view.banks.get("RB").references, view.banks.reference_ids("RB")) == (1, ["r1"])
        [ref] = view.banks.references("RB")
        assert ref.pdq == () and ref.listed == (("md5", md5(photos["rocket"])),)
        assert view.check(photos["rocket"]).verdict == "block"
    assert engine.banks.remove("RB", "r1") is not None and fresh(engine).check(photos["rocket"]).verdict == "allow"


def test_removing_one_packed_reference_rewrites_its_pack_only(engine, photos):
    engine.banks.create("P", "block")
    hashes = {name: engine.hash(photos[name])[0].pdq[0].hex for name in ("astronaut", "coffee", "rocket")}
    text = "signal_type,signal_str,reference_id\n" + "".join(f"pdq,{hx},{name}\n" for name, hx in hashes.items())
    engine.banks.import_hashes("P", text + f"md5,{md5(photos['coffee'])},coffee\n")
    filler = engine.banks.import_hashes("P", "".join(f"pdq {hx}\n" for hx in random_list(2500, 2)))
    assert filler.imported == 2500
    assert engine.banks.remove("P", "coffee") == 1
    for view in (engine, fresh(engine)):
        assert view.check(photos["coffee"]).verdict == "allow"
        assert view.check(photos["astronaut"]).verdict == view.check(photos["rocket"]).verdict == "block"
        assert (view.banks.get("P").references, view.banks.get("P").hashes) == (2502, 2502)
        assert "coffee" not in view.banks.reference_ids("P")
    assert engine.banks.lookup([("P", "rocket")])[("P", "rocket")].pdq == (hashes["rocket"],)
    engine.banks.import_hashes("P", text)  # back, under the same id: numbered as a new reference
    assert reasons(fresh(engine).check(photos["coffee"]))[0][:2] == ("pdq.distance<=31", "coffee")


def test_a_full_page_of_packs_goes_to_a_chroma_server_and_another_host_sees_it(chroma_server, tmp_path, photos):
    """250,000 rows are one Chroma call (250 packs, ~25 MB): a real `chroma run` takes it, and a
    second host deriving its own index from the server finds the listed hashes."""
    bank = f"L{uuid.uuid4().hex[:8]}"
    writer = Engine(tmp_path / "a", chroma_url=chroma_server)
    writer.banks.create(bank, "block")
    hashes = random_list(250_000, 3)
    text = "".join(f"pdq {hx}\n" for hx in hashes) + f"md5 {md5(photos['coffee'])}\n"
    assert writer.banks.import_hashes(bank, text).imported == 250_001
    reader = Engine(tmp_path / "b", chroma_url=chroma_server)
    assert reader.banks.get(bank).hashes == 250_001
    assert reader.lookup("pdq", hashes[123_456], [bank], max_distance=0)[0].reference_id == hashes[123_456]
    assert reasons(reader.check(photos["coffee"])) == [("digest.exact", md5(photos["coffee"]), "md5")]


def test_a_reference_whose_id_extends_another_is_not_taken_with_it(engine, photos):
    """Reference ids may hold "::": removing `a` leaves `a::1` and `a::1::0` (list rows and
    image references alike)."""
    engine.banks.create("IDS", "block")
    rows = {"a": "astronaut", "a::1": "coffee", "a::1::0": "rocket"}
    engine.banks.import_hashes("IDS", "signal_type,signal_str,reference_id\n" + "".join(
        f"md5,{md5(photos[name])},{ref}\n" for ref, name in rows.items()))
    engine.banks.add("IDS", [photos["chelsea"]], reference_id="b")
    engine.banks.add("IDS", [photos["camera"]], reference_id="b::2")
    engine.banks.remove("IDS", "a")
    engine.banks.remove("IDS", "b")
    for view in (engine, fresh(engine)):
        assert view.banks.reference_ids("IDS") == ["a::1", "a::1::0", "b::2"]
        assert view.check(photos["astronaut"]).verdict == view.check(photos["chelsea"]).verdict == "allow"
        for name in ("coffee", "rocket", "camera"):
            assert view.check(photos[name]).verdict == "block", name


@pytest.mark.usefixtures("duplicates_found")
def test_small_imports_into_a_bank_find_what_it_holds_and_what_they_added(engine, photos, monkeypatch):
    """Duplicates across imports and across chunks of one import, named and unnamed, PDQ (usable
    and flat) and digests: the same counts whichever way they are found."""
    import moderate.banks

    engine.banks.create("S", "block")
    hexes = random_list(40, 21)
    engine.banks.import_hashes("S", "".join(f"pdq {hx}\n" for hx in hexes[:30]) + f"md5 {md5(photos['coffee'])}\n")
    monkeypatch.setattr(moderate.banks, "IMPORT_ROWS", 3)  # rows added by one chunk are held for the next
    text = ("signal_type,signal_str,reference_id,quality\n"
            f"pdq,{hexes[0]},,\n"            # held: unnamed, usable
            f"pdq,{hexes[1]},,20\n"          # held: a flat copy of a usable hash adds nothing
            f"pdq,{hexes[30]},,20\n"         # new, flat
            f"pdq,{hexes[30]},,\n"           # new: a usable copy of the flat one just added
            f"pdq,{hexes[31]},,\n"           # new
            f"pdq,{hexes[31]},,\n"           # held: added two rows up, in the chunk before
            f"md5,{md5(photos['coffee'])},,\n"   # held digest
            f"photo_md5,{md5(photos['rocket'])},,\n"  # new digest
            f"video_md5,{md5(photos['rocket'])},,\n"  # held: the same MD5 under another name
            f"pdq,{hexes[2]},named,\n")      # held by another reference: a named row is its own
    report = engine.banks.import_hashes("S", text)
    assert (report.imported, report.already_present) == (5, 5)
    again = engine.banks.import_hashes("S", text)
    assert (again.imported, again.already_present) == (0, 10)
    ids = engine.banks.reference_ids("S")
    assert engine.check(photos["rocket"]).verdict == "block" and fresh(engine).banks.get("S").references == len(ids) == 35, ids


@pytest.mark.usefixtures("duplicates_found")
def test_a_flat_copy_of_a_hash_never_hides_a_usable_one(engine, photos):
    engine.banks.create("Q", "block")
    hx = engine.hash(photos["rocket"])[0].pdq[0].hex
    first = engine.banks.import_hashes("Q", f"pdq {hx} quality=49 x.png#0\npdq {hx}\npdq {hx} quality=10\n")
    assert (first.imported, first.already_present) == (2, 1)  # the usable copy is kept; the second flat one is not
    assert engine.check(photos["rocket"]).verdict == "block"
    engine.banks.create("Q2", "block")
    engine.banks.import_hashes("Q2", f"pdq {hx} quality=49\n")
    assert engine.banks.import_hashes("Q2", f"pdq {hx}\n").imported == 1  # a later import too
    assert engine.banks.import_hashes("Q2", f"pdq {hx}\npdq {hx} quality=3\n").imported == 0
    engine.banks.delete("Q")
    assert reasons(fresh(engine).check(photos["rocket"]))[0][:2] == ("pdq.distance<=31", hx)


def test_one_file_under_two_entries_is_two_references(engine, photos):
    """Two entries may list the same file: each is a reference of its own (removing one leaves the
    other), while the same row again, or an unnamed row of a hash the bank holds, adds nothing."""
    engine.banks.create("TWO", "block")
    rows = f"signal_type,signal_str,reference_id\nmd5,{md5(photos['coffee'])},r1\nmd5,{md5(photos['coffee'])},r2\n"
    assert engine.banks.import_hashes("TWO", rows).imported == 2
    again = engine.banks.import_hashes("TWO", rows + f"md5,{md5(photos['coffee'])},\n")
    assert (again.imported, again.already_present) == (0, 3)
    engine.banks.remove("TWO", "r1")
    for view in (engine, fresh(engine)):
        assert view.banks.reference_ids("TWO") == ["r2"]
        assert reasons(view.check(photos["coffee"])) == [("digest.exact", "r2", "md5")]


def test_bank_rename_on_the_command_line(data_dir, photos, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(f"md5 {md5(photos['coffee'])}\n")
    assert run_cli("bank", "create", "OLD", data_dir=data_dir).returncode == 0
    assert run_cli("bank", "import", "OLD", str(listed), data_dir=data_dir).returncode == 0
    renamed = run_cli("bank", "rename", "OLD", "NEW", data_dir=data_dir)
    assert (renamed.returncode, renamed.stdout.decode()) == (0, "renamed bank OLD to NEW\n")
    checked = json.loads(run_cli("check", str(photos["coffee"]), "--json", data_dir=data_dir).stdout)
    assert [(r["bank"], r["rule"]) for r in checked["reasons"]] == [("NEW", "digest.exact")]
    missing = run_cli("bank", "rename", "OLD", "OTHER", data_dir=data_dir)
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1 and "no bank named 'OLD'" in missing.stderr.decode()


@pytest.mark.parametrize("extra", [0, 30])  # a few references (masked one prefix at a time), or many (ids read once)
def test_removing_many_references_in_one_write(engine, photos, extra):
    engine.banks.create("M", "block")
    filler = random_list(40, 5)
    engine.banks.import_hashes("M", "".join(f"pdq {hx}\n" for hx in filler))
    engine.banks.import_hashes("M", "signal_type,signal_str,reference_id\n"
                               f"md5,{md5(photos['astronaut'])},a\nmd5,{md5(photos['coffee'])},a::1\n")
    engine.banks.add("M", [photos["chelsea"]], reference_id="img")
    gone = ["a", "img", "not-there", *filler[:extra]]
    assert engine.banks.remove_all("M", gone) == 1 + extra  # the image's whole-picture hash and the filler's
    kept = sorted(["a::1", *filler[extra:]])
    for view in (engine, fresh(engine)):
        assert view.banks.reference_ids("M") == kept
        assert view.check(photos["astronaut"]).verdict == view.check(photos["chelsea"]).verdict == "allow"
        assert view.check(photos["coffee"]).verdict == "block"


# -- hashes too flat to match ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_flat_hashes_survive_export_and_import_still_unmatched(engine, photos, tmp_path, fmt):
    """A PDQ hash under quality 50, from a list or from a flat reference image, is exported with its
    quality; importing the export lists it again, and it still never matches."""
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(flat)
    flat_hex = engine.hash(flat)[0].pdq[0].hex
    usable = engine.hash(photos["rocket"])[0].pdq[0].hex
    engine.banks.create("F", "block")
    engine.banks.add("F", [flat], reference_id="flat-image")
    engine.banks.import_hashes("F", f"pdq {'f0' * 32} quality=12\npdq {usable}\n")
    refs = {ref.id: ref for ref in engine.banks.references("F")}
    assert refs["flat-image"].flat == ((flat_hex, 0),) and refs["flat-image"].pdq == ()
    assert refs["f0" * 32].flat == (("f0" * 32, 12),) and refs[usable].pdq == (usable,)
    out = io.StringIO()
    assert engine.banks.export("F", out, fmt) == 3

    engine.banks.create("G", "block")
    again = engine.banks.import_hashes("G", out.getvalue(), source=f"export.{fmt}")
    assert again.imported == 3 and len(again.warnings) == 2  # both flat rows: listed, never matched
    assert sorted((ref.pdq, ref.flat) for ref in engine.banks.references("G")) == sorted(
        [((), ((flat_hex, 0),)), ((), (("f0" * 32, 12),)), ((usable,), ())])
    assert engine.lookup("pdq", flat_hex, ["G"], max_distance=0) == []
    assert engine.lookup("pdq", "f0" * 32, ["G"], max_distance=0) == []
    assert [m.bank for m in engine.lookup("pdq", usable, ["G"], max_distance=0)] == ["G"]


def test_csv_quality_column_is_read_and_checked(engine):
    engine.banks.create("Q", "block")
    text = ("signal_type,signal_str,quality\n"
            f"pdq,{'e1' * 32},20\n"
            f"pdq,{'d2' * 32},\n"
            f"pdq,{'c3' * 32},high\n"
            f"pdq,{'b4' * 32},101\n")
    with pytest.raises(HashListError) as refused:
        engine.banks.import_hashes("Q", text, source="q.csv")
    assert refused.value.problems == [
        (4, "quality must be an integer from 0 to 100, got 'high'"),
        (5, "quality must be an integer from 0 to 100, got '101'")]
    report = engine.banks.import_hashes("Q", text, source="q.csv", skip_invalid=True)
    assert report.imported == 2 and [w.source for w in report.warnings] == ["q.csv:2"]
    refs = {ref.id: ref for ref in engine.banks.references("Q")}
    assert refs["e1" * 32].flat == (("e1" * 32, 20),) and refs["d2" * 32].pdq == ("d2" * 32,)


def test_a_quote_left_open_costs_its_own_line_only(engine):
    """A quote opened and never closed (or closed by a stray quote lines later) made the csv module
    read the following lines into one field: silently, as a note, or as one unreadable row. Now
    that row's first line is the bad one, named, and the lines it took are read as rows again."""
    engine.banks.create("U", "block")
    later = random_list(5, 3)
    cases = {  # CSV body lines -> (bad line, its problem)
        "never closed": ([f"pdq,{'a5' * 32},ok", f"pdq,{'b6' * 32},\"unclosed"] + [f"pdq,{h},x" for h in later],
                         (3, "unreadable CSV row: unexpected end of data (a quote opened here runs on to line 8; "
                             "the lines after it are read on their own)")),
        "closed by a stray quote": ([f"pdq,{'a5' * 32},ok", f"pdq,{'b6' * 32},\"flyer", f"pdq,{later[0]},poster 24x36\""]
                                    + [f"pdq,{h},x" for h in later[1:]],
                                    (3, "a quoted field holds what look like rows (a quote opened here runs on to "
                                        "line 4; the lines after it are read on their own)")),
    }
    for bank, (name, (rows, problem)) in enumerate(cases.items()):
        text = "signal_type,signal_str,note\n" + "\n".join(rows) + "\n"
        with pytest.raises(HashListError) as refused:  # without --skip-invalid, nothing is imported
            engine.banks.import_hashes("U", text, source="u.csv")
        assert refused.value.problems == [problem], name
        engine.banks.create(f"U{bank}", "block")
        report = engine.banks.import_hashes(f"U{bank}", text, source="u.csv", skip_invalid=True)
        assert [p.source for p in report.skipped] == ["u.csv:3"] and report.imported == 6, name
        assert sorted(engine.banks.reference_ids(f"U{bank}")) == sorted(["a5" * 32, *later]), name


def test_a_quoted_note_across_lines_or_with_other_line_breaks_round_trips(engine):
    """Only \n ends a line: a note may hold \r, form feed, U+2028 or NEL, quoted or not, and a
    quoted note may span lines; export quotes what needs it, and the line numbers are wc -l's."""
    engine.banks.create("N", "block")
    hexes = random_list(4, 5)
    notes = ["para one\u2028para two", "form\ffeed, nel\x85inside", "two\nlines", "cr\ronly"]
    text = ("signal_type,signal_str,reference_id,note\n"
            + "".join(f'pdq,{hx},r{i},"{note}"\n' for i, (hx, note) in enumerate(zip(hexes, notes)))
            + "pdq,nothex,bad,x\n")
    with pytest.raises(HashListError) as refused:
        engine.banks.import_hashes("N", text, source="n.csv")
    assert [line for line, _ in refused.value.problems] == [7]  # the note with a line break takes two lines
    assert engine.banks.import_hashes("N", text, skip_invalid=True).imported == 4
    out = io.StringIO()
    engine.banks.export("N", out, "csv")
    engine.banks.create("N2", "block")
    assert engine.banks.import_hashes("N2", out.getvalue()).imported == 4
    assert {r.id: r.metadata.get("note") for r in engine.banks.references("N2")} == {
        f"r{i}": note for i, note in enumerate(notes)}


def test_header_naming_a_column_twice_and_an_empty_quality_are_refused(engine):
    engine.banks.create("H", "block")
    with pytest.raises(HashListError) as refused:
        engine.banks.import_hashes("H", f"signal_type,signal_str,note,signal_str\npdq,{'a1' * 32},x,{'b2' * 32}\n")
    assert refused.value.problems == [(1, "CSV header names signal_str more than once")]
    with pytest.raises(HashListError) as refused:
        engine.banks.import_hashes("H", f"pdq {'a1' * 32} quality=\n")
    assert refused.value.problems == [(1, "quality must be an integer from 0 to 100, got ''")]
