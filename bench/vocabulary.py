"""Train the keypoint vocabulary `moderate` ships: `python -m bench.vocabulary`.

The pooled keypoint index (`moderate.signals.keypoints.index`) sorts descriptors into inverted
lists by their nearest *visual word*. Training words on each user's bank made lists that were
fitted to the first references and then grew without bound as the bank grew (1.8 s per check at
10,000 references); retraining as a bank grows stalls writers for minutes at 10^7 descriptors. A
fixed vocabulary, trained once here on photos of the *tuning* split and shipped with the package,
keeps list sizes proportional to the bank divided by the vocabulary size, with no training ever on
a user's machine (the bag-of-visual-words inverted file of Sivic & Zisserman, "Video Google",
ICCV 2003; hierarchical k-means as in Nister & Stewenius, "Scalable Recognition with a Vocabulary
Tree", CVPR 2006; binary words by majority vote as in DBoW2, Galvez-Lopez & Tardos 2012).

Input: ORB descriptors of the tuning photos (`bench.corpus.tuning_series`: scikit-image and
opencv-doc photos) and of random crops and rescales of them, described the way references (640 px,
plus the mirror image) and queries (1024 px, 4x4 grid) are. Never the held-out wallpapers, which
the held-out and scale sections report on. Output: up to BRANCHES**2 binary words, (W, 32)
uint8, written to `moderate/signals/keypoints/vocabulary.npy`. Seeded (crops and k-means);
multithreaded k-means may still move a few words between runs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from . import corpus

BRANCHES = 128  # words = BRANCHES ** 2: two levels of k-means, each cheap
CROPS = 5  # random crops per photo besides the whole photo
TARGET = Path(__file__).resolve().parent.parent / "moderate" / "signals" / "keypoints" / "vocabulary.npy"


def descriptors() -> np.ndarray:
    """(N, 32) uint8: ORB descriptors of the tuning photos and crops of them."""
    from moderate.signals import KEYPOINTS

    rng = random.Random(0)
    out = []
    for photo in (p for s in corpus.tuning_series() for p in s.members):
        image = photo.image.convert("RGB")
        for k in range(CROPS + 1):
            crop = image
            if k:
                w, h = image.size
                area = rng.uniform(0.3, 0.9)
                cw, ch = int(w * area ** 0.5), int(h * area ** 0.5)
                x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
                crop = image.crop((x, y, x + cw, y + ch)).resize((rng.randint(320, 1024), rng.randint(320, 1024)))
            pixels = np.asarray(crop)
            query = KEYPOINTS.compute(pixels, pixels.shape[1], pixels.shape[0])
            out += [KEYPOINTS.reference(pixels, pixels.shape[1], pixels.shape[0]).descriptors,
                    query.descriptors, query.mirrored_descriptors]
    return np.concatenate(out)


def train(data: np.ndarray) -> np.ndarray:
    """Binary words: k-means on the descriptors' bits (as 0/1 floats) in two levels, each centroid
    rounded to its majority bits; duplicates dropped. (W, 32) uint8."""
    import faiss

    bits = np.unpackbits(data, axis=1).astype(np.float32)
    top = faiss.Kmeans(256, BRANCHES, niter=15, seed=1, max_points_per_centroid=1 << 20)
    top.train(bits)
    _, assigned = top.index.search(bits, 1)
    leaves = []
    for cell in range(BRANCHES):
        members = bits[assigned.ravel() == cell]
        count = min(BRANCHES, len(members) // 4)  # at least 4 descriptors a word
        if count <= 1:
            leaves.append(members.mean(axis=0, keepdims=True))
            continue
        sub = faiss.Kmeans(256, count, niter=15, seed=1, max_points_per_centroid=1 << 20)
        sub.train(members)
        leaves.append(sub.centroids)
    words = np.packbits((np.concatenate(leaves) > 0.5).astype(np.uint8), axis=1)
    return np.unique(words, axis=0)


def main() -> None:
    start = time.time()
    data = descriptors()
    print(f"[vocabulary] {len(data):,} tuning descriptors in {time.time() - start:.0f} s", flush=True)
    words = train(data)
    np.save(TARGET, words)
    print(f"[vocabulary] {len(words):,} words written to {TARGET} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
