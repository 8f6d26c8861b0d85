"""R-precision as in the DM-GAN evaluation of AttnGAN-family models (AttnGAN never released its code).

For each generated image: its own caption and ``candidates − 1`` captions of *other* images,
ranked by the cosine of the DAMSM global image feature with each caption's sentence feature.
R = 1: a hit when the image's own caption ranks first. Reported as mean ± std over ``folds``
equal parts of the generated set.
"""

from __future__ import annotations

import numpy as np


def r_precision(image_features: np.ndarray, sentence_features: np.ndarray, own_caption: np.ndarray,
                caption_owner: np.ndarray, image_owner: np.ndarray, candidates: int = 100, folds: int = 10,
                seed: int = 0) -> tuple[float, float, np.ndarray]:
    """image_features (N, D) of generated images; sentence_features (M, D) of every test caption;
    ``own_caption[i]`` the row of image i's caption; ``caption_owner[m]`` which real image caption m
    describes and ``image_owner[i]`` which real image generated image i was conditioned on
    (mismatched captions are drawn from other owners). Returns (mean, std, hits per image)."""
    rng = np.random.default_rng(seed)
    images = image_features / np.maximum(np.linalg.norm(image_features, axis=1, keepdims=True), 1e-8)
    sentences = sentence_features / np.maximum(np.linalg.norm(sentence_features, axis=1, keepdims=True), 1e-8)
    hits = np.zeros(len(images), np.float64)
    for i in range(len(images)):
        pool = np.flatnonzero(caption_owner != image_owner[i])
        if len(pool) < candidates - 1:
            raise ValueError(f"R-precision needs {candidates - 1} mismatched captions; the test split has {len(pool)}.")
        chosen = np.concatenate([[own_caption[i]], rng.choice(pool, candidates - 1, replace=False)])
        scores = sentences[chosen] @ images[i]
        hits[i] = float(np.argmax(scores) == 0)
    parts = np.array_split(hits, folds) if len(hits) >= folds else [hits]
    values = np.array([part.mean() for part in parts])
    return float(values.mean()), float(values.std()), hits


def damsm_r_precision(text_encoder, image_encoder, index, ids: np.ndarray, lengths: np.ndarray, plan, images: np.ndarray,
                      seed: int = 0) -> tuple[dict, dict]:
    """R-precision of generated ``images`` with a run's DAMSM encoders, in ``evaluation.evaluate_run``'s
    ``extra`` form: ``plan`` [(test example, caption)] says what each image was drawn from; ``ids``,
    ``lengths`` (N, C, T), (N, C) are every test caption (``damsm.test_ids``). Returns (results, protocol)."""
    examples = np.array([e for e, _ in plan])
    flat_ids, flat_lengths = ids.reshape(-1, ids.shape[-1]), lengths.reshape(-1)
    captions_per_image = ids.shape[1]
    present = np.array([c < len(index.test[e].captions) for e in range(len(index.test))
                        for c in range(captions_per_image)])
    sentences = np.concatenate([text_encoder([flat_ids[i : i + 500], flat_lengths[i : i + 500]], training=False)[1].numpy()
                                for i in range(0, len(flat_ids), 500)])
    image_features = np.concatenate([image_encoder(images[i : i + 250], training=False)[1].numpy()
                                     for i in range(0, len(images), 250)])
    rows = np.flatnonzero(present)
    position = {row: k for k, row in enumerate(rows)}
    own = np.array([position[e * captions_per_image + c] for e, c in plan])
    mean, std, _ = r_precision(image_features, sentences[rows], own, rows // captions_per_image, examples, seed=seed)
    encoders = getattr(image_encoder, "source", None) or "this run's DAMSM"  # e.g. the imported official one
    protocol = {"r_precision": (f"R = 1 of 100 candidates (own caption + 99 of other test images, seed {seed}), "
                                f"cosine of the global image and sentence features of {encoders}, mean ± std over "
                                f"10 folds of {len(images)} images")}
    return {"r_precision": mean, "r_precision_std": std}, protocol
