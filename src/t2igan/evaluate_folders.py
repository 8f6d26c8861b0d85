"""``python -m t2igan.evaluate_folders`` (``make eval``): FID (and IS) between two image folders, or a run's eval.

    python -m t2igan.evaluate_folders --real=REAL_FOLDER_OR_STATS.npz --fake=FAKE_FOLDER \\
        [--extractor=pytorch-fid|torchvision|keras-imagenet|oracle] [--inception_weights=PATH] [--batch_size=50]
    python -m t2igan.evaluate_folders --run=runs/ch3-shapes-course     # = make chapter3-eval RUN_DIR=…

Images are read in batches (PNG/JPEG, RGB), so 30,000 images never sit in memory at once: only the
features' running sums do. Every run prints the protocol card and, with ``--output``, stores it with
the values as JSON. ``--save_real_stats=FILE.npz`` caches the real folder's μ and Σ (with their
protocol) for later ``--real=FILE.npz``; DF-GAN's and DM-GAN's ``.npz`` files load the same way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
from absl import app, flags, logging

from t2igan.errors import UserError

flags.DEFINE_string("real", None, "Folder of real images, or an .npz of reference statistics (mu, sigma).")
flags.DEFINE_string("fake", None, "Folder of generated images.")
flags.DEFINE_string("run", None, "A run folder: run its chapter's eval instead (the chapter generates the images).")
flags.DEFINE_enum("extractor", "pytorch-fid", ["pytorch-fid", "torchvision", "keras-imagenet", "oracle", "tf-fid"],
                  "The FID protocol (docs/metrics.md): pytorch-fid (family A, the FID Inception: TTUR, pytorch-fid, "
                  "AttnGAN's later figures), torchvision (family B, ImageNet Inception-v3: DM-GAN's and DF-GAN's "
                  "figures and .npz statistics), keras-imagenet (not comparable with papers), oracle (shapes data "
                  "sets only); tf-fid is pytorch-fid's former name.")
flags.DEFINE_string("inception_weights", os.environ.get("T2IGAN_FID_WEIGHTS"),
                    "Local weights file of the protocol's network (default: $T2IGAN_FID_WEIGHTS): "
                    "pt_inception-2015-12-05-6726825d.pth, inception_v3_google-*.pth, or the Keras .h5.")
flags.DEFINE_string("oracle_data", None, "extractor=oracle: the shapes data set folder whose oracle is used "
                    "(e.g. data/shapes-32px-seed0).")
flags.DEFINE_integer("image_size", 0, "extractor=oracle: the oracle's resolution (default: the fake images' size).")
flags.DEFINE_integer("batch_size", 50, "Images per feature-extraction batch (the reference implementations use 50).")
flags.DEFINE_bool("inception_score", True, "Also report the Inception Score of the fake folder (Inception extractors).")
flags.DEFINE_integer("splits", 10, "Inception Score splits.")
flags.DEFINE_string("classifier", None, "IS with your own classifier instead: a Keras model file (.keras) mapping "
                    "299×299 RGB images in [-1, 1] to logits (e.g. a port of StackGAN's fine-tuned CUB/Oxford Inception).")
flags.DEFINE_bool("drop_first_class", False, "IS: drop logit 0 before the softmax (the background class of "
                  "StackGAN's fine-tuned classifiers, as their inception_score.py does).")
flags.DEFINE_string("save_real_stats", None, "Write the real folder's statistics (and protocol) to this .npz.")
flags.DEFINE_string("output", None, "Write the protocol card and values to this JSON file.")
flags.DEFINE_bool("random_weights_for_tests", False, "Build the Inception with random weights (tests only; "
                  "the values mean nothing).")
flags.DEFINE_bool("traceback", False, "Show the Python traceback of a user error.")
FLAGS = flags.FLAGS

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is not a folder of images.")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMAGE_TYPES))
    if len(files) < 2:
        raise UserError(f"{folder} holds {len(files)} image(s) ({', '.join(IMAGE_TYPES)}); FID needs at least 2, "
                        "the reference protocols 30,000.")
    return files


def image_batches(files: list[str], batch_size: int, size: int | None):
    """RGB images in [-1, 1], ``batch_size`` at a time; each resized to ``size`` (bilinear, half-pixel) when given."""
    import tensorflow as tf
    from PIL import Image

    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start : start + batch_size]:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"), np.float32) / 127.5 - 1.0
            if size and pixels.shape[:2] != (size, size):
                pixels = np.asarray(tf.image.resize(pixels, (size, size), method="bilinear", antialias=False))
            batch.append(pixels)
        yield np.stack(batch)


class OracleExtractor:
    """The shapes oracle's penultimate features (a domain FID: comparable only with other oracle FIDs)."""

    name = "oracle"
    family = "oracle"
    has_logits = False

    def __init__(self, data_root: str, image_size: int):
        from t2igan import oracle as oracle_module

        if not data_root or not os.path.isfile(os.path.join(data_root, "dataset.json")):
            raise UserError(f"--oracle_data={data_root} is not a shapes data set folder: give the one the images come "
                            "from (e.g. data/shapes-32px-seed0, which `make chapter1-train` creates).")
        cache = os.path.join(data_root, "oracle")
        self.oracle = oracle_module.load_or_train_oracle(data_root, image_size, cache)
        with open(os.path.join(data_root, "dataset.json"), encoding="utf-8") as file:
            name = json.load(file)["name"]
        self.weights = oracle_module.cache_paths(cache, name, image_size)[0]
        self.image_size = image_size
        self.protocol_input = f"[-1, 1], resized to {image_size} px (bilinear) when needed; RGB"

    def features(self, images):
        return np.asarray(self.oracle.features(images), np.float64)

    def describe(self) -> str:
        from t2igan.metrics.inception import sha256

        digest = sha256(self.weights)[:16] if os.path.isfile(self.weights) else "?"
        return f"oracle: shapes oracle at {self.image_size} px, penultimate layer, sha256 {digest}"


def folder_statistics(extractor, files, batch_size, size, with_logits=False):
    from t2igan.metrics.fid import RunningStatistics

    running, logits = RunningStatistics(), []
    for images in image_batches(files, batch_size, size):
        if with_logits:
            pool, scores = extractor(images)
            running.update(np.asarray(pool, np.float64))
            logits.append(np.asarray(scores, np.float64))
        else:
            running.update(extractor.features(images))
    return running.result(), (np.concatenate(logits) if with_logits else None)


def evaluate_folders() -> dict:
    from t2igan.metrics.fid import (covariance_warnings, family_mismatch, frechet_distance, load_statistics,
                                    sample_count_warning, save_statistics)
    from t2igan.metrics.inception import sha256
    from t2igan.scoring import print_card, software
    from t2igan.metrics.inception_score import inception_score, softmax

    if not FLAGS.real or not FLAGS.fake:
        raise UserError("Give both --real (folder or .npz) and --fake (folder), or --run=RUN_DIR. "
                        "With make: make eval REAL=... FAKE=...")
    if FLAGS.extractor != "oracle" and not FLAGS.inception_weights and not FLAGS.random_weights_for_tests:
        from t2igan.metrics.inception import missing_weights_message

        raise UserError(missing_weights_message(FLAGS.extractor, None))
    fake_files = image_files(FLAGS.fake)
    if FLAGS.extractor == "oracle":
        from PIL import Image

        with Image.open(fake_files[0]) as first:
            size = FLAGS.image_size or first.size[0]
        extractor = OracleExtractor(FLAGS.oracle_data, size)
    else:
        from t2igan.metrics.inception import make_extractor

        weights = None if FLAGS.random_weights_for_tests else FLAGS.inception_weights
        try:
            extractor = make_extractor(FLAGS.extractor, weights)
        except FileNotFoundError as error:
            raise UserError(str(error)) from error
        size = None  # the network resizes to 299 itself
    with_is = FLAGS.inception_score and FLAGS.extractor != "oracle" and (extractor.has_logits or bool(FLAGS.classifier))
    protocol = {"metric": "FID (Fréchet distance, float64, eigen-form √)" + (" and IS" if with_is else ""),
                "feature_extractor": extractor.describe(), "image_pipeline": extractor.protocol_input,
                "generated_images": f"{len(fake_files)} files in {FLAGS.fake}",
                "batch_size": f"{FLAGS.batch_size}, remainder kept"}
    if FLAGS.extractor == "tf-fid":
        protocol["extractor_name"] = "tf-fid is the former name of the pytorch-fid protocol (the same network and pipeline)"
    if FLAGS.real.endswith(".npz"):
        if not os.path.isfile(FLAGS.real):
            raise UserError(f"--real={FLAGS.real}: no such statistics file.")
        real_mu, real_sigma, stored = load_statistics(FLAGS.real)
        mismatch = family_mismatch(stored, extractor) if FLAGS.extractor != "oracle" else None
        if mismatch:
            raise UserError(f"--real={FLAGS.real} {mismatch}. Use the extractor the file was made with, or recompute "
                            "the statistics from the real images (--real=FOLDER --save_real_stats=NEW.npz).")
        protocol["reference"] = (f"{FLAGS.real} sha256 {sha256(FLAGS.real)[:16]}"
                                 + (f" ({stored})" if stored else " (made elsewhere; its protocol is unknown)"))
        if not stored.get("family") and FLAGS.extractor != "oracle":
            protocol["reference_warning"] = (
                "the statistics file does not say which network made it: the FID means something only if it was "
                f"this protocol's ({extractor.name}; DF-GAN's and DM-GAN's .npz files are family B, --extractor=torchvision)")
    else:
        real_files = image_files(FLAGS.real)
        (real_mu, real_sigma), _ = folder_statistics(extractor, real_files, FLAGS.batch_size, size)
        protocol["reference"] = f"{len(real_files)} files in {FLAGS.real}"
        if FLAGS.save_real_stats:
            save_statistics(FLAGS.save_real_stats, real_mu, real_sigma,
                            {"images": len(real_files), "folder": FLAGS.real, "feature_extractor": extractor.describe(),
                             "image_pipeline": extractor.protocol_input,
                             "family": getattr(extractor, "family", extractor.name)})
            protocol["saved_reference"] = FLAGS.save_real_stats
    if FLAGS.extractor != "oracle" and real_mu.shape[0] != 2048:
        raise UserError(f"The reference statistics are {real_mu.shape[0]}-d but {extractor.name} features are 2048-d.")
    (fake_mu, fake_sigma), logits = folder_statistics(extractor, fake_files, FLAGS.batch_size, size,
                                                      with_logits=with_is and extractor.has_logits)
    results = {"fid": frechet_distance(real_mu, real_sigma, fake_mu, fake_sigma)}
    warnings = covariance_warnings(real_sigma, fake_sigma, None if FLAGS.real.endswith(".npz") else len(real_files),
                                   len(fake_files))
    if warnings:
        protocol["fid_warning"] = "; ".join(warnings)
        logging.warning("FID: %s.", protocol["fid_warning"])
    if FLAGS.extractor != "oracle" and sample_count_warning(len(fake_files)):
        protocol["sample_count_warning"] = sample_count_warning(len(fake_files))
    if FLAGS.inception_score and not with_is and FLAGS.extractor != "oracle":
        protocol["inception_score"] = f"not with the {extractor.name} protocol (its network has no classifier)"
    if with_is:
        described = (f"softmax over {logits.shape[1]} logits (improved-gan: pool3·W, no bias)" if extractor.name == "pytorch-fid"
                     else "softmax over Keras ImageNet's 1000 logits (not comparable with papers)")
        if FLAGS.classifier:
            logits, described = classifier_logits(fake_files), f"your classifier {FLAGS.classifier} sha256 {sha256(FLAGS.classifier)[:16]}"
        if FLAGS.drop_first_class:
            described += "; logit 0 (background) dropped before the softmax"
        if len(logits) < FLAGS.splits:
            protocol["inception_score"] = f"skipped: {len(logits)} images < {FLAGS.splits} splits"
        else:
            probabilities = softmax(logits, drop_first_class=FLAGS.drop_first_class)
            results["inception_score"], results["inception_score_std"] = inception_score(probabilities, FLAGS.splits)
            protocol["inception_score"] = described + f"; {FLAGS.splits} contiguous splits, mean ± std"
    protocol["software"] = software()
    print_card(protocol, results)
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump({"protocol": protocol, "results": results}, file, indent=2, ensure_ascii=False)
    return results


def classifier_logits(files) -> np.ndarray:
    """Logits of a user-supplied Keras classifier on 299×299 bilinear-resized images in [-1, 1]."""
    import keras

    if not os.path.isfile(FLAGS.classifier):
        raise UserError(f"--classifier={FLAGS.classifier}: no such file (a Keras .keras model).")
    model = keras.models.load_model(FLAGS.classifier, compile=False)
    return np.concatenate([np.asarray(model(images, training=False), np.float64)
                           for images in image_batches(files, FLAGS.batch_size, 299)])


def chapter_packages() -> list[str]:
    """The chapter packages (``ch1_gan_int_cls`` …): folders of ``chapters`` with a ``__main__.py``, found on
    the path without importing them (the library never imports a chapter)."""
    import importlib.util

    spec = importlib.util.find_spec("chapters")
    folders = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    return sorted(name for folder in folders for name in os.listdir(folder)
                  if re.fullmatch(r"ch\d+_\w+", name) and os.path.isfile(os.path.join(folder, name, "__main__.py")))


def evaluate_run_folder():
    config_path = os.path.join(FLAGS.run, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"{FLAGS.run} is not a run folder (no config.json).")
    from t2igan.training.run import owner_of

    with open(config_path) as file:
        try:
            config = json.load(file)
        except json.JSONDecodeError as error:
            raise UserError(f"{config_path} is not valid JSON ({error}); restore it.") from None
    chapter = owner_of(config) if isinstance(config, dict) else None
    known = chapter_packages()
    if chapter not in known:
        # a crafted or damaged config.json must not run another module (which would "succeed", evaluating nothing)
        raise UserError(f"{config_path} names the chapter {chapter!r}, which is not one of this project's "
                        f"({', '.join(known)}); restore the run's config.json.")
    command = [sys.executable, "-m", f"chapters.{chapter}", "eval", f"--run_dir={FLAGS.run}"]
    print("Running", " ".join(command[1:]))
    return subprocess.call(command)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}; see --help.")
    if FLAGS.random_weights_for_tests:
        import keras

        keras.utils.set_random_seed(0)  # the same random network in every process
    try:
        if FLAGS.run:
            return evaluate_run_folder()
        evaluate_folders()
    except UserError as error:
        if FLAGS.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
