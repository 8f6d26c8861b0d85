"""What every chapter's entry module does around its own GAN, as plain functions with explicit arguments.

An entry module (``chapters/chN_*/__main__.py``) reads top to bottom:

    strategy, run, config = start_training(...)      # strategy first: it must precede every TF op
    index = load_data(config, data_root)
    ... the chapter's text encoder ...
    gan, optimizers, checkpointer, initial_epoch = build_for_training(...)
    dataset = make_dataset(...)                       # t2igan.data.pipeline
    callbacks = training_callbacks(...) + the chapter's own
    fit(gan, dataset, ...)

``open_run`` is the same for ``sample`` and ``eval``: the stored ``config.json``, no strategy.
"""

from __future__ import annotations

import os
import re
from typing import Callable

import numpy as np
from absl import logging

from t2igan.config import Config, default_run_dir, resolve_config
from t2igan.errors import UserError


def chapter_number(chapter: str) -> int:
    """``"ch4_dfgan_ratgan"`` → 4."""
    return int(chapter[2:].split("_", 1)[0])


# ---------------------------------------------------------------------------- set-up
def start_training(chapter: str, options, profiles: dict, *, run_dir: str | None = None,
                   variant_settings: dict | None = None, adjust: Callable[[Config], None] | None = None,
                   check_networks: Callable[[dict], object] | None = None):
    """Strategy (before any other TF op), the resolved config, and the run folder with ``config.json``.

    ``run_dir`` defaults to ``options.run_dir`` or ``runs/chN-<dataset>-<profile>``; ``variant_settings``
    override the profile except where the user gave ``--set``; ``adjust(config)`` may change the resolved
    config before it is written; ``check_networks(config)`` builds the GAN's networks once, untrained and
    thrown away, so that a setting they cannot take fails now, not after minutes of pretraining. Returns
    ``(strategy, run, config)``.
    """
    from t2igan.training.distribute import barrier, make_strategy, worker_run_dir
    from t2igan.training.run import RunDirectory

    strategy = make_strategy(options.distribution, options.cpu_replicas, getattr(options, "peer_timeout", 300))
    run_dir = run_dir or options.run_dir or default_run_dir(chapter_number(chapter), options.dataset, options.profile)
    run = RunDirectory(worker_run_dir(strategy, run_dir), chapter)  # the chief's: run_dir; another worker's: a copy
    barrier(strategy)  # every worker has copied the run folder before the chief writes to it
    config = resolve_config(profiles, options.profile, options.dataset, options.set, options.epochs, variant_settings)
    config["seed"] = options.seed
    apply_jit_compile_flag(config, options)
    _check_jit_compile(config, strategy)
    # Where the data came from, so that sample/eval find it again without the flags.
    config.update(data_dir=options.data_dir, metadata_dir=options.metadata_dir)
    if adjust is not None:
        adjust(config)
    run.check_config(config)  # another chapter's folder, or a changed data set or size: refused before anything
    if check_networks is not None:
        check_networks(config)  # its random draws are undone: the seed is set below, after it
    run.lock()  # one training per run folder
    # config.json is written once the run really starts (commit_config: the networks are built and the
    # checkpoint fits them, or the pretraining is done), so a failed start never poisons the folder.
    run.pending_config = config
    run.time_steps = getattr(options, "time_steps", 0)  # > 0: harness.fit times steps, trains nothing
    check_benchmark_folder(run, run.time_steps)
    _seed_and_precision(config["seed"], options.mixed_precision)
    return strategy, run, config


def apply_jit_compile_flag(config: Config, options) -> None:
    """``--jit_compile`` / ``--nojit_compile`` (``options.jit_compile`` True / False) override the profile's
    ``jit_compile`` and count as set by the user; not given (None), the profile's stays."""
    if getattr(options, "jit_compile", None) is not None:
        config["jit_compile"] = options.jit_compile
        config.user_set |= {"jit_compile"}


def _check_jit_compile(config: Config, strategy) -> None:
    """XLA compiles one device's step: with several replicas on CPUs (``--cpu_replicas``, or multi-worker
    without GPUs) it cannot (a variable on another device), so a profile's ``jit_compile`` or
    ``pretrain_jit_compile`` is turned off, and said; asked for explicitly, it is refused."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1 or tf.config.list_logical_devices("GPU"):
        return
    for key, flag in (("jit_compile", "--jit_compile"), ("pretrain_jit_compile", "--set=pretrain_jit_compile=true")):
        if not config.get(key):
            continue
        if key in config.user_set:
            raise UserError(f"{flag} cannot compile one step for {strategy.num_replicas_in_sync} replicas on CPUs "
                            f"(XLA keeps a step on one device): drop {flag}, or train on one device.")
        logging.warning("XLA off (the profile's %s): it cannot compile one step for %d replicas on CPUs.", key,
                        strategy.num_replicas_in_sync)
        config[key] = False


def check_benchmark_folder(run, time_steps: int) -> None:
    """A benchmark (``--time_steps``) writes checkpoints of its own: it needs a run folder without checkpoints,
    and a training refuses a folder that a benchmark wrote (it would resume from the benchmark's epochs)."""
    import glob
    import json

    benchmarked = False
    if os.path.exists(run.metrics_path):
        with open(run.metrics_path, encoding="utf-8") as file:
            benchmarked = any(key.startswith("benchmark") for key in json.load(file))
    trained = glob.glob(os.path.join(glob.escape(run.path), "**", "ckpt-*.index"), recursive=True)  # any stage's
    if time_steps and trained:  # a training's, or an earlier benchmark's (it would resume after them)
        raise UserError(f"--time_steps writes a benchmark's checkpoints and needs a run folder without any, but "
                        f"{run.path} has some: use a fresh one, e.g. --run_dir=runs/benchmark/mine (make benchmark "
                        "replaces its folders under runs/benchmark).")
    if not time_steps and benchmarked:
        raise UserError(f"{run.path} holds a benchmark (train --time_steps), not a training: train in another run "
                        "folder (RUN_DIR=...), or delete this one.")


def open_run(chapter: str, options, run_dir: str | None = None, variant_key: str | None = None):
    """A trained run for ``sample`` / ``eval``: ``(run, config)`` from its ``config.json``; ``--data_dir`` and
    ``--metadata_dir`` given now take precedence over the stored ones (the data may have moved). A
    ``--variant`` given on the command line must be the run's (``config[variant_key]``): a run is sampled
    as what it was trained as, never silently as something else."""
    from t2igan.training.run import RunDirectory

    number = chapter_number(chapter)
    run_dir = run_dir or options.run_dir or default_run_dir(number, options.dataset, options.profile)
    run = RunDirectory(run_dir, chapter)
    if getattr(options, "set", None):  # a setting given here would be silently ignored
        raise UserError(f"--set {options.set[0]}: settings belong to training; sample and eval use the run's "
                        f"config.json ({run.config_path}). Leave --set out (or train a run with it).")
    config = run.check_owner()
    if config is None:
        raise UserError(f"No trained run in {run_dir} (no config.json). "
                        f"Train first: make chapter{number}-train DATASET={options.dataset} "
                        f"PROFILE={options.profile} RUN_DIR={run_dir}")
    missing = [key for key in ("dataset", "profile", "seed") if key not in config]
    if missing:
        raise UserError(f"{run.config_path} is not a trained run's configuration (it lacks {', '.join(missing)}); "
                        f"it was edited or written by something else: restore it, or use another RUN_DIR.")
    trained_as = config.get(variant_key) if variant_key else None
    if trained_as is not None and "variant" in getattr(options, "given", ()) and options.variant != trained_as:
        raise UserError(f"{run_dir} holds a {trained_as} run, not {options.variant}: leave VARIANT out to use it "
                        f"as trained (VARIANT={trained_as}), or name a {options.variant} run with RUN_DIR=….")
    config["data_dir"] = options.data_dir or config.get("data_dir")
    config["metadata_dir"] = options.metadata_dir or config.get("metadata_dir")
    _seed_and_precision(config["seed"], options.mixed_precision)
    return run, config


def config_value(run, key: str) -> str:
    """A setting of the run's stored configuration, for a command the user can copy."""
    return (run.existing_config() or {}).get(key, "…")


def steps_per_epoch(config: dict, examples: int, batch_size: int) -> int:
    """``steps_per_epoch`` (0: one pass over the training images, the last partial batch dropped)."""
    steps = config["steps_per_epoch"] or examples // batch_size
    if steps < 1:
        raise UserError(f"batch_size={batch_size} is larger than the {examples} training images of "
                        f"{config['dataset']}, so an epoch has no step; use --set batch_size={max(1, examples)} "
                        f"or fewer.")
    return steps


def commit_config(run) -> None:
    """Write the run's ``config.json`` from the settings :func:`start_training` resolved (once they work).
    What the file held before this session is kept in memory, for :func:`roll_back_config`."""
    if getattr(run, "pending_config", None) is not None:
        if not hasattr(run, "config_before"):
            run.config_before = run.read_config_text()
        run.write_config(run.pending_config)


def roll_back_config(run) -> None:
    """A training that stopped (NaN) before it saved any checkpoint leaves ``config.json`` as it was before
    it started: the folder describes the checkpoint it keeps, never the settings that failed (a learning
    rate of 1e38 must not become the run's)."""
    if hasattr(run, "config_before"):
        run.restore_config_text(run.config_before)
        logging.info("%s is back to what it was before this training (it saved no checkpoint).", run.config_path)


def _seed_and_precision(seed: int, mixed_precision: bool) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")


def load_data(config: dict, data_root: str, report_missing: bool = True):
    """The run's data set (``config["dataset"]``, ``data_dir``, ``metadata_dir``) as a DatasetIndex;
    ``shapes`` is generated on first use with the profile's sizes."""
    from t2igan.data.loaders import load_dataset

    dataset = config["dataset"]
    shapes_options = {}
    if dataset.startswith("shapes"):
        shapes_options = dict(image_size=config["image_size"], num_train=config.get("shapes_train", 10000),
                              num_test=config.get("shapes_test", 1000), seed=config.get("shapes_seed", 0),
                              compositional_split=config.get("shapes_compositional_split", False))
    index = load_dataset(dataset, data_dir=config.get("data_dir"), data_root=data_root,
                         metadata_dir=config.get("metadata_dir"), **shapes_options)
    if report_missing and any(index.missing.values()):
        print("Missing images (listed in the split files, not found, skipped): "
              + ", ".join(f"{split} {count}" for split, count in index.missing.items()))
    if report_missing:
        warn_single_class(index)
    return index


def warn_single_class(index) -> None:
    """A split whose examples all share one known class gives the matching losses no negative pair (DAMSM,
    DS-SJE and the VLM mask same-class pairs): their losses would be exactly 0, so say it."""
    for split in ("train", "test"):
        classes = {e.class_id for e in index.split(split)}
        if len(classes) == 1 and -1 not in classes and len(index.split(split)) > 1:
            logging.warning("Every %s example of %s is of class %d: the text encoder's matching losses have no "
                            "negative pairs and stay 0. Give the examples their own classes (classes.txt, or none "
                            "at all: unknown classes are each their own).", split, index.name, classes.pop())


def image_array(index, config: dict, split: str, data_root: str, image_size: int | None = None) -> np.ndarray:
    """uint8 images of a split, decoded and resized once into the shared .npy cache under ``data_root``."""
    from t2igan.data.pipeline import build_image_array, load_size_for

    load_size = load_size_for(image_size or config["image_size"], config["augment"])
    return build_image_array(index.split(split), load_size, index.crop_to_bbox, os.path.join(data_root, "cache"))


def example_class_ids(examples) -> np.ndarray:
    return np.array([e.class_id for e in examples], np.int32)


# --------------------------------------------------------------------------- training
def adam(config: dict, steps_per_data_epoch: int, rate: float, mixed_precision: bool = False):
    """The profile's Adam (β1, β2; a staircase decay every ``learning_rate_decay_every_epochs`` when set).

    The decay counts passes over the training set (``steps_per_data_epoch`` steps), as the papers' epochs
    do, not the profile's epochs, which are shorter when ``steps_per_epoch`` caps them.
    """
    import keras

    decay_epochs = config.get("learning_rate_decay_every_epochs", 0)
    if decay_epochs:
        rate = keras.optimizers.schedules.ExponentialDecay(
            rate, decay_epochs * steps_per_data_epoch, config["learning_rate_decay"], staircase=True)
    optimizer = keras.optimizers.Adam(rate, beta_1=config["beta_1"], beta_2=config.get("beta_2", 0.999), epsilon=1e-8)
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_for_training(strategy, run, config: dict, build: Callable, steps_per_data_epoch: int, *,
                       mixed_precision: bool = False, folder: str | None = None):
    """Build the GAN and its two Adams in the strategy scope (its train step compiled with XLA where
    ``config["jit_compile"]``), then restore the last checkpoint.

    Returns ``(gan, optimizers, checkpointer, initial_epoch)``; ``folder`` overrides ``run.checkpoints``.
    """
    from t2igan.training.distribute import check_same_epoch
    from t2igan.training.run import Checkpointer

    import keras

    # The initial weights follow from the seed alone, not from what ran before (a pretraining, a text encoder
    # loaded or built in the strategy's scope draws differently under 1 and N replicas).
    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        gan = build()
        optimizers = {name: adam(config, steps_per_data_epoch, config[f"learning_rate_{name}"], mixed_precision)
                      for name in ("generator", "discriminator")}
        gan.compile(optimizers["generator"], optimizers["discriminator"], jit_compile=config.get("jit_compile", False))
        gan.build_optimizers()
    objects = dict(generator=gan.generator, discriminator=gan.discriminator,
                   generator_optimizer=optimizers["generator"], discriminator_optimizer=optimizers["discriminator"])
    if gan.ema_generator is not None:
        objects["ema_generator"] = gan.ema_generator
    checkpointer = Checkpointer(folder or run.checkpoints, max_to_keep=config["checkpoint_keep"], **objects)
    initial_epoch = checkpointer.restore()
    check_same_epoch(strategy, initial_epoch, run.path)
    commit_config(run)  # the networks are built and the checkpoint (if any) fits them
    return gan, optimizers, checkpointer, initial_epoch


def already_trained(where: str, epochs: int, initial_epoch: int) -> bool:
    if initial_epoch >= epochs:
        print(f"{where} already trained for {initial_epoch} epochs (asked for {epochs}). "
              "Pass --epochs=N to train longer, or use another RUN_DIR.")
        return True
    return False


class TrainingCallbacks(list):
    """The callbacks every chapter trains with (a list), with the summary ``writer`` the chapter's own
    callbacks write to, and the NaN guard :func:`fit` consults."""

    def __init__(self, callbacks, writer, nan_guard, samples: str, phase: str):
        super().__init__(callbacks)
        self.writer, self.nan_guard, self.samples, self.phase = writer, nan_guard, samples, phase


def training_callbacks(run, config: dict, gan, checkpointer, optimizers: dict, render: Callable[[], np.ndarray],
                       grid_captions: list[str], phase: str = "") -> TrainingCallbacks:
    """NaN guard, checkpoint each epoch, TensorBoard scalars, the fixed sample grid (``render()`` → (rows,
    columns, H, W, 3)). ``phase`` names one of several trainings of a run (StackGAN-v1's ``stage1``): its
    logs and samples are kept apart."""
    import tensorflow as tf

    from t2igan.training import callbacks as cb

    suffix = f"-{phase}" if phase else ""
    writer = tf.summary.create_file_writer(os.path.join(run.logs, "train" + suffix))
    samples = os.path.join(run.samples, phase) if phase else run.samples
    nan_guard = cb.StopOnNonFinite()
    callbacks = [
        nan_guard,
        cb.CheckpointEachEpoch(checkpointer, nan_guard, lambda: gan.generator.weights + gan.discriminator.weights),
        cb.TensorBoardLogger(writer, gan.metric_groups, optimizers, config["log_every_steps"]),
        cb.SampleGrid(render, grid_captions, samples, writer, config["sample_every_epochs"]),
    ]
    return TrainingCallbacks(callbacks, writer, nan_guard, samples, phase)


def metrics_callback(config: dict, index, data_root: str, generate: Callable, noise_dim: int, writer,
                     extra: Callable | None = None):
    """The in-training metrics every ``metrics_every_epochs`` (None when off or nothing to measure).

    ``generate(example_indices, caption_indices, noise)`` is the eval's; ``extra(plan, images)`` adds the
    chapter's own (R-precision); the oracle / Inception metrics come from :class:`t2igan.scoring.Scorer`.
    """
    from t2igan.scoring import Scorer, caption_plan, generate_for
    from t2igan.training.callbacks import PeriodicMetrics

    every = config.get("metrics_every_epochs", 0)
    if every <= 0:
        return None
    scorer = Scorer(config, index, lambda: image_array(index, config, "test", data_root), os.path.join(data_root, "cache"))
    if scorer.kind is None and extra is None:
        logging.info("In-training metrics off: no oracle for %s and no fid_weights (docs/metrics.md).", index.name)
        return None
    # A fixed plan and fixed noise (seed 1234, as the sample grid): the curve shows training, not sampling.
    plan = caption_plan(index.test, config["metrics_samples"], seed=1234)

    def measure():
        images = generate_for(plan, generate, noise_dim, seed=1234)
        results, _ = scorer.score(plan, images)
        if extra is not None:
            results.update(extra(plan, images)[0])
        return {key.replace("oracle_accuracy/", "oracle_accuracy_"): value for key, value in results.items()}

    return PeriodicMetrics(measure, writer, every)


def check_global_batch(batch_size: int, strategy) -> None:
    """The global batch splits evenly over the replicas (each takes ``batch_size / replicas`` examples)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(f"batch_size={batch_size} (the global batch) does not split over {replicas} replicas: use "
                        f"--set batch_size={max(replicas, batch_size // replicas * replicas)} or another multiple of "
                        f"{replicas}.")


def fit(gan, dataset, run, config: dict, strategy, callbacks: TrainingCallbacks, *, steps_per_epoch: int,
        initial_epoch: int, timer, title: str) -> None:
    """The GAN trained with ``callbacks`` by :func:`t2igan.training.loop.train` (``fit``'s loop, under any
    strategy); raises the NaN guard's error; records the summary in metrics.json."""
    from t2igan.cli import fit_verbosity

    metrics = next((c for c in callbacks if type(c).__name__ == "PeriodicMetrics"), None)
    logging.info("Training %s: epochs %d → %d, %d steps each, global batch %d, %d replica(s).", title,
                 initial_epoch, config["epochs"], steps_per_epoch, config["batch_size"], strategy.num_replicas_in_sync)
    from t2igan.training.callbacks import ProgressLine

    from t2igan.training.loop import train
    from t2igan.training.run import NonFiniteLossError

    check_global_batch(config["batch_size"], strategy)
    if getattr(run, "time_steps", 0):  # train --time_steps=N: time the step instead of training
        from t2igan.training.benchmark import measure

        measure(gan, dataset, run, config, strategy, list(callbacks), steps=run.time_steps,
                steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch, title=title, phase=callbacks.phase)
        return
    verbosity = fit_verbosity()
    progress = [ProgressLine(config["epochs"], steps_per_epoch)] if verbosity == 2 else []  # no terminal: no bar
    try:
        history = train(gan, dataset, epochs=config["epochs"], initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                        callbacks=list(callbacks) + progress, verbose=verbosity)
        if callbacks.nan_guard.error is not None:
            raise callbacks.nan_guard.error
    except NonFiniteLossError:
        if not any(getattr(callback, "saved", 0) for callback in callbacks):
            roll_back_config(run)
        raise
    final = {key: float(values[-1]) for key, values in history.history.items()}
    steps = int(gan.generator_optimizer.iterations.numpy())
    summary = {"epochs": config["epochs"], "steps": steps, "seconds_this_session": round(timer.elapsed(), 1), "final": final}
    if metrics is not None and metrics.history:
        summary["metrics_during_training"] = metrics.history
    run.update_metrics("train" + (f"_{callbacks.phase}" if callbacks.phase else ""), summary)
    print(f"Trained to epoch {config['epochs']} in {timer.elapsed():.0f} s. "
          f"Samples: {callbacks.samples}  TensorBoard: make tensorboard")


# ------------------------------------------------------------------ sample and eval
def restore_generator(run, gan, folder: str | None = None, train_command: str | None = None):
    """Load the generator (and its EMA) of the last checkpoint in ``folder`` (``run.checkpoints``) into ``gan``."""
    from t2igan.training.run import Checkpointer

    folder = folder or run.checkpoints
    objects = dict(generator=gan.generator)
    if gan.ema_generator is not None:
        objects["ema_generator"] = gan.ema_generator
    if Checkpointer(folder, **objects).restore() == 0:
        command = train_command or f"make chapter{chapter_number(run.chapter)}-train"
        raise UserError(f"No checkpoint in {folder}. Train first: {command} DATASET={config_value(run, 'dataset')} "
                        f"PROFILE={config_value(run, 'profile')} RUN_DIR={run.path}")
    return gan


def check_sample_count(n: int) -> None:
    if n < 1:
        raise UserError(f"N must be ≥ 1, got {n}.")


def sample_noise(rows: int, noise_dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, noise_dim)).astype(np.float32)


def sample_path(run, text: str | None, seed: int, output: str | None = None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:60]
    return output or os.path.join(run.samples, f"sample-{slug}-seed{seed}.png")


def save_sample_grid(images: np.ndarray, path: str, caption: str | None = None) -> str:
    """One row of samples (B, H, W, 3) in [-1, 1] (or rows × columns) as a PNG, enlarged, with ``caption``
    (the text they were made from) written above; a uint8 picture (H, W, 3) already labelled (attention
    maps, interpolation walks) is saved as it is. Prints and returns the path."""
    from t2igan.sampling import sample_picture, save_png

    images = np.asarray(images)
    if images.dtype == np.uint8 and images.ndim == 3:
        picture = images
    else:
        picture = sample_picture(images, title=caption, smallest=128)  # a few images: shown large
    save_png(picture, path)
    print(path)
    return path
