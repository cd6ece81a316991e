"""`moderate dedup`: groups known duplicates, picks the keeper, and never touches it."""

from __future__ import annotations

import csv
import io
import json
import os

from PIL import Image, ImageEnhance

from moderate.engine import dedup

from .conftest import run_cli


def _library(tmp_path, photos):
    """Originals, smaller and re-encoded copies, a byte-identical copy, and unrelated photos."""
    folder = tmp_path / "library"
    (folder / "trip").mkdir(parents=True)
    rocket = Image.open(photos["rocket"]).convert("RGB")
    rocket.save(folder / "rocket.png")
    rocket.resize((320, 213)).save(folder / "trip" / "rocket-small.jpg", quality=80)
    ImageEnhance.Brightness(rocket).enhance(1.15).save(folder / "trip" / "rocket-bright.jpg", quality=70)
    coffee = Image.open(photos["coffee"]).convert("RGB")
    coffee.save(folder / "coffee.jpg", quality=90)
    (folder / "trip" / "coffee-copy.jpg").write_bytes((folder / "coffee.jpg").read_bytes())
    os.utime(folder / "coffee.jpg", (1_600_000_000, 1_600_000_000))  # the older of two identical files
    for name in ("chelsea", "moon", "hubble"):
        Image.open(photos[name]).convert("RGB").save(folder / f"{name}.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_groups_known_duplicates_and_picks_keepers(tmp_path, photos):
    folder = _library(tmp_path, photos)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    found = dedup.scan(files)
    assert [os.path.basename(p) for p, _ in found.skipped] == ["notes.txt"]
    groups = {os.path.basename(g.keeper.path): g for g in dedup.group(found)}
    assert set(groups) == {"rocket.png", "coffee.jpg"}  # largest resolution; then the oldest of equals
    rocket = {os.path.basename(d.item.path): d for d in groups["rocket.png"].duplicates}
    assert set(rocket) == {"rocket-small.jpg", "rocket-bright.jpg"} and all(d.signal == "pdq" for d in rocket.values())
    (copy,) = groups["coffee.jpg"].duplicates
    assert copy.signal == "exact" and copy.distance == 0
    newest_first = {os.path.basename(g.keeper.path) for g in dedup.group(found, prefer=("newest",))}
    assert "coffee-copy.jpg" in newest_first


def test_command_reports_moves_and_deletes_never_the_keeper(tmp_path, photos):
    folder = _library(tmp_path, photos)
    report = run_cli("dedup", str(folder), "--json")
    assert report.returncode == 0, report.stderr
    groups = [json.loads(line) for line in report.stdout.splitlines()]
    assert len(groups) == 2 and sum(len(g["duplicates"]) for g in groups) == 3
    assert sum(1 for p in folder.rglob("*.jpg")) == 7  # reporting touches nothing

    table = list(csv.reader(io.StringIO(run_cli("dedup", str(folder), "--csv").stdout.decode())))
    assert table[0][:3] == ["group", "role", "path"] and sum(row[1] == "keep" for row in table[1:]) == 2

    refused = run_cli("dedup", str(folder), "--delete", stdin=b"n\n")
    assert refused.returncode == 1 and (folder / "trip" / "coffee-copy.jpg").exists()

    aside = tmp_path / "aside"
    moved = run_cli("dedup", str(folder), "--move-to", str(aside))
    assert moved.returncode == 0, moved.stderr
    assert (aside / "trip" / "rocket-small.jpg").exists() and (aside / "trip" / "coffee-copy.jpg").exists()
    assert (folder / "rocket.png").exists() and (folder / "coffee.jpg").exists()

    (folder / "trip" / "again.jpg").write_bytes((folder / "coffee.jpg").read_bytes())
    deleted = run_cli("dedup", str(folder), "--delete", "--yes")
    assert deleted.returncode == 0 and not (folder / "trip" / "again.jpg").exists()
    assert (folder / "coffee.jpg").exists() and (folder / "chelsea.jpg").exists()
    bad = run_cli("dedup", str(folder), "--prefer", "prettiest")
    assert bad.returncode == 1 and b"--prefer 'prettiest'" in bad.stderr


def test_embedding_groups_what_pdq_alone_does_not(tmp_path, photos):
    folder = tmp_path / "lib"
    folder.mkdir()
    coffee = Image.open(photos["coffee"]).convert("RGB")
    coffee.save(folder / "a.jpg", quality=90)
    coffee.crop((60, 40, 560, 380)).save(folder / "b.jpg", quality=90)  # a crop: PDQ moves far
    Image.open(photos["moon"]).convert("RGB").save(folder / "c.jpg")
    both = run_cli("dedup", str(folder), "--signal", "both", "--min-similarity", "0.8", "--json")
    assert both.returncode == 0, both.stderr
    (group,) = [json.loads(line) for line in both.stdout.splitlines()]
    assert group["keeper"]["path"].endswith("a.jpg") and group["duplicates"][0]["signal"] == "embedding"
    assert run_cli("dedup", str(folder), "--json").stdout.strip() == b""


def test_worker_processes_find_the_same_groups(tmp_path, photos):
    folder = tmp_path / "many"
    folder.mkdir()
    names = ["rocket", "coffee", "chelsea", "moon", "hubble", "astronaut", "camera"]
    for i in range(70):  # 10 sizes of 7 photos: 7 groups of 10
        image = Image.open(photos[names[i % 7]]).convert("RGB")
        image.resize((image.width * (6 + i // 7) // 16, image.height * (6 + i // 7) // 16)).save(folder / f"{i:03d}.jpg")
    files = sorted(folder.iterdir())
    alone = dedup.group(dedup.scan(files, workers=1))
    together = dedup.group(dedup.scan(files, workers=2))
    assert len(alone) == 7 and all(len(g.duplicates) == 9 for g in alone)
    assert [(g.keeper.path, [d.item.path for d in g.duplicates]) for g in alone] == \
           [(g.keeper.path, [d.item.path for d in g.duplicates]) for g in together]


def test_html_report_shows_each_keeper_beside_its_duplicates(tmp_path, photos):
    import base64
    import html
    import re

    folder = _library(tmp_path, photos)
    odd = folder / "trip" / 'rocket <b>&"odd"\'.jpg'  # a file name that is markup if not escaped
    Image.open(folder / "rocket.png").resize((400, 266)).save(odd, quality=85)
    page_file = tmp_path / "report.html"
    out = run_cli("dedup", str(folder), "--json", "--html", str(page_file))
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()]  # --json on stdout is untouched
    page = page_file.read_text(encoding="utf-8")
    groups = [json.loads(line) for line in out.stdout.splitlines()]
    sections = page.split("<section>")[1:]
    assert len(sections) == len(groups) == 2
    for group, section in zip(groups, sections):
        keep, *duplicates = re.findall(r'<figure class="(keep|duplicate)">.*?<span class="path">(.*?)</span>', section)
        assert keep == ("keep", html.escape(group["keeper"]["path"]))
        assert sorted(duplicates) == sorted(("duplicate", html.escape(d["path"])) for d in group["duplicates"])
    assert html.escape(str(odd)) in page and "<b>&" not in page  # escaped, never raw
    pictures = re.findall(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pictures) == sum(1 + len(g["duplicates"]) for g in groups)
    thumb = Image.open(io.BytesIO(base64.b64decode(pictures[0])))
    assert thumb.format == "JPEG" and max(thumb.size) <= dedup.THUMBNAIL
    assert not re.search(r'(src|href)="(?!data:)', page) and "url(" not in page  # self-contained: nothing fetched

    # written before acting, so the page still shows the duplicates that --delete removes
    deleted = run_cli("dedup", str(folder), "--html", str(page_file), "--delete", "--yes")
    assert deleted.returncode == 0 and not odd.exists()
    assert html.escape(str(odd)) in page_file.read_text(encoding="utf-8")
    assert page_file.read_text(encoding="utf-8").count("data:image/jpeg;base64,") == len(pictures)
