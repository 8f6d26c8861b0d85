"""R-precision of AttnGAN-family models (AttnGAN never released its code; DM-GAN's is the reference).

For each generated image: its own caption and ``candidates − 1`` mismatched captions, ranked by the cosine
of the DAMSM global image feature with each caption's sentence feature; a hit (R = 1) when the own caption
ranks first. Two named protocols (``protocol=``):

* ``"dm-gan"`` (the default): DM-GAN's ``code/trainer.py`` sampling loop and ``datasets.py``
  ``get_mis_caption``, step by step. For each image, in order, 99 mismatched captions are drawn *with
  replacement*: a random test image, redrawn while it is of the image's *class* (species on CUB; an image
  without a class is its own class, as every COCO image in the official code), then one of its captions
  at random. The hits are shuffled, then averaged in 10 folds of ``N // 10`` images, each fold leaving out
  its last image as DM-GAN's ``R[i * 3000:(i + 1) * 3000 - 1]`` does (2,999 of 3,000), mean ± population
  std over the folds. One ``numpy.random.RandomState(seed)`` makes every draw, in DM-GAN's order, so a
  transcription of its loop with the same seed gives the same figure (``tests/test_r_precision.py``).
  DM-GAN generates 30,000 images, a random caption per test image, cycling through the test split.
* ``"other-images"``: this project's protocol before DM-GAN's was followed, kept so that earlier figures
  stay reproducible: 99 captions of *other* test images (not other classes), without replacement, and 10
  contiguous, unshuffled folds of every image.

Excluding same-class captions matters: on CUB a caption of another bird of the same species often fits
the image, so counting it as a mismatch lowers R. Contiguous folds of a plan ordered by test image inflate
the standard deviation (0.11 against 0.02 shuffled, on a synthetic check).
"""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("dm-gan", "other-images")


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-8)


def _groups(owner: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """What "the same class" means: the class id, or for an image without one (−1), the image itself."""
    owner = np.asarray(owner)
    if classes is None:
        return -1 - owner
    classes = np.asarray(classes)
    return np.where(classes >= 0, classes, -1 - owner)


def r_precision(image_features: np.ndarray, sentence_features: np.ndarray, own_caption: np.ndarray,
                caption_owner: np.ndarray, image_owner: np.ndarray, candidates: int = 100, folds: int = 10,
                seed: int = 0, protocol: str = "dm-gan", owner_class: np.ndarray | None = None
                ) -> tuple[float, float, np.ndarray]:
    """image_features (N, D) of generated images; sentence_features (M, D) of every test caption;
    ``own_caption[i]`` the row of image i's caption; ``caption_owner[m]`` which test image caption m
    describes (0 … K−1) and ``image_owner[i]`` which test image generated image i was drawn from;
    ``owner_class[k]`` the class of test image k (−1 or None: each image its own class). Returns (mean,
    std, hits per image, in the images' order)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"R-precision protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}.")
    images, sentences = _normalised(image_features), _normalised(sentence_features)
    caption_owner, image_owner = np.asarray(caption_owner), np.asarray(image_owner)
    hits = np.zeros(len(images), np.float64)
    if protocol == "other-images":
        rng = np.random.default_rng(seed)
        for i in range(len(images)):
            pool = np.flatnonzero(caption_owner != image_owner[i])
            if len(pool) < candidates - 1:
                raise ValueError(f"R-precision needs {candidates - 1} mismatched captions; the test split has {len(pool)}.")
            chosen = np.concatenate([[own_caption[i]], rng.choice(pool, candidates - 1, replace=False)])
            hits[i] = float(np.argmax(sentences[chosen] @ images[i]) == 0)
        parts = np.array_split(hits, folds) if len(hits) >= folds else [hits]
        values = np.array([part.mean() for part in parts])
        return float(values.mean()), float(values.std()), hits

    owners = len(owner_class) if owner_class is not None else int(caption_owner.max(initial=-1)) + 1
    groups = _groups(np.arange(owners), owner_class)
    captions_of = [np.flatnonzero(caption_owner == k) for k in range(owners)]
    if any(len(rows) == 0 for rows in captions_of):
        raise ValueError("Every test image needs at least one caption among the sentence features.")
    if len(np.unique(groups)) < 2:
        raise ValueError("R-precision needs mismatched captions, but every test image is of one class.")
    rng = np.random.RandomState(seed)  # DM-GAN draws with numpy.random: randint(0, n) excludes n
    for i in range(len(images)):
        chosen = [own_caption[i]]
        while len(chosen) < candidates:
            other = rng.randint(0, owners)
            if groups[other] == groups[image_owner[i]]:
                continue
            chosen.append(captions_of[other][rng.randint(0, len(captions_of[other]))])
        hits[i] = float(np.argmax(sentences[chosen] @ images[i]) == 0)  # argmax: the first of equal scores
    shuffled = hits.copy()
    rng.shuffle(shuffled)
    size = len(shuffled) // folds
    if size < 2:  # too few images for the folds (a smoke test): one mean, no spread
        return float(hits.mean()), 0.0, hits
    values = np.array([shuffled[k * size:(k + 1) * size - 1].mean() for k in range(folds)])
    return float(values.mean()), float(values.std()), hits


def damsm_r_precision(text_encoder, image_encoder, index, ids: np.ndarray, lengths: np.ndarray, plan, images: np.ndarray,
                      seed: int = 0, protocol: str = "dm-gan") -> tuple[dict, dict]:
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
    classes = np.array([example.class_id for example in index.test])
    mean, std, _ = r_precision(image_features, sentences[rows], own, rows // captions_per_image, examples, seed=seed,
                               protocol=protocol, owner_class=classes)
    encoders = getattr(image_encoder, "source", None) or "this run's DAMSM"  # e.g. the imported official one
    if protocol == "dm-gan":
        how = (f"DM-GAN's protocol: own caption + 99 drawn with replacement from test images of other classes "
               f"(no class: other images), seed {seed}; 10 shuffled folds of {len(images) // 10 - 1} of "
               f"{len(images)} images")
    else:
        how = (f"'other-images' protocol: own caption + 99 of other test images without replacement, seed {seed}; "
               f"10 contiguous folds of {len(images)} images")
    protocol_line = (f"R = 1 of 100 candidates, cosine of the global image and sentence features of {encoders}; "
                     f"{how}; mean ± std over the folds (--set r_precision_protocol=dm-gan|other-images)")
    return {"r_precision": mean, "r_precision_std": std}, {"r_precision": protocol_line}
