"""What every chapter's command line shares: flags, profiles, errors, the fit loop.

A chapter's ``__main__`` defines its commands (``pretrain``, ``train``,
``sample``, ``eval``) and calls :func:`run_commands`. Users meet this module as
``make chapterN-<command> DATASET=... PROFILE=... RUN_DIR=... ARGS=...``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from typing import Any, Callable

from absl import app, flags, logging

FLAGS = flags.FLAGS

PROFILE_NAMES = ("smoke", "course", "paper")

flags.DEFINE_string("dataset", "shapes", "Data set: shapes, shapes-pairs, birds, flowers, coco, or a folder in the custom layout.")
flags.DEFINE_enum("profile", "course", PROFILE_NAMES, "smoke: seconds (tests); course: ≤ 20 min on a 2-core CPU; paper: the official configuration (GPUs).")
flags.DEFINE_string("run_dir", None, "Run folder (config, checkpoints, logs, samples, metrics). Default: runs/<chapter>-<dataset>-<profile>.")
flags.DEFINE_string("data_dir", None, "Folder of a real data set (default: data/<dataset>).")
flags.DEFINE_string("data_root", "data", "Where generated data sets and caches are kept.")
flags.DEFINE_string("metadata_dir", None, "Folder with official metadata (e.g. AttnGAN's captions.pickle, for the official vocabulary).")
flags.DEFINE_multi_string("set", [], "Override a profile setting: --set batch_size=32 --set image_size=32 (repeatable).")
flags.DEFINE_integer("epochs", None, "Override the profile's number of epochs.")
flags.DEFINE_integer("seed", 0, "Random seed of the run (data order, initialisation, noise).")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices and train with MirroredStrategy over them.")
flags.DEFINE_enum("distribution", "auto", ["auto", "default", "mirrored", "multiworker"], "tf.distribute strategy (auto: TF_CONFIG → multi-worker, GPUs → mirrored, else one device).")
flags.DEFINE_bool("mixed_precision", False, "Train with mixed_float16 (GPUs).")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_string("text", None, "Sampling: the caption to draw.")
flags.DEFINE_string("interpolate_to", None, "Sampling: a second caption; the grid then interpolates between the two (GAN-INT).")
flags.DEFINE_integer("n", 8, "Sampling: number of images (different noise each).")
flags.DEFINE_integer("sample_seed", 0, "Sampling / evaluation: noise seed.")
flags.DEFINE_string("output", None, "Sampling: PNG path (default: <run_dir>/samples/sample-….png).")
flags.DEFINE_integer("eval_samples", 0, "Evaluation: number of generated images (0: every test caption once).")
flags.DEFINE_bool("traceback", False, "Show the Python traceback of a user error.")


from t2igan.errors import UserError  # noqa: E402,F401  (re-exported: chapters import it from here)


def default_run_dir(chapter_number: int, dataset: str, profile: str) -> str:
    name = os.path.basename(os.path.normpath(dataset)) if os.path.sep in dataset else dataset
    return os.path.join("runs", f"ch{chapter_number}-{name}-{profile}")


def _parse_value(key: str, raw: str, current: Any) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if current is None or isinstance(value, type(current)):
        return value
    if isinstance(current, bool):
        raise UserError(f"--set {key}={raw}: expected true or false.")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, list):
        return value
    raise UserError(f"--set {key}={raw}: expected a {type(current).__name__} like {json.dumps(current)}.")


# Settings every chapter has (a chapter's profile may override them): the in-training metrics
# (t2igan.training.callbacks.PeriodicMetrics) and the Inception weights for FID/IS on real data sets.
SHARED_SETTINGS = {
    "smoke": dict(metrics_every_epochs=0, metrics_samples=32),   # tests turn it on where they check it
    "course": dict(metrics_every_epochs=5, metrics_samples=256),
    "paper": dict(metrics_every_epochs=10, metrics_samples=5000),
}
INCEPTION_SETTINGS = dict(fid_weights="", fid_extractor="tf-fid")


def resolve_config(profiles: dict[str, dict], profile: str, dataset: str, overrides: list[str], epochs: int | None) -> dict:
    """Shared settings, the profile's, its per-data-set adjustments, then ``--set`` overrides."""
    if profile not in profiles:
        raise UserError(f"Unknown PROFILE {profile!r}; choose one of {', '.join(profiles)}.")
    config = {**INCEPTION_SETTINGS, **SHARED_SETTINGS.get(profile, {}), **copy.deepcopy(profiles[profile])}
    per_dataset = config.pop("datasets", {})
    family = "shapes" if dataset.startswith("shapes") else dataset
    config.update(copy.deepcopy(per_dataset.get(family, {})))
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}.")
        key, raw = item.split("=", 1)
        if key not in config:
            raise UserError(f"--set {key}: no such setting. Known settings: {', '.join(sorted(config))}.")
        config[key] = _parse_value(key, raw, config[key])
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs must be ≥ 1, got {epochs}.")
        config["epochs"] = epochs
    config["profile"] = profile
    config["dataset"] = dataset
    return config


def load_data(config: dict):
    """The data set named by ``--dataset`` as a DatasetIndex (generating ``shapes`` on first use)."""
    from t2igan.data.loaders import load_dataset

    shapes_options = {}
    if FLAGS.dataset.startswith("shapes"):
        shapes_options = dict(image_size=config["image_size"], num_train=config.get("shapes_train", 10000),
                              num_test=config.get("shapes_test", 1000), seed=config.get("shapes_seed", 0),
                              compositional_split=config.get("shapes_compositional_split", False))
    return load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir, data_root=FLAGS.data_root,
                        metadata_dir=FLAGS.metadata_dir, **shapes_options)


def set_up_precision() -> None:
    import keras

    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


def fit_verbosity() -> int:
    """Keras' progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def run_commands(commands: dict[str, Callable[[], None]], usage: str) -> None:
    """absl entry point: ``python -m chapters.NN_name <command> --flags``."""

    def main(argv):
        if len(argv) != 2 or argv[1] not in commands:
            given = " ".join(argv[1:]) or "nothing"
            print(f"error: expected one command of: {', '.join(commands)} (got {given}).\n\n{usage}", file=sys.stderr)
            sys.exit(2)
        started = time.time()
        try:
            commands[argv[1]]()
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            from t2igan.training.run import NonFiniteLossError

            if FLAGS.traceback or not _is_user_error(error):
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(3 if isinstance(error, NonFiniteLossError) else 2)
        logging.info("%s finished in %.1f s.", argv[1], time.time() - started)

    app.run(main)


def _is_user_error(error: Exception) -> bool:
    """Errors whose message we wrote for the user; anything from TensorFlow's internals keeps its traceback."""
    from t2igan.training.run import NonFiniteLossError

    return isinstance(error, (UserError, FileNotFoundError, NonFiniteLossError)) or type(error) is ValueError
