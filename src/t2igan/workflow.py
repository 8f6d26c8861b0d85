"""What every chapter's commands share: set-up, data, the text encoder, fit, restore, sample, eval.

A chapter's ``__main__.py`` creates one :class:`Chapter` and supplies only what
is its own: how to build its GAN, how to turn a batch of text into a generator
input, and the grid of samples it shows. The order of :meth:`Chapter.setup`
matters under ``tf.distribute``: the strategy must exist before any TF op.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Callable

import numpy as np
from absl import logging

from t2igan import app
from t2igan.app import FLAGS, UserError


class Chapter:
    def __init__(self, package: str, number: int, title: str):
        self.package = package          # e.g. "01_gan_int_cls"
        self.number = number
        self.title = title

    def module(self, name: str):
        return importlib.import_module(f"chapters.{self.package}.{name}")

    # ------------------------------------------------------------------ set-up
    def setup(self, for_training: bool, adjust: Callable[[dict], None] | None = None, profiles: dict | None = None):
        """Strategy first (it must precede every TF op), then config and run folder.

        ``adjust(config)`` may change the resolved config before it is written (training only);
        ``profiles`` replaces the chapter's ``profiles.PROFILES`` (chapter 5: one set per variant).
        """
        from t2igan.training.distribute import make_strategy, worker_run_dir
        from t2igan.training.run import RunDirectory

        strategy = make_strategy(FLAGS.distribution, FLAGS.cpu_replicas) if for_training else None
        run_dir = FLAGS.run_dir or app.default_run_dir(self.number, FLAGS.dataset, FLAGS.profile)
        if strategy is not None:
            run_dir = worker_run_dir(strategy, run_dir)
        run = RunDirectory(run_dir, self.package)
        if for_training:
            config = app.resolve_config(profiles or self.module("profiles").PROFILES, FLAGS.profile, FLAGS.dataset,
                                        FLAGS.set, FLAGS.epochs)
            config["seed"] = FLAGS.seed
            # Where the data came from, so that sample/eval find it again without the flags.
            config.update(data_dir=FLAGS.data_dir, metadata_dir=FLAGS.metadata_dir)
            if adjust is not None:
                adjust(config)
            run.write_config(config)
        else:
            config = run.check_owner()
            if config is None:
                raise UserError(f"No trained run in {run_dir} (no config.json). "
                                f"Train first: make chapter{self.number}-train RUN_DIR={run_dir}")
        import keras

        keras.utils.set_random_seed(config["seed"])
        app.set_up_precision()
        return strategy, run, config

    def load_data(self, config, for_training: bool):
        if not for_training:  # sample / eval: the data the run was trained on
            FLAGS.dataset = config["dataset"]
            FLAGS.data_dir = FLAGS.data_dir or config.get("data_dir")
            FLAGS.metadata_dir = FLAGS.metadata_dir or config.get("metadata_dir")
        index = app.load_data(config)
        if for_training and any(index.missing.values()):
            print("Missing images (listed in the split files, not found, skipped): "
                  + ", ".join(f"{split} {count}" for split, count in index.missing.items()))
        return index

    @staticmethod
    def images(index, config, split, image_size=None):
        """uint8 images of a split, decoded and resized once into the shared .npy cache."""
        from t2igan.data.pipeline import build_image_array, load_size_for

        load_size = load_size_for(image_size or config["image_size"], config["augment"])
        return build_image_array(index.split(split), load_size, index.crop_to_bbox, os.path.join(FLAGS.data_root, "cache"))

    # ------------------------------------------------------ char-CNN-RNN text
    def pretrain_char_encoder(self, strategy, run, config, index) -> None:
        """(Re)train the run's char-CNN-RNN φ(t) with DS-SJE and store every caption's embedding."""
        from t2igan import char_cnn_rnn

        report = char_cnn_rnn.pretrain(strategy, run.text_encoder, run.logs, config, index,
                                       lambda split: self.images(index, config, split), verbose=app.fit_verbosity())
        run.update_metrics("pretrain", report)
        print(f"Text encoder: held-out caption→image top-1 {report.get('val_retrieval_top1', float('nan')):.3f}; "
              f"saved in {run.text_encoder}")

    def char_embeddings(self, strategy, run, config, index):
        """Reed's precomputed caption embeddings for this run, as ``TextTable``s per split; pretrains φ(t)
        first when absent (training only: ``strategy`` given)."""
        from t2igan import char_cnn_rnn
        from t2igan.data.pipeline import TextTable

        if not char_cnn_rnn.is_complete(run.text_encoder):
            if strategy is None:
                raise UserError(f"No pretrained text encoder in {run.text_encoder}. Train first: "
                                f"make chapter{self.number}-train RUN_DIR={run.path}")
            logging.info("No pretrained text encoder in %s: pretraining it first.", run.text_encoder)
            self.pretrain_char_encoder(strategy, run, config, index)
        char_cnn_rnn.check_embeddings_match(run.text_encoder, index)
        normalise = bool(config.get("normalise_text_embeddings"))
        tables = {}
        for split in ("train", "test"):
            values = char_cnn_rnn.load_embeddings(run.text_encoder, split, normalise)
            counts = np.array([max(1, min(len(e.captions), values.shape[1])) for e in index.split(split)], np.int32)
            tables[split] = TextTable(values, counts)
        return tables

    # ------------------------------------------------------------ DAMSM text
    def pretrain_damsm(self, strategy, run, config, index) -> None:
        """(Re)train the run's DAMSM text and image encoders (AttnGAN's ``pretrain_DAMSM.py``)."""
        from t2igan import damsm

        report = damsm.pretrain(strategy, run.text_encoder, run.logs, config, index,
                                lambda split, size: self.images(index, config, split, size), verbose=app.fit_verbosity())
        run.update_metrics("pretrain", report)
        print(f"DAMSM: held-out caption→image top-1 {report['best_val_retrieval_top1']:.3f} "
              f"(epoch {report['best_epoch']}, kept); saved in {run.text_encoder}")

    def damsm_folder(self, run, config) -> str:
        """Where the run's DAMSM lives: ``--set damsm_dir=FOLDER`` reuses one trained elsewhere (e.g. by
        chapter 3), otherwise the run's own ``text_encoder`` folder."""
        folder = config.get("damsm_dir") or run.text_encoder
        if config.get("damsm_dir") and not os.path.isdir(folder):
            raise UserError(f"damsm_dir: {folder} does not exist. Point it at a run's text_encoder folder, "
                            "e.g. runs/ch3-shapes-course/text_encoder, or leave it empty to pretrain one.")
        return folder

    def damsm(self, strategy, run, config, index):
        """The run's DAMSM as (vocabulary, build → (text, image) encoders); pretrains it first when
        absent (training only: ``strategy`` given)."""
        from t2igan import damsm

        folder = self.damsm_folder(run, config)
        if not damsm.is_complete(folder):
            if strategy is None or folder != run.text_encoder:
                raise UserError(f"No pretrained DAMSM in {folder}. Train first: "
                                f"make chapter{self.number}-train RUN_DIR={run.path}")
            logging.info("No pretrained DAMSM in %s: pretraining it first.", folder)
            self.pretrain_damsm(strategy, run, config, index)
        return damsm.load(folder, config, index)

    # --------------------------------------------------------------- training
    @staticmethod
    def adam(config, steps_per_data_epoch, rate):
        import keras

        decay_epochs = config.get("learning_rate_decay_every_epochs", 0)
        if decay_epochs:
            rate = keras.optimizers.schedules.ExponentialDecay(
                rate, decay_epochs * steps_per_data_epoch, config["learning_rate_decay"], staircase=True)
        optimizer = keras.optimizers.Adam(rate, beta_1=config["beta_1"], beta_2=config.get("beta_2", 0.999), epsilon=1e-8)
        if FLAGS.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def fit(self, gan, run, config, strategy, dataset, *, steps_per_epoch: int, initial_epoch: int, checkpointer,
            render: Callable[[], np.ndarray], grid_captions: list[str], optimizers: dict, timer, phase: str = "",
            extra_callbacks: Callable | None = None, index=None, metrics_generate: Callable | None = None,
            noise_dim: int = 0, metrics_extra: Callable | None = None) -> None:
        """``gan.fit`` with the callbacks every chapter uses; records the summary in metrics.json.

        ``phase`` names one of several trainings of a run (StackGAN-v1's ``stage1``, ``stage2``):
        its logs, samples and summary are kept apart. ``extra_callbacks(writer)`` adds a chapter's own.
        ``metrics_generate(example_indices, caption_indices, noise)`` (the eval's generate) turns on the
        in-training metrics every ``metrics_every_epochs``; ``metrics_extra(plan, images)`` adds the
        chapter's own (R-precision).
        """
        import tensorflow as tf

        from t2igan.training import callbacks as cb

        suffix = f"-{phase}" if phase else ""
        writer = tf.summary.create_file_writer(os.path.join(run.logs, "train" + suffix))
        samples = os.path.join(run.samples, phase) if phase else run.samples
        nan_guard = cb.StopOnNonFinite()
        callbacks = [
            nan_guard,
            cb.CheckpointEachEpoch(checkpointer, nan_guard, lambda: gan.generator.weights + gan.discriminator.weights),
            cb.TensorBoardLogger(writer, gan.metric_tags, optimizers, config["log_every_steps"]),
            cb.SampleGrid(render, grid_captions, samples, writer, config["sample_every_epochs"]),
        ]
        if extra_callbacks is not None:
            callbacks += extra_callbacks(writer)
        periodic = self.periodic_metrics(config, index, metrics_generate, noise_dim, metrics_extra, writer)
        if periodic is not None:
            callbacks.append(periodic)
        logging.info("Training %s: epochs %d → %d, %d steps each, global batch %d, %d replica(s).", self.title,
                     initial_epoch, config["epochs"], steps_per_epoch, config["batch_size"], strategy.num_replicas_in_sync)
        history = gan.fit(dataset, epochs=config["epochs"], initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                          callbacks=callbacks, verbose=app.fit_verbosity())
        if nan_guard.error is not None:
            raise nan_guard.error
        final = {key: float(values[-1]) for key, values in history.history.items()}
        steps = int(next(iter(optimizers.values())).iterations.numpy())
        summary = {"epochs": config["epochs"], "steps": steps, "seconds_this_session": round(timer.elapsed(), 1), "final": final}
        if periodic is not None and periodic.history:
            summary["metrics_during_training"] = periodic.history
        run.update_metrics("train" + suffix.replace("-", "_"), summary)
        print(f"Trained to epoch {config['epochs']} in {timer.elapsed():.0f} s. "
              f"Samples: {samples}  TensorBoard: make tensorboard")

    def periodic_metrics(self, config, index, generate, noise_dim, extra, writer):
        """The in-training metrics callback, or None when off (``metrics_every_epochs=0``) or nothing to measure."""
        from t2igan.evaluation import Scorer, caption_plan, generate_for
        from t2igan.training.callbacks import PeriodicMetrics

        every = config.get("metrics_every_epochs", 0)
        if generate is None or index is None or every <= 0:
            return None
        scorer = Scorer(config, index, lambda: self.images(index, config, "test"), os.path.join(FLAGS.data_root, "cache"))
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

    def build_for_training(self, strategy, run, config, build: Callable, steps_per_data_epoch: int, folder: str | None = None):
        """Build the GAN and its two Adams in the strategy scope, then restore the last checkpoint.

        Returns ``(gan, optimizers, checkpointer, initial_epoch)``; ``folder`` overrides ``run.checkpoints``.
        """
        from t2igan.training.run import Checkpointer

        with strategy.scope():
            gan = build()
            optimizers = {name: self.adam(config, steps_per_data_epoch, config[f"learning_rate_{name}"])
                          for name in ("generator", "discriminator")}
            gan.compile(optimizers["generator"], optimizers["discriminator"], jit_compile=FLAGS.jit_compile)
            gan.build_optimizers()
        objects = dict(generator=gan.generator, discriminator=gan.discriminator,
                       generator_optimizer=optimizers["generator"], discriminator_optimizer=optimizers["discriminator"])
        if gan.ema_generator is not None:
            objects["ema_generator"] = gan.ema_generator
        checkpointer = Checkpointer(folder or run.checkpoints, max_to_keep=config["checkpoint_keep"], **objects)
        return gan, optimizers, checkpointer, checkpointer.restore()

    @staticmethod
    def already_trained(where: str, epochs: int, initial_epoch: int) -> bool:
        if initial_epoch >= epochs:
            print(f"{where} already trained for {initial_epoch} epochs (asked for {epochs}). "
                  "Pass --epochs=N to train longer, or use another RUN_DIR.")
            return True
        return False

    # ------------------------------------------------------- sample and eval
    def restore_generator(self, run, gan, folder: str | None = None, train_command: str | None = None):
        """Load the generator (and its EMA) of the last checkpoint in ``folder`` (``run.checkpoints``) into ``gan``."""
        from t2igan.training.run import Checkpointer

        folder = folder or run.checkpoints
        objects = dict(generator=gan.generator)
        if gan.ema_generator is not None:
            objects["ema_generator"] = gan.ema_generator
        if Checkpointer(folder, **objects).restore() == 0:
            command = train_command or f"make chapter{self.number}-train"
            raise UserError(f"No checkpoint in {folder}. Train first: {command} RUN_DIR={run.path}")
        return gan

    @staticmethod
    def check_sample_count():
        if FLAGS.n < 1:
            raise UserError(f"N must be ≥ 1, got {FLAGS.n}.")

    @staticmethod
    def sample_noise(rows: int, noise_dim: int) -> np.ndarray:
        return np.random.default_rng(FLAGS.sample_seed).standard_normal((rows, noise_dim)).astype(np.float32)

    @staticmethod
    def sample_path(run) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", FLAGS.text.lower()).strip("-")[:60]
        return FLAGS.output or os.path.join(run.samples, f"sample-{slug}-seed{FLAGS.sample_seed}.png")

    def sample_captions(self, run, generate: Callable, encode: Callable[[str], np.ndarray], noise_dim: int) -> str:
        """The sampler: N images of TEXT, or an 8-step interpolation towards --interpolate_to (GAN-INT's use).

        ``generate(noise, text)`` → images (B, H, W, 3) in [-1, 1]; ``encode(caption)`` → one text vector.
        """
        from t2igan.sampling import interpolation_weights, make_grid, save_png

        self.check_sample_count()
        first = encode(FLAGS.text)
        noise = self.sample_noise(FLAGS.n, noise_dim)
        if FLAGS.interpolate_to:
            second = encode(FLAGS.interpolate_to)
            text = np.stack([(1 - b) * first + b * second for b in interpolation_weights(8)])  # (8, D)
            images = np.asarray(generate(np.repeat(noise, 8, axis=0), np.tile(text, (FLAGS.n, 1))))
            images = images.reshape(FLAGS.n, 8, *images.shape[1:])
        else:
            images = np.asarray(generate(noise, np.repeat(first[None], FLAGS.n, axis=0)))[None]
        path = self.sample_path(run)
        save_png(make_grid(images), path, scale=2)
        print(path)
        return path

    def run(self, commands: dict[str, Callable[[], None]]) -> None:
        usage = (f"usage: python -m chapters.{self.package} {{{','.join(commands)}}} "
                 "[--dataset=shapes] [--profile=course] [--run_dir=...] ...")
        app.run_commands(commands, usage)
