"""Evaluating a trained run: generate for the test captions, score, print the protocol.

On ``shapes`` the metrics are the oracle's: per-attribute accuracy of what each
caption states, and the Fréchet distance between oracle features of generated
and real test images ("oracle FID"). Other data sets get Inception FID and IS when
a local Inception weights file is configured (``docs/metrics.md``), else the sample
grid and the protocol only. A chapter adds its own metrics (R-precision) as ``extra``.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from t2igan.metrics.inception import sha256 as _sha256
from t2igan.sampling import captioned_grid, save_png, to_uint8


CAPTION_PLANS = ("every-caption", "dm-gan")


def caption_plan(examples, count: int, seed: int, plan: str = "every-caption") -> list[tuple[int, int]]:
    """(example, caption) pairs to generate for.

    ``every-caption`` (default): every test caption once, or a seeded subset of ``count`` of them.
    ``dm-gan``: DM-GAN's sampling (``code/trainer.py``): passes over the test images in a seeded shuffled
    order, one caption drawn at random per image per pass, until ``count`` images (0: the papers' 30,000).
    """
    if plan == "dm-gan":
        rng, total = np.random.default_rng(seed), count or 30000
        chosen: list[tuple[int, int]] = []
        with_captions = [i for i, example in enumerate(examples) if example.captions]
        while len(chosen) < total and with_captions:
            for i in rng.permutation(with_captions):
                chosen.append((int(i), int(rng.integers(len(examples[i].captions)))))
        return chosen[:total]
    if plan not in CAPTION_PLANS:
        raise ValueError(f"eval_caption_plan must be one of {', '.join(CAPTION_PLANS)}, not {plan!r}.")
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


class Scorer:
    """A data set's metrics at one resolution, built once: used by ``chapterN-eval`` and by the
    in-training :class:`PeriodicMetrics` callback.

    * ``shapes`` / ``shapes-pairs``: the oracle (per-attribute accuracy, oracle FID against the real test images).
    * other data sets: Inception FID and IS when ``fid_weights`` (config, or $T2IGAN_FID_WEIGHTS)
      names a local file; the real test images' statistics are cached beside the image cache.
    * otherwise no image metric (the chapter's own ``extra``, e.g. R-precision, still runs).
    """

    def __init__(self, config, index, real_images: Callable[[], np.ndarray], cache_dir: str | None = None):
        self.config, self.index, self.real_images, self.cache_dir = config, index, real_images, cache_dir
        self.weights = config.get("fid_weights") or os.environ.get("T2IGAN_FID_WEIGHTS")
        if index.name in ("shapes", "shapes-pairs"):
            self.kind = "oracle"
        elif self.weights:
            from t2igan.metrics.inception import protocol_name

            self.kind = protocol_name(config.get("fid_extractor", "pytorch-fid"))  # tf-fid: its former name
        else:
            self.kind = None
        self._ready = False
        self.confusion: dict = {}  # the oracle's per-attribute confusion of the last score(); {} for other data sets

    def _prepare(self):
        if self._ready:
            return
        if self.kind == "oracle":
            from t2igan import oracle as oracle_module

            cache = os.path.join(self.index.root, "oracle")
            epochs = self.config.get("oracle_epochs") or oracle_module.DEFAULT_EPOCHS
            size = self.config["image_size"]
            self.oracle = oracle_module.load_or_train_oracle(self.index.root, size, cache, epochs=epochs)
            weights = os.path.join(cache, f"oracle-{self.index.name}-{size}px.weights.h5")
            real, _ = oracle_module.load_split_arrays(self.index.root, "test", size)
            self.real_features = self.oracle.features(real)
            self.protocol = {
                "feature_extractor": f"shapes oracle, penultimate layer ({self.real_features.shape[1]}-d), "
                                     f"sha256 {_sha256(weights)[:16]}",
                "oracle_real_test_accuracy": self.oracle.report.get("test_accuracy"),
                "reference": f"{len(real)} real test images of {os.path.basename(self.index.root)}",
            }
        elif self.kind is not None:
            from t2igan.metrics.fid import family_mismatch, load_statistics, save_statistics
            from t2igan.metrics.inception import make_extractor

            if not os.path.isfile(self.weights):
                from t2igan.errors import UserError
                from t2igan.metrics.inception import missing_weights_message

                raise UserError("fid_weights: " + missing_weights_message(self.kind, self.weights))
            self.extractor = make_extractor(self.kind, self.weights)
            name = (f"fid-stats-{self.index.name}-test-{self.config['image_size']}px-{self.kind}-"
                    f"{self.extractor.pipeline_id}-{self.extractor.weights_sha256[:12]}.npz")
            path = os.path.join(self.cache_dir or os.path.join(self.index.root, "cache"), name)
            if os.path.isfile(path):
                self.real_mu, self.real_sigma, stored = load_statistics(path)
                mismatch = family_mismatch(stored, self.extractor)
                if mismatch:  # the name carries the pipeline: only a file put there by hand gets here
                    raise ValueError(f"{path} {mismatch}; delete it (it is a cache).")
            else:
                images = self.real_images()
                self.real_mu, self.real_sigma = self._statistics(np.asarray(images, np.float32) / 127.5 - 1.0
                                                                 if images.dtype == np.uint8 else images)[0]
                os.makedirs(os.path.dirname(path), exist_ok=True)
                save_statistics(path, self.real_mu, self.real_sigma,
                                {"images": len(images), "split": "test", "image_size": self.config["image_size"],
                                 "feature_extractor": self.extractor.describe(), "family": self.extractor.family,
                                 "image_pipeline": self.extractor.protocol_input})
            self.protocol = {"feature_extractor": self.extractor.describe(),
                             "image_pipeline_for_features": self.extractor.protocol_input,
                             "reference": f"test split of {self.index.name} at {self.config['image_size']} px, "
                                          f"statistics cached in {path} (sha256 {_sha256(path)[:16]})"}
        else:
            self.protocol = {"note": "No domain oracle for this data set and no fid_weights: no image metric. "
                                     "Set --set fid_weights=FILE (docs/metrics.md)."}
        self._ready = True

    def _statistics(self, images, batch_size: int = 50):
        from t2igan.metrics.fid import RunningStatistics

        running, logits = RunningStatistics(), []
        for start in range(0, len(images), batch_size):
            pool, scores = self.extractor(images[start : start + batch_size])
            running.update(np.asarray(pool, np.float64))
            if scores is not None:  # the torchvision protocol has no classifier
                logits.append(np.asarray(scores, np.float64))
        return running.result(), (np.concatenate(logits) if logits else np.zeros((0, 0)))

    def score(self, plan, images) -> tuple[dict, dict]:
        """(results, protocol) for generated ``images`` (in [-1, 1]) of the ``plan``'s captions."""
        self._prepare()
        protocol, results = dict(self.protocol), {}
        if self.kind == "oracle":
            from t2igan.metrics.fid import covariance_warnings, frechet_distance, statistics

            attributes = [self.index.test[i].caption_attributes[c] for i, c in plan]
            score = self.oracle.score(images, attributes)
            results = {f"oracle_accuracy/{k}": v for k, v in score.items() if k not in ("counts", "confusion")}
            self.confusion = {head: {"values": list(self.oracle.heads[head]), "stated_by_drawn": matrix}
                              for head, matrix in score["confusion"].items()}
            real, fake = statistics(self.real_features), statistics(self.oracle.features(images))
            results["oracle_fid"] = frechet_distance(*real, *fake)
            protocol["counts"] = score["counts"]
            warnings = covariance_warnings(real[1], fake[1], len(self.real_features), len(images), check_rank=False)
            if warnings:
                protocol["fid_warning"] = "; ".join(warnings)
        elif self.kind is not None:
            from t2igan.metrics.fid import covariance_warnings, frechet_distance, sample_count_warning
            from t2igan.metrics.inception_score import inception_score, softmax

            (mu, sigma), logits = self._statistics(images)
            results["fid"] = frechet_distance(self.real_mu, self.real_sigma, mu, sigma)
            warnings = covariance_warnings(self.real_sigma, sigma, None, len(images))
            if not self.extractor.has_logits:
                protocol["inception_score"] = f"not with the {self.kind} protocol (its network has no classifier)"
            elif len(logits) >= 10:
                results["inception_score"], results["inception_score_std"] = inception_score(softmax(logits), 10)
                protocol["inception_score"] = (f"softmax over the extractor's logits ({self.kind}: pool3·W, no bias), "
                                               "10 splits")
            if warnings:
                protocol["fid_warning"] = "; ".join(warnings)
            if sample_count_warning(len(images)):
                protocol["sample_count_warning"] = sample_count_warning(len(images))
        return results, protocol


def evaluate_run(run, config, index, generate: Callable, noise_dim: int, eval_samples: int, seed: int,
                 data_root: str, generator_name: str = "generator", extra: Callable | None = None,
                 real_images: Callable[[], np.ndarray] | None = None) -> dict:
    """``extra(plan, images) -> (results, protocol)`` adds a chapter's own metrics (e.g. R-precision);
    ``real_images()`` gives the real test images (uint8) for Inception reference statistics."""
    started = time.time()
    plan_name = config.get("eval_caption_plan", "every-caption")
    plan = caption_plan(index.test, eval_samples, seed, plan_name)
    if not plan:
        raise ValueError(f"The test split of {index.name} has no captions to evaluate.")
    images = generate_for(plan, generate, noise_dim, seed)
    # eval.png: the first 64 images, each with its caption (shortened) above it: the grid reads on its own.
    save_png(captioned_grid(images, [index.test[i].captions[c] for i, c in plan[:64]]),
             os.path.join(run.samples, "eval.png"))
    latest = _latest_checkpoint(run)
    protocol = {
        "generated_images": len(images),
        "captions": f"test split of {index.name}: " + (
            f"DM-GAN's plan: {len(plan)} images, passes over the test images (shuffled, seed {seed}), one random "
            "caption per image per pass" if plan_name == "dm-gan"
            else "every caption of every image, once" if not eval_samples
            else f"{len(plan)} captions drawn with seed {seed}"),
        "noise": f"N(0, I), one vector per caption, seed {seed}",
        "generator": f"{generator_name} from {latest}",
        "image_pipeline": f"generator output [-1, 1] → uint8 → [-1, 1]; {config['image_size']} px; RGB; no resize",
    }
    scorer = Scorer(config, index, real_images or (lambda: np.zeros((0,))), os.path.join(data_root, "cache"))
    results, more = scorer.score(plan, images)
    protocol.update(more)
    if extra is not None:
        more_results, more_protocol = extra(plan, images)
        results.update(more_results)
        protocol.update(more_protocol)
    protocol["software"] = software()
    summary = {"protocol": protocol, "results": results, "seconds": round(time.time() - started, 1)}
    if scorer.confusion:
        summary["confusion"] = scorer.confusion
    run.update_metrics("eval", summary)
    _log_to_tensorboard(run, results, latest)
    print_card(protocol, results)
    if scorer.confusion:
        print_mistakes(scorer.confusion)
    return summary


def software() -> str:
    """Versions and devices, for the protocol card."""
    import keras
    import tensorflow as tf

    devices = sorted({d.device_type for d in tf.config.list_logical_devices()})
    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}; devices {devices}"


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


def commonest_mistakes(confusion: dict, top: int = 3, floor: float = 0.05) -> dict[str, list[tuple[str, str, float, int]]]:
    """Per attribute, the ``top`` (stated, drawn) value pairs the oracle reads most often instead of the stated
    value, as (stated, drawn, share of the images whose caption states it, that number of images); only shares
    of at least ``floor``."""
    mistakes = {}
    for head, entry in confusion.items():
        values, matrix = entry["values"], np.asarray(entry["stated_by_drawn"], np.float64)
        stated_totals = matrix.sum(axis=1)
        cells = [(values[i], values[j], matrix[i, j] / stated_totals[i], int(stated_totals[i]))
                 for i in range(len(values)) for j in range(len(values))
                 if i != j and stated_totals[i] and matrix[i, j] / stated_totals[i] >= floor]
        mistakes[head] = sorted(cells, key=lambda cell: -cell[2])[:top]
    return mistakes


def print_mistakes(confusion: dict) -> None:
    """The commonest mistakes per attribute, below the results (metrics.json keeps every count under eval.confusion)."""
    print("Commonest mistakes (stated → drawn: share of the images whose caption states it; eval.confusion in metrics.json)")
    for head, cells in commonest_mistakes(confusion).items():
        text = ", ".join(f"{stated} → {drawn} {share:.0%} of {total}" for stated, drawn, share, total in cells)
        print(f"  {head:<26} {text or 'none above 5 %'}")


def print_card(protocol, results):
    """The protocol card, then the values (``chapterN-eval`` and ``python -m t2igan.evaluate_folders``)."""
    print("Evaluation protocol")
    for key, value in protocol.items():
        print(f"  {key:<26} {value}")
    print("Results")
    for key, value in results.items():
        print(f"  {key:<26} {value:.4f}")
    if not results:
        print("  (no image metric available for this data set)")
