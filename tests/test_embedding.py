"""Embeddings: real EfficientNet-Lite0 weights, Hugging Face folders loaded offline, search, policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from moderate import Engine
from moderate.errors import PolicyError
from moderate.media import decode
from moderate.policy import Policy
from moderate.signals.embedding import HuggingFaceModel, load_model

from .conftest import run_cli


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A full CLIP checkpoint (text and vision towers, projections), tiny and random, saved here."""
    import transformers

    folder = tmp_path_factory.mktemp("tiny-clip")
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": 32, "patch_size": 8},
        projection_dim=12,
    )
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _pixels(path) -> np.ndarray:
    return decode(path).frames[0].pixels


def test_efficientnet_weights_and_preprocessing_are_real(photos):
    model = load_model()
    assert model.identity.dimension == 1280 and model.identity.name == "efficientnet-lite0"
    espresso, tiger_cat, tabby = 967, 282, 281
    classes = model.classify([_pixels(photos["coffee"]), _pixels(photos["chelsea"])])
    assert classes[0] == espresso and classes[1] in (tabby, tiger_cat)


def test_edited_copy_is_nearer_than_unrelated_photos(photos):
    model = load_model()
    coffee = Image.open(photos["coffee"]).convert("RGB")
    edited = ImageEnhance.Contrast(coffee.crop((40, 30, 560, 380))).enhance(1.3).filter(ImageFilter.GaussianBlur(1))
    vectors = model.compute([np.asarray(coffee), np.asarray(edited)] + [_pixels(photos[n]) for n in ("chelsea", "rocket", "moon")])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors[0]
    assert similarity[1] > 0.85 and similarity[1] > similarity[2:].max() + 0.3


def test_hugging_face_clip_folder_loads_offline_with_its_projection(tiny_clip, photos, monkeypatch):
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = HuggingFaceModel(tiny_clip)
    assert model.identity.dimension == 12  # the projection, not the 32-wide hidden state AutoModel would give
    assert model.identity.name == f"hf:{tiny_clip.name}" and model.identity.version
    pixels = _pixels(photos["astronaut"])
    full = transformers.CLIPModel.from_pretrained(tiny_clip, local_files_only=True).eval()
    inputs = transformers.CLIPImageProcessor.from_pretrained(tiny_clip)(images=[pixels], return_tensors="pt")
    import torch

    with torch.inference_mode():  # what CLIP compares: the vision tower's pooled output, projected
        pooled = full.vision_model(pixel_values=inputs["pixel_values"]).pooler_output
        expected = full.visual_projection(pooled).numpy()[0]
    (got,) = model.compute([pixels])
    assert np.allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    with pytest.raises(ValueError, match="not a Hugging Face model folder"):
        HuggingFaceModel(tiny_clip.parent)


def test_embedding_bank_search_and_policy(data_dir, photos, tmp_path):
    engine = Engine(data_dir)
    engine.banks.create("SIMILAR", "review", embedding="efficientnet-lite0")
    engine.banks.add("SIMILAR", [photos[n] for n in ("coffee", "rocket", "astronaut")])
    engine.banks.create("PLAIN")
    engine.banks.add("PLAIN", [photos["chelsea"]])
    record = engine.catalog.current().banks["SIMILAR"]
    assert record["embedding_dimension"] == 1280 and record["embedding_key"].startswith("efficientnet-lite0-")

    coffee = Image.open(photos["coffee"]).convert("RGB")
    edited = tmp_path / "edited.jpg"
    ImageEnhance.Brightness(coffee.crop((40, 30, 560, 380))).enhance(1.2).save(edited, quality=70)
    hits = engine.search(edited, signal="embedding", min_similarity=0.5)
    assert hits[0].reference_id == "coffee" and hits[0].signal == "embedding" and hits[0].similarity > 0.85
    assert all(h.bank == "SIMILAR" for h in hits)

    only_embeddings = Policy.from_mapping({"keypoints": {"enabled": False}, "pdq": {"thresholds": [
        {"max_distance": 1, "action": "bank"}]}, "embedding": {"thresholds": [{"min_similarity": 0.85, "action": "review"}]}})
    verdict = Engine(data_dir, policy=only_embeddings).check(edited)
    assert verdict.verdict == "review"
    reason = verdict.reasons[0]
    assert (reason.signal, reason.reference_id, reason.rule) == ("embedding", "coffee", "embedding.similarity>=0.85")
    assert reason.score > 0.85 and verdict.to_dict()["reasons"][0]["score"] == reason.score
    assert Engine(data_dir, policy=only_embeddings).check(photos["moon"]).verdict == "allow"
    stricter_here = Policy.from_mapping({"keypoints": {"enabled": False}, "pdq": {"thresholds": [
        {"max_distance": 1, "action": "bank"}]}, "embedding": {"banks": {"SIMILAR": [{"min_similarity": 0.995, "action": "review"}]}}})
    assert Engine(data_dir, policy=stricter_here).check(edited).verdict == "allow"  # this bank's own bands apply
    typo = Policy.from_mapping({"embedding": {"banks": {"SIMILAR_": [{"min_similarity": 0.9, "action": "review"}]}}}, "t.yaml")
    with pytest.raises(PolicyError, match="t.yaml: embedding.banks.SIMILAR_: no such bank"):
        Engine(data_dir, policy=typo).check(edited)

    engine.banks.remove("SIMILAR", "coffee")
    assert all(h.reference_id != "coffee" for h in engine.search(edited, signal="embedding", min_similarity=0.0))


def test_a_bank_of_another_model_is_refused_by_name(data_dir, photos, tiny_clip):
    engine = Engine(data_dir)
    engine.banks.create("CLIPPED", embedding=str(tiny_clip))
    engine.banks.add("CLIPPED", [photos["coffee"]])
    assert engine.search(photos["coffee"], signal="embedding", min_similarity=0.9)[0].reference_id == "coffee"
    wants_default = Engine(data_dir, policy=Policy.from_mapping({"embedding": {"model": "efficientnet-lite0"}}))
    with pytest.raises(PolicyError, match=r"bank CLIPPED holds hf-tiny-clip.* embeddings, not efficientnet-lite0: run `moderate bank reembed"):
        wants_default.check(photos["coffee"])


def test_hash_and_search_from_the_command_line(data_dir, photos):
    out = run_cli("hash", str(photos["rocket"]), "--signal", "embedding", "--json", data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["model"] == "efficientnet-lite0" and printed["dimension"] == 1280 and len(printed["vector"]) == 1280
    assert run_cli("bank", "create", "S", "--embedding", data_dir=data_dir).returncode == 0
    assert run_cli("bank", "add", "S", str(photos["rocket"]), data_dir=data_dir).returncode == 0
    found = run_cli("search", str(photos["rocket"]), "--signal", "embedding", "--json", data_dir=data_dir)
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout.splitlines()[0])
    assert hit["reference_id"] == "rocket" and hit["signal"] == "embedding" and hit["similarity"] > 0.99
    none = run_cli("search", str(photos["rocket"]), "--signal", "embedding", "--bank", "S", "--json", data_dir=data_dir)
    assert none.returncode == 0
    assert run_cli("bank", "create", "P", data_dir=data_dir).returncode == 0
    refused = run_cli("search", str(photos["rocket"]), "--signal", "embedding", "--bank", "P", data_dir=data_dir)
    assert refused.returncode == 1 and b"none of the banks searched holds embeddings" in refused.stderr


def test_reembed_moves_a_bank_to_another_model_from_its_images(data_dir, photos, tiny_clip, tmp_path):
    engine = Engine(data_dir)
    engine.banks.create("MOVING")
    engine.banks.add("MOVING", [photos["coffee"], photos["rocket"]])
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "renamed.png").write_bytes(photos["coffee"].read_bytes())  # found by content, not by name
    refused = run_cli("bank", "reembed", "MOVING", "--model", str(tiny_clip), "--from", str(folder), data_dir=data_dir)
    assert refused.returncode == 1 and b"1 of 2 reference images are not in the folders given" in refused.stderr
    assert not engine.catalog.current().banks["MOVING"].get("embedding_key")  # nothing changed
    (folder / "r.png").write_bytes(photos["rocket"].read_bytes())
    moved = run_cli("bank", "reembed", "MOVING", "--model", str(tiny_clip), "--from", str(folder), "--json",
                    data_dir=data_dir)
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["reembedded"] == 2 and report["model"].startswith("hf-tiny-clip") and report["previous"] is None
    assert Engine(data_dir).search(photos["rocket"], signal="embedding", min_similarity=0.99)[0].reference_id == "rocket"
    back = Engine(data_dir).banks.reembed("MOVING", "efficientnet-lite0", [folder])
    assert back.previous == report["model"] and back.reembedded == 2
    hits = Engine(data_dir).search(photos["coffee"], signal="embedding", min_similarity=0.0)
    assert hits[0].reference_id == "coffee" and len(hits) == 2  # old vectors are gone with the old model
