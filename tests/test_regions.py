"""Matching that survives edits: crops, borders, rotations, mirrors, pasted pictures, and regions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from moderate import Engine
from moderate.errors import BankError, PolicyError
from moderate.media import decode
from moderate.policy import Policy
from moderate.regions import _overlap, deborder, proposals
from moderate.signals import KEYPOINTS
from moderate.signals.keypoints import KeypointIndex


def _save(image: Image.Image, path) -> str:
    image.convert("RGB").save(path, quality=90)
    return str(path)


def _pasted(photo: Image.Image, background: Image.Image, scale: float, at: tuple[int, int]) -> Image.Image:
    canvas = background.convert("RGB").resize((1024, round(1024 * background.height / background.width)))
    small = photo.resize((round(canvas.width * scale), round(canvas.width * scale * photo.height / photo.width)))
    canvas.paste(small, at)
    return canvas


def _box(polygon) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return min(xs), min(ys), max(xs), max(ys)


def test_half_crop_is_caught_where_pdq_alone_misses(banked, photos, tmp_path):
    image = Image.open(photos["rocket"])
    w, h = image.size
    crop = _save(image.crop((0, 0, int(w * 0.7), int(h * 0.7))), tmp_path / "crop.jpg")  # keeps 49% of the area
    whole_pdq_only = Engine(banked.data_dir, policy=Policy.from_mapping({"keypoints": {"enabled": False}}))
    assert whole_pdq_only.check(crop).verdict == "allow"  # what PDQ alone does with a corner crop
    verdict = banked.check(crop)
    assert verdict.verdict == "block"
    reason = verdict.reasons[0]
    assert (reason.signal, reason.reference_id, reason.region.origin) == ("keypoints", "rocket", "localized")
    assert reason.inliers >= 20
    # the reference's outline extends past the crop by the part that was cut off (30% each way)
    x0, y0, x1, y1 = _box(reason.polygon)
    cw, ch = int(w * 0.7), int(h * 0.7)
    assert abs(x0) < 0.05 * cw and abs(y0) < 0.05 * ch
    assert abs(x1 - w) < 0.05 * w and abs(y1 - h) < 0.05 * h


@pytest.mark.parametrize("mirrored", [False, True])
def test_photo_pasted_into_another_is_found_and_outlined(banked, photos, tmp_path, mirrored):
    coffee = Image.open(photos["coffee"]).convert("RGB")
    if mirrored:
        coffee = ImageOps.mirror(coffee)
    collage = _pasted(coffee, Image.open(photos["retina"]), 0.4, (500, 300))
    verdict = banked.check(_save(collage, tmp_path / "collage.jpg"))
    assert verdict.verdict == "block", verdict.reasons
    reason = next(r for r in verdict.reasons if r.reference_id == "set2/coffee")
    assert reason.signal == "keypoints" and reason.inliers >= 20
    assert (reason.variant == "mirrored") is mirrored
    x0, y0, x1, y1 = _box(reason.polygon)
    pasted_w, pasted_h = round(1024 * 0.4), round(1024 * 0.4 * coffee.height / coffee.width)
    assert abs(x0 - 500) < 12 and abs(y0 - 300) < 12
    assert abs(x1 - (500 + pasted_w)) < 12 and abs(y1 - (300 + pasted_h)) < 12
    assert verdict.to_dict()["reasons"][0]["polygon"] == [list(p) for p in reason.polygon]


def test_unrelated_photos_and_their_collages_are_allowed(banked, photos, tmp_path):
    for name in ("chelsea", "hubble", "immuno", "camera", "brick"):
        assert banked.check(photos[name]).verdict == "allow", name
    collage = _pasted(Image.open(photos["chelsea"]), Image.open(photos["retina"]), 0.4, (100, 100))
    assert banked.check(_save(collage, tmp_path / "unrelated.jpg")).verdict == "allow"


def test_small_rotation_and_mirror(banked, photos, tmp_path):
    image = Image.open(photos["astronaut"]).convert("RGB")
    for name, edited in (("rotated", image.rotate(5, Image.Resampling.BICUBIC, expand=True)),
                         ("mirrored", ImageOps.mirror(image))):
        verdict = banked.check(_save(edited, tmp_path / f"{name}.jpg"))
        assert verdict.verdict == "block" and verdict.reasons[0].reference_id == "astronaut", name


def test_borders_are_removed_before_hashing(banked, photos, tmp_path):
    image = Image.open(photos["motorcycle"]).convert("RGB")
    framed = ImageOps.expand(image, border=(80, 50, 80, 50), fill="black")
    path = _save(framed, tmp_path / "framed.jpg")
    frame = decode(path).frames[0]
    inner = deborder(frame)
    assert inner is not None and abs(inner.x - 80) <= 2 and abs(inner.y - 50) <= 2
    assert abs(inner.w - image.width) <= 4 and abs(inner.h - image.height) <= 4
    verdict = Engine(banked.data_dir, policy=Policy.from_mapping({"keypoints": {"enabled": False}})).check(path)
    assert verdict.verdict == "block"
    assert verdict.reasons[0].region.origin == "deborder" and verdict.reasons[0].distance <= 31
    assert deborder(decode(photos["motorcycle"]).frames[0]) is None  # a photo without borders keeps its frame


def test_reference_region_registers_an_object_and_finds_it_elsewhere(engine, photos, tmp_path):
    engine.banks.create("SYMBOLS", "review")
    astronaut = Image.open(photos["astronaut"]).convert("RGB")  # 512 x 512; the helmet is the object
    engine.banks.add("SYMBOLS", [photos["astronaut"]], reference_id="patch", region="0.25,0.1,0.5,0.5")
    (reference,) = engine.banks.references("SYMBOLS")
    assert reference.metadata["region"] == "128,51,256,256" and reference.metadata["width"] == 256
    part = astronaut.crop((128, 51, 384, 307))
    collage = _pasted(part, Image.open(photos["hubble"]), 0.35, (600, 400))
    verdict = engine.check(_save(collage, tmp_path / "patch.jpg"))
    assert verdict.verdict == "review" and verdict.reasons[0].reference_id == "patch"
    with pytest.raises(BankError, match="region '0,0,600,600': must lie inside the 512x512 image"):
        engine.banks.add("SYMBOLS", [photos["astronaut"]], reference_id="bad", region="0,0,600,600")


def test_several_images_make_one_reference_and_removal_drops_their_keypoints(engine, photos, tmp_path):
    engine.banks.create("ITEMS")
    engine.banks.add("ITEMS", [photos["coffee"], photos["rocket"]], reference_id="item-7")
    (reference,) = engine.banks.references("ITEMS")
    assert reference.id == "item-7" and reference.metadata["images"] == 2
    rocket = Image.open(photos["rocket"])
    crop = _save(rocket.crop((100, 50, 500, 350)), tmp_path / "crop.jpg")
    assert engine.check(crop).reasons[0].reference_id == "item-7"
    assert len(Engine(engine.data_dir).catalog.current().keypoints) == 2  # persisted for the next process
    engine.banks.remove("ITEMS", "item-7")
    assert len(engine.catalog.current().keypoints) == 0
    assert Engine(engine.data_dir).check(crop).verdict == "allow"


def test_parts_named_by_the_policy_compare_query_and_reference_alike(data_dir, photos, tmp_path):
    policy = Policy.from_mapping({"regions": {"parts": [{"name": "top", "x": 0, "y": 0, "w": 1, "h": 0.8}]},
                                  "keypoints": {"enabled": False}})
    engine = Engine(data_dir, policy=policy)
    engine.banks.create("MEMES")
    engine.banks.add("MEMES", [photos["chelsea"]])
    cat = Image.open(photos["chelsea"]).convert("RGB")
    captioned = cat.copy()
    captioned.paste((255, 255, 255), (0, int(cat.height * 0.8), cat.width, cat.height))  # a new caption strip
    draw = ImageDraw.Draw(captioned)
    draw.text((10, int(cat.height * 0.82)), "WHEN MODERATION MISSES IT", fill="black",
              font=ImageFont.load_default(size=int(cat.height * 0.12)))
    path = _save(captioned, tmp_path / "captioned.jpg")
    verdict = engine.check(path)
    assert verdict.verdict == "block" and verdict.reasons[0].region.origin == "part:top"
    assert Engine(data_dir, policy=Policy.from_mapping({"keypoints": {"enabled": False}})).check(path).reasons[0].region.origin != "part:top"


def test_objects_mode_proposes_the_pasted_rectangle(photos, tmp_path):
    collage = _pasted(Image.open(photos["coffee"]).convert("RGB"), Image.open(photos["hubble"]), 0.45, (420, 260))
    frame = decode(_save(collage, tmp_path / "c.jpg")).frames[0]
    boxes = proposals(frame, 8)
    pasted = (420, 260, round(1024 * 0.45), round(1024 * 0.45 * 400 / 600))
    assert any(_overlap((b.x, b.y, b.w, b.h), pasted) >= 0.7 for b in boxes), boxes


@pytest.mark.parametrize("section, problem", [
    ({"keypoints": {"thresholds": [{"min_inliers": 12, "action": "bank"}, {"min_inliers": 20, "action": "review"}]}},
     "keypoints.thresholds[1].min_inliers: must be smaller than the previous band's 12"),
    ({"keypoints": {"thresholds": [{"min_inliers": 3, "action": "bank"}]}}, "min_inliers: must be an integer from 8"),
    ({"regions": {"mode": "everything"}}, "regions.mode: must be one of whole, objects"),
    ({"regions": {"parts": [{"name": "p", "x": 0.5, "y": 0, "w": 0.6, "h": 1}]}}, "must lie inside the frame"),
    ({"regions": {"tiles": [1]}}, "regions.tiles: must be a list of grid sizes"),
    ({"keypoints": {"feature": 10}}, "keypoints.feature: unknown field"),
])
def test_policy_refuses_bad_region_and_keypoint_settings(section, problem):
    with pytest.raises(PolicyError, match=problem.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        Policy.from_mapping(section, "p.yaml")


def test_keypoint_record_round_trips(photos):
    from moderate.signals import KEYPOINTS, KeypointSet

    frame = decode(photos["coffee"]).frames[0]
    described = KEYPOINTS.reference(frame.pixels, frame.width, frame.height)
    assert 100 < len(described) <= KEYPOINTS.reference_features and len(described.mirrored_descriptors) == 0
    again = KeypointSet.from_bytes(described.to_bytes())
    assert np.array_equal(again.descriptors, described.descriptors)
    assert np.array_equal(again.points, described.points)
    assert len(described.to_bytes()) < 22_000  # one orientation's corners and descriptors, never the picture
    query = KEYPOINTS.compute(frame.pixels, frame.width, frame.height)
    again = KeypointSet.from_bytes(query.to_bytes())
    assert len(again.mirrored_descriptors) > 100 and np.array_equal(again.mirrored_points, query.mirrored_points)


def test_references_keep_each_levels_strongest_corners_first_and_queries_their_mirror(photos):
    """The pool takes a reference's first corners, so they must be the strongest of every pyramid
    level in turn; and a query's mirrored description must be what describing the mirrored
    picture gives, mapped back."""
    import cv2

    from moderate.signals import KEYPOINTS
    from moderate.signals.keypoints.features import grayscale

    frame = decode(photos["astronaut"]).frames[0]
    gray = grayscale(frame.pixels, KEYPOINTS.reference_size)
    orb = cv2.ORB_create(nfeatures=KEYPOINTS.reference_features, scaleFactor=1.2, nlevels=8, fastThreshold=10)
    found, _ = orb.compute(gray, orb.detect(gray, None))
    levels = sorted({k.octave for k in found})
    per_level = {level: sorted((k for k in found if k.octave == level), key=lambda k: -k.response) for level in levels}
    rounds = [sorted((per_level[level][rank] for level in levels if rank < len(per_level[level])),
                     key=lambda k: -k.response) for rank in range(len(found))]  # each level's next strongest
    first = [k.pt for round_ in rounds for k in round_][:KeypointIndex.POOLED]
    assert len(levels) >= 4 and len(found) > KeypointIndex.POOLED
    described = KEYPOINTS.reference(frame.pixels, gray.shape[1], gray.shape[0])
    assert [tuple(map(float, p)) for p in described.points[:KeypointIndex.POOLED]] == [tuple(map(float, p)) for p in first]

    query = KEYPOINTS.compute(frame.pixels, frame.width, frame.height)
    flipped = KEYPOINTS.compute(np.ascontiguousarray(frame.pixels[:, ::-1]), frame.width, frame.height)
    # the same descriptors, up to the mirrored pyramid's resampling (measured 0.93-0.98 on four photos)
    same = faiss_flat(flipped.descriptors).search(np.ascontiguousarray(query.mirrored_descriptors), 1)
    assert np.mean(same[0][:, 0] <= 30) > 0.9
    unmirrored = faiss_flat(flipped.descriptors).search(np.ascontiguousarray(query.descriptors), 1)
    assert np.mean(unmirrored[0][:, 0] <= 30) < 0.1
    near = same[0][:, 0] == 0
    mapped = frame.width - 1 - flipped.points[same[1][near, 0], 0]
    assert np.median(np.abs(mapped - query.mirrored_points[near, 0])) < 1.0


def test_inverted_file_is_saved_with_the_snapshot_and_carried_through_adds(data_dir, photos, tmp_path, monkeypatch):
    from moderate.signals.keypoints import KeypointIndex
    from moderate.signals.keypoints.index import _mapped

    monkeypatch.setattr(KeypointIndex, "POOLED", 500)  # every corner pooled: these few photos reach each regime
    monkeypatch.setattr(KeypointIndex, "IVF_FROM", 800)  # the bank-scale path, with a few photos
    engine = Engine(data_dir)
    engine.banks.create("BIG")
    engine.banks.add("BIG", [photos[n] for n in ("astronaut", "coffee")])
    saved = list((engine.catalog.dir).glob("*.keypoints-ivf"))
    assert len(saved) == 1  # written by the writer, so checks do not train it
    crop = _save(Image.open(photos["rocket"]).crop((60, 40, 560, 380)), tmp_path / "crop.jpg")
    assert Engine(data_dir).check(crop).verdict == "allow"  # a reader maps the saved file...
    Engine(data_dir).banks.add("BIG", [photos["rocket"]])  # ...and a writer that loaded it carries it
    reader = Engine(data_dir)
    keypoints = reader.catalog.current().keypoints
    assert reader.check(crop).reasons[0].reference_id == "rocket"
    assert type(keypoints._faiss()).__name__ == "IndexBinaryIVF" and keypoints._faiss().ntotal == len(keypoints.pooled)
    assert _mapped(keypoints._faiss())  # read in place: a check does not load the lists into memory
    Engine(data_dir).banks.remove("BIG", "rocket")
    assert Engine(data_dir).check(crop).verdict == "allow"


def test_a_bank_whose_references_have_no_corners_still_checks(engine, photos, tmp_path):
    """Vertical stripes: a confident PDQ hash and not one ORB corner. Every check used to crash
    (the keypoint index counted images, not descriptors)."""
    x = np.arange(640)
    row = ((np.sin(x / 12.0) > 0) * 200 + 30).astype(np.uint8)
    Image.fromarray(np.repeat(np.repeat(row[None, :, None], 480, 0), 3, 2)).save(tmp_path / "stripes.png")
    engine.banks.create("STRIPES")
    engine.banks.add("STRIPES", [tmp_path / "stripes.png"])
    assert len(engine.catalog.current().keypoints) == 1 and len(engine.catalog.current().keypoints.descriptors) == 0
    assert engine.check(photos["coffee"]).verdict == "allow"
    assert engine.check(tmp_path / "stripes.png").verdict == "block"
    assert engine.explain(photos["coffee"], "stripes").verdict == "allow"


def test_reading_the_banks_does_not_make_the_next_check_rewrite_the_index(banked, photos):
    """Embedded Chroma touches its files on reads: the next check refreshes the snapshot's stamp
    without rewriting (or rebuilding) the index files."""
    banked.check(photos["coffee"])
    files = {p: p.stat().st_mtime_ns for p in banked.catalog.dir.glob("s*") if "snapshot" not in p.name}
    list(Engine(banked.data_dir).banks.references("TERROR"))  # a read in another process's engine
    checker = Engine(banked.data_dir)
    assert checker.check(photos["coffee"]).verdict == "block"
    assert {p: p.stat().st_mtime_ns for p in banked.catalog.dir.glob("s*") if "snapshot" not in p.name} == files
    assert checker.catalog.current().stamp == checker.store.stamp()


def _words_regime(photos, monkeypatch) -> tuple[list, KeypointIndex]:
    """Four photos' described corners, and an index of them grown through appends past
    `WORDS_FROM` (thresholds lowered so that a few photos reach the bank-scale path)."""
    monkeypatch.setattr(KeypointIndex, "POOLED", 500)  # every corner pooled
    monkeypatch.setattr(KeypointIndex, "IVF_FROM", 1000)
    monkeypatch.setattr(KeypointIndex, "WORDS_FROM", 1500)
    described = []
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        pixels = np.asarray(Image.open(photos[name]).convert("RGB"))
        described.append((f"B::{name}::0", KEYPOINTS.reference(pixels, pixels.shape[1], pixels.shape[0])))
    return described, KeypointIndex.build(described[:2]).appended(described[2:])


def _rocket_crop_query(photos):
    pixels = np.asarray(Image.open(photos["rocket"]).convert("RGB"))[40:380, 60:560]
    return KEYPOINTS.compute(pixels, pixels.shape[1], pixels.shape[0])


def test_inverted_lists_are_the_shipped_words_and_find_what_exhaustive_search_finds(photos, monkeypatch):
    """The inverted file never trains on a bank: its lists are the vocabulary's words whatever the
    bank holds, and a query's nearest pooled corners are found as exhaustive search finds them."""
    from moderate.signals.keypoints.index import _words

    described, grown = _words_regime(photos, monkeypatch)
    assert len(KeypointIndex.build(described[:1]).pooled) < KeypointIndex.WORDS_FROM <= len(grown.pooled)
    ivf = grown._faiss()
    assert type(ivf).__name__ == "IndexBinaryIVF" and ivf.nlist == len(_words()) and ivf.ntotal == len(grown.pooled)
    rebuilt = KeypointIndex.build(described)._faiss()
    assert [ivf.invlists.list_size(w) for w in range(ivf.nlist)] == [rebuilt.invlists.list_size(w) for w in range(ivf.nlist)]
    query = _rocket_crop_query(photos)
    exact = faiss_flat(grown.descriptors[grown.pooled]).search(np.ascontiguousarray(query.descriptors), 1)
    found = grown.nearest(query.descriptors, 16)
    matched = exact[0][:, 0] <= 40  # corners the crop shares with its reference
    assert matched.sum() > 50
    assert np.mean([grown.pooled[exact[1][i, 0]] in found[1][i] for i in np.flatnonzero(matched)]) >= 0.9


def test_a_query_corner_reads_its_nearest_words_only_up_to_the_scan_budget(photos, monkeypatch):
    """Each query descriptor reads its nearest words' lists in order until `WORD_SCAN` entries
    (its nearest word always): what a check reads stops growing with the pool. Counted by faiss's
    own statistics of lists visited and distances computed."""
    import faiss

    _, grown = _words_regime(photos, monkeypatch)
    ivf = grown._faiss()
    query = np.ascontiguousarray(_rocket_crop_query(photos).descriptors)
    sizes = np.array([ivf.invlists.list_size(w) for w in range(ivf.nlist)])
    _, words = ivf.quantizer.search(query, KeypointIndex.WORD_PROBE)
    stats = faiss.cvar.indexIVF_stats

    def read(budget: int) -> tuple[int, int, np.ndarray]:
        monkeypatch.setattr(KeypointIndex, "WORD_SCAN", budget)
        stats.reset()
        found, _ = grown.nearest(query, 2)
        return stats.nlist, stats.ndis, found

    lists, distances, unlimited = read(10 ** 9)
    assert lists == words.size - (words < 0).sum() and distances == sizes[words[words >= 0]].sum()
    assert np.array_equal(unlimited, ivf.search(query, 2)[0])  # the neighbours faiss's own probing finds
    _, distances, _ = read(1)  # one entry: the nearest word that has a list, empty ones before it cost nothing
    assert distances == sum(int(sizes[row[sizes[row] > 0][:1]].sum()) for row in words)
    _, distances, _ = read(30)
    assert distances <= len(query) * (30 + sizes.max()) and distances < sizes[words[words >= 0]].sum()


def test_corners_written_as_documents_by_earlier_versions_are_still_read(data_dir, photos, tmp_path):
    """Keypoint records used to carry their corners in the Chroma document; they now ride in the
    metadata. A store written the old way still matches after its index is rebuilt."""
    import base64
    import shutil

    engine = Engine(data_dir)
    engine.banks.create("OLD")
    engine.banks.add("OLD", [photos["rocket"]])
    store = engine.store
    [(rid, value, metadata)] = list(store.records(KEYPOINTS))
    assert "keypoints" in metadata
    store.delete_records(KEYPOINTS, [rid])
    with store._using(KEYPOINTS.collection, "writing an old record") as col:
        col.add(ids=[rid], embeddings=[[1.0]], documents=[base64.b64encode(value.to_bytes()).decode()],
                metadatas=[{k: v for k, v in metadata.items() if k != "keypoints"}])
    store.bump()
    shutil.rmtree(engine.catalog.dir)
    crop = _save(Image.open(photos["rocket"]).crop((60, 40, 560, 380)), tmp_path / "crop.jpg")
    verdict = Engine(data_dir).check(crop)
    assert verdict.verdict == "block" and any(r.signal == "keypoints" for r in verdict.reasons)



def test_references_written_with_a_mirrored_set_by_earlier_versions_still_match(data_dir, photos, tmp_path):
    """Earlier versions stored a reference's mirror corners beside its own, in detection order,
    and saved no pool. Such a store still matches plain and mirrored crops once its saved index is
    rebuilt, with every corner of the old record pooled (no fewer than it had)."""
    import base64

    from moderate.signals import KeypointSet
    from moderate.signals.keypoints.features import grayscale, orb

    engine = Engine(data_dir)
    engine.banks.create("OLD")
    engine.banks.add("OLD", [photos["rocket"]])
    store = engine.store
    [(rid, value, metadata)] = list(store.records(KEYPOINTS))
    frame = decode(photos["rocket"]).frames[0]
    gray = grayscale(frame.pixels, KEYPOINTS.reference_size)
    mirror_points, mirror_descriptors = orb(np.ascontiguousarray(gray[:, ::-1]), KEYPOINTS.reference_features, 0)
    mirror_points[:, 0] = (gray.shape[1] - 1 - mirror_points[:, 0]) * frame.width / gray.shape[1]
    old = KeypointSet(value.width, value.height, value.points[::-1], value.descriptors[::-1], mirror_points,
                      mirror_descriptors)
    store.delete_records(KEYPOINTS, [rid])
    with store._using(KEYPOINTS.collection, "writing an old record") as col:
        col.add(ids=[rid], embeddings=[[1.0]],
                metadatas=[{**metadata, "keypoints": base64.b64encode(old.to_bytes()).decode()}])
    store.bump()
    for pool in engine.catalog.dir.glob("*.keypoints-pooled.npy"):  # an index saved before pools existed
        pool.unlink()
    reader = Engine(data_dir)
    keypoints = reader.catalog.current().keypoints
    assert len(keypoints.pooled) == len(keypoints.descriptors) == len(value) > KeypointIndex.POOLED
    crop = Image.open(photos["rocket"]).crop((60, 40, 560, 380))
    for name, picture in (("crop", crop), ("mirrored", ImageOps.mirror(crop))):
        verdict = reader.check(_save(picture, tmp_path / f"{name}.jpg"))
        assert verdict.verdict == "block" and any(r.signal == "keypoints" for r in verdict.reasons), name


def faiss_flat(descriptors):
    import faiss

    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(descriptors))
    return index


def test_border_depth_reads_rows_lazily_and_agrees_with_the_whole_frame_definition():
    """Flat leading rows, by definition over the whole frame's channel means, against the lazy reader."""
    from moderate.regions import BORDER_OUTLIERS, BORDER_TOLERANCE, _border_depth

    def by_definition(pixels):
        gray = pixels.astype(np.int16).mean(axis=2)
        limit = len(gray) // 3
        off = (np.abs(gray[:limit] - np.median(gray[0])) > BORDER_TOLERANCE).mean(axis=1)
        flat = np.flatnonzero(off > BORDER_OUTLIERS)
        return int(flat[0]) if len(flat) else limit

    rng = np.random.default_rng(5)
    depths = set()
    for _ in range(400):
        height, width = (int(v) for v in rng.integers(1, 300, 2))
        pixels = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        depth = int(rng.integers(0, height + 1))
        pixels[:depth] = np.clip(rng.integers(0, 256, 3) + rng.integers(-12, 13, (depth, width, 3)), 0, 255)
        for view in (pixels, pixels[::-1], pixels.transpose(1, 0, 2), pixels.transpose(1, 0, 2)[::-1]):
            assert _border_depth(view) == by_definition(view)
            depths.add(_border_depth(view))
    assert len(depths) > 50  # borders of many depths were read, past each block of rows


def test_removing_references_carries_the_inverted_file_renumbered(photos, monkeypatch):
    """`bank remove` at bank scale must not file every descriptor anew (minutes at 10M): the
    inverted file loses the removed rows and renumbers the rest as a rebuild would file them."""
    import faiss

    monkeypatch.setattr(KeypointIndex, "POOLED", 500)  # every corner pooled: these few photos reach each regime
    monkeypatch.setattr(KeypointIndex, "IVF_FROM", 600)
    monkeypatch.setattr(KeypointIndex, "WORDS_FROM", 1000)
    described = []
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        pixels = np.asarray(Image.open(photos[name]).convert("RGB"))
        described.append((f"B::{name}::0", KEYPOINTS.reference(pixels, pixels.shape[1], pixels.shape[0])))
    index = KeypointIndex.build(described)
    index._faiss()
    kept = index.without(np.array([False, True, False, False]))
    carried = kept.__dict__["_faiss_index"]
    rebuilt = KeypointIndex.build(described[:1] + described[2:])._faiss()

    def lists(ivf):
        return [sorted(faiss.rev_swig_ptr(ivf.invlists.get_ids(w), ivf.invlists.list_size(w)).tolist())
                if ivf.invlists.list_size(w) else [] for w in range(ivf.nlist)]

    assert carried.ntotal == len(kept.descriptors) == rebuilt.ntotal
    assert lists(carried) == lists(rebuilt)
    assert index._faiss().ntotal == len(index.descriptors)  # the original is untouched (readers still use it)


def test_a_self_trained_inverted_file_is_trained_again_once_the_pool_has_doubled(photos, monkeypatch):
    """Below WORDS_FROM the inverted file is trained on the pool; appends carry it only while the
    pool is at most twice what it was trained on, so its lists never grow without bound."""
    monkeypatch.setattr(KeypointIndex, "POOLED", 500)  # every corner pooled: these few photos reach each regime
    monkeypatch.setattr(KeypointIndex, "IVF_FROM", 400)
    monkeypatch.setattr(KeypointIndex, "IVF_LIST", 100)
    described = []
    for name in ("astronaut", "coffee", "rocket", "chelsea", "camera", "motorcycle"):
        pixels = np.asarray(Image.open(photos[name]).convert("RGB"))
        described.append((f"B::{name}::0", KEYPOINTS.reference(pixels, pixels.shape[1], pixels.shape[0])))
    index = KeypointIndex.build(described[:1])
    trained = index._faiss()
    assert trained.nlist == len(index.descriptors) // 100
    grown, carried = index, 0
    for record in described[1:]:
        before = grown._faiss().nlist
        grown = grown.appended([record])
        kept = grown.__dict__.get("_faiss_index")
        if kept is not None:
            carried += 1
            assert kept.nlist == before and len(grown.descriptors) <= 2 * before * 100
        assert grown._faiss().ntotal == len(grown.descriptors)
        assert len(grown.descriptors) <= 2 * grown._faiss().nlist * 100  # never searched outgrown
    assert carried >= 1 and grown._faiss().nlist > trained.nlist


def test_only_the_strongest_corners_are_pooled_and_candidates_are_verified_with_all(photos, monkeypatch):
    """The pool holds each reference's first `POOLED` corners; what it finds is verified against
    every corner of the reference (more inliers than the pool holds of it)."""
    from moderate.signals.keypoints.verification import localize, retrieve

    monkeypatch.setattr(KeypointIndex, "POOLED", 60)

    described = []
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        pixels = np.asarray(Image.open(photos[name]).convert("RGB"))
        described.append((f"B::{name}::0", KEYPOINTS.reference(pixels, pixels.shape[1], pixels.shape[0])))
    index = KeypointIndex.build(described[:2]).appended(described[2:])
    starts = np.searchsorted(index.owner, np.arange(len(index)))
    counts = np.bincount(index.owner, minlength=len(index))
    expected = np.concatenate([np.arange(s, s + min(c, KeypointIndex.POOLED)) for s, c in zip(starts, counts)])
    assert np.array_equal(index.pooled, expected) and counts.min() > KeypointIndex.POOLED
    pixels = np.asarray(Image.open(photos["rocket"]).convert("RGB"))[40:380, 60:560]
    query = KEYPOINTS.compute(pixels, pixels.shape[1], pixels.shape[0])
    _, rows = index.nearest(query.descriptors, 16)
    assert np.isin(rows[rows >= 0], index.pooled).all()
    found = retrieve(index, query, np.ones(len(index), bool), 4, 12)
    assert [index.images.id_at(f.image) for f in found] == ["B::rocket::0"]
    assert found[0].inliers > KeypointIndex.POOLED
    assert found[0].inliers >= 0.8 * localize(index, found[0].image, query).inliers
    kept = index.without(np.array([False, True, False, False]))
    rebuilt = KeypointIndex.build(described[:1] + described[2:])
    assert np.array_equal(kept.pooled, rebuilt.pooled) and np.array_equal(kept.descriptors, rebuilt.descriptors)
