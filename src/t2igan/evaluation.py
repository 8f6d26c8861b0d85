"""Evaluating a trained run: generate for the test captions, score, print the protocol.

On ``shapes`` the metrics are the oracle's: per-attribute accuracy of what each
caption states, and the Fréchet distance between oracle features of generated
and real test images ("oracle FID"). Other data sets get the sample grid and the
protocol only, until Inception weights are configured (see ``docs/metrics.md``).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable

import numpy as np

from t2igan.sampling import make_grid, save_png, to_uint8


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def caption_plan(examples, count: int, seed: int) -> list[tuple[int, int]]:
    """(example, caption) pairs: every test caption once, or a seeded subset of ``count``."""
    pairs = [(i, c) for i, example in enumerate(examples) for c in range(len(example.captions))]
    if count and count < len(pairs):
        chosen = np.random.default_rng(seed).permutation(len(pairs))[:count]
        pairs = [pairs[j] for j in sorted(chosen)]
    return pairs


def generate_for(plan, generate: Callable, noise_dim: int, seed: int, batch_size: int = 250) -> np.ndarray:
    """Images for every planned caption, one N(0, I) noise vector each, as the saved PNGs would be."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((len(plan), noise_dim)).astype(np.float32)
    parts = []
    for start in range(0, len(plan), batch_size):
        chunk = plan[start : start + batch_size]
        examples = np.array([p[0] for p in chunk])
        captions = np.array([p[1] for p in chunk])
        parts.append(generate(examples, captions, noise[start : start + batch_size]))
    images = np.concatenate(parts)
    # uint8 round trip: evaluate exactly what a saved sample would show.
    return to_uint8(images).astype(np.float32) / 127.5 - 1.0


def evaluate_run(run, config, index, generate: Callable, noise_dim: int, eval_samples: int, seed: int,
                 data_root: str, generator_name: str = "generator", extra: Callable | None = None) -> dict:
    """``extra(plan, images) -> (results, protocol)`` adds a chapter's own metrics (e.g. R-precision)."""
    started = time.time()
    plan = caption_plan(index.test, eval_samples, seed)
    if not plan:
        raise ValueError(f"The test split of {index.name} has no captions to evaluate.")
    images = generate_for(plan, generate, noise_dim, seed)
    save_png(make_grid(images[:64].reshape(-1, 8, *images.shape[1:]) if len(images) >= 64 else images),
             os.path.join(run.samples, "eval.png"))
    latest = _latest_checkpoint(run)
    protocol = {
        "generated_images": len(images),
        "captions": f"test split of {index.name}: "
                    + ("every caption of every image, once" if not eval_samples else f"{len(plan)} captions drawn with seed {seed}"),
        "noise": f"N(0, I), one vector per caption, seed {seed}",
        "generator": f"{generator_name} from {latest}",
        "image_pipeline": f"generator output [-1, 1] → uint8 → [-1, 1]; {config['image_size']} px; RGB; no resize",
    }
    results: dict = {}
    if index.name in ("shapes", "shapes-pairs"):
        from t2igan import oracle as oracle_module
        from t2igan.metrics.fid import fid_from_features

        cache = os.path.join(index.root, "oracle")
        epochs = config.get("oracle_epochs") or oracle_module.DEFAULT_EPOCHS
        oracle = oracle_module.load_or_train_oracle(index.root, config["image_size"], cache, epochs=epochs)
        weights = os.path.join(cache, f"oracle-{index.name}-{config['image_size']}px.weights.h5")
        attributes = [index.test[i].caption_attributes[c] for i, c in plan]
        score = oracle.score(images, attributes)
        real_images, _ = oracle_module.load_split_arrays(index.root, "test", config["image_size"])
        real_features = oracle.features(real_images)
        fid = fid_from_features(real_features, oracle.features(images))
        results = {f"oracle_accuracy/{k}": v for k, v in score.items() if k != "counts"}
        results["oracle_fid"] = fid
        protocol.update({
            "feature_extractor": f"shapes oracle, penultimate layer ({real_features.shape[1]}-d), sha256 {_sha256(weights)[:16]}",
            "oracle_real_test_accuracy": oracle.report.get("test_accuracy"),
            "reference": f"{len(real_images)} real test images of {os.path.basename(index.root)}",
            "counts": score["counts"],
        })
    else:
        protocol["note"] = ("No domain oracle for this data set. Inception FID / IS / R-precision need the "
                            "metrics module and local Inception weights (docs/metrics.md).")
    if extra is not None:
        more_results, more_protocol = extra(plan, images)
        results.update(more_results)
        protocol.update(more_protocol)
    summary = {"protocol": protocol, "results": results, "seconds": round(time.time() - started, 1)}
    run.update_metrics("eval", summary)
    _log_to_tensorboard(run, results, latest)
    _print(protocol, results)
    return summary


def _latest_checkpoint(run) -> str:
    import tensorflow as tf

    return tf.train.latest_checkpoint(run.checkpoints) or "(none)"


def _log_to_tensorboard(run, results, checkpoint):
    import tensorflow as tf

    step = int(checkpoint.rsplit("-", 1)[-1]) if checkpoint[-1:].isdigit() else 0
    writer = tf.summary.create_file_writer(os.path.join(run.logs, "eval"))
    with writer.as_default(step=step):
        for key, value in results.items():
            tf.summary.scalar(f"eval/{key}", float(value))
    writer.flush()


def _print(protocol, results):
    print("Evaluation protocol")
    for key, value in protocol.items():
        print(f"  {key:<26} {value}")
    print("Results")
    for key, value in results.items():
        print(f"  {key:<26} {value:.4f}")
    if not results:
        print("  (no metric available for this data set yet)")
