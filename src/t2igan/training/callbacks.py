"""Keras callbacks shared by every chapter: TensorBoard, sample grids, checkpoints, NaN stop."""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from t2igan.sampling import sample_picture, save_png
from t2igan.training.run import Checkpointer, NonFiniteLossError, is_finite_number


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss, before anything is saved; ``error`` names it. ``after``: what the message
    says of the stop; ``epoch_logs``: also check each epoch's logs (a pretraining's validation losses)."""

    GAN = ("Training stopped; the last good checkpoint is kept (nothing was saved after the failure). Lower the "
           "learning rate, check the data, or try without --mixed_precision.")

    def __init__(self, after: str = GAN, epoch_logs: bool = False):
        super().__init__()
        self.after, self.epoch_logs = after, epoch_logs
        self.error: NonFiniteLossError | None = None

    def _check(self, logs, where: str) -> None:
        for name, value in (logs or {}).items():
            if self.error is None and not is_finite_number(value):
                self.error = NonFiniteLossError(f"{name} became {float(value)} {where}. {self.after}")
                self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"at batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_logs:
            self._check(logs, f"in epoch {epoch + 1}")


class CheckpointEachEpoch(keras.callbacks.Callback):
    def __init__(self, checkpointer: Checkpointer, nan_guard: StopOnNonFinite, variables: Callable[[], list]):
        super().__init__()
        self.checkpointer = checkpointer
        self.nan_guard = nan_guard
        self.variables = variables
        self.saved = 0  # checkpoints written by this training (none: a failure leaves config.json as it was)

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.error is not None:
            return
        path = self.checkpointer.save(epoch + 1, self.variables())
        self.saved += 1
        logging.info("Saved %s", path)


class TensorBoardLogger(keras.callbacks.Callback):
    """Every ``every_steps`` steps, each training quantity's mean over those steps, as ``<group>/<name>``
    (``loss/d_loss``, ``score/d_fake``: the name is the one the console prints), and the learning rates.

    Keras hands callbacks the mean since the epoch began (what its progress bar shows). A curve of those
    would reset at every epoch and smooth more as the epoch goes on, so the logger recovers the mean of
    the steps since its last point: with ``c`` steps done and running mean ``m``, the steps since the
    previous call (``c'``, ``m'``) sum to ``c·m − c'·m'``. One point per interval, no per-epoch copy.
    """

    def __init__(self, writer, groups: dict[str, str], optimizers: dict[str, keras.optimizers.Optimizer],
                 every_steps: int = 20):
        super().__init__()
        self.writer = writer
        self.groups = groups
        self.optimizers = optimizers
        self.every_steps = max(1, int(every_steps))
        self.sums: dict[str, float] = {}
        self.steps, self.done_in_epoch, self.running = 0, 0, {}

    def tag(self, name: str) -> str:
        return f"{self.groups.get(name, 'train')}/{name}"

    def _step(self) -> int:
        return int(self.model.generator_optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.done_in_epoch, self.running = 0, {}

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        for name, value in (logs or {}).items():
            mean = float(value)
            self.sums[name] = self.sums.get(name, 0.0) + done * mean - self.done_in_epoch * self.running.get(name, 0.0)
            self.running[name] = mean
        self.steps += done - self.done_in_epoch
        self.done_in_epoch = done
        step = self._step()
        if step % self.every_steps or not self.steps:
            return
        with self.writer.as_default(step=step):
            for name, total in self.sums.items():
                tf.summary.scalar(self.tag(name), total / self.steps)
            for name, optimizer in self.optimizers.items():
                tf.summary.scalar(f"learning_rate/{name}", float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        self.sums, self.steps = {}, 0

    def on_epoch_end(self, epoch, logs=None):
        self.writer.flush()


class SampleGrid(keras.callbacks.Callback):
    """A fixed caption × fixed noise grid each epoch: PNG in ``samples/`` and an image in TensorBoard.

    ``render()`` returns images of shape (rows, columns, H, W, 3) in [-1, 1]:
    one row per caption, one column per noise vector — the same every epoch,
    so the grids show training progress, not sampling noise. Each row's caption is written above it
    (in the PNG and in TensorBoard); small images are enlarged so the words stay readable.
    """

    def __init__(self, render: Callable[[], np.ndarray], captions: Sequence[str], samples_dir: str, writer, every_epochs: int = 1, tag: str = "samples/fixed_captions"):
        super().__init__()
        self.render = render
        self.captions = list(captions)
        self.samples_dir = samples_dir
        self.writer = writer
        self.every_epochs = max(1, every_epochs)
        self.tag = tag

    def on_train_begin(self, logs=None):
        with self.writer.as_default(step=0):
            table = "\n".join(f"{i}. {caption}" for i, caption in enumerate(self.captions))
            tf.summary.text("samples/captions", "Rows of the sample grid, top to bottom:\n\n" + table)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs:
            return
        images = self.render()
        # One caption per row; a short or long list must not stop a training, so it is fitted to the rows.
        labels = (self.captions + [""] * len(images))[: len(images)]
        grid = sample_picture(images, row_labels=labels)
        save_png(grid, os.path.join(self.samples_dir, f"epoch_{epoch + 1:04d}.png"))
        with self.writer.as_default(step=int(self.model.generator_optimizer.iterations.numpy())):
            tf.summary.image(self.tag, grid[None].astype(np.float32) / 255.0)
        self.writer.flush()


class PeriodicMetrics(keras.callbacks.Callback):
    """Every ``every_epochs`` epochs: ``measure()`` (a fixed sample of test captions with fixed noise →
    oracle or Inception FID, R-precision …) logged to TensorBoard as ``metrics/<name>`` and kept in
    ``history`` — the cheap version of ``chapterN-eval``, to watch a run and pick a checkpoint."""

    def __init__(self, measure: Callable[[], dict], writer, every_epochs: int):
        super().__init__()
        self.measure, self.writer, self.every_epochs = measure, writer, every_epochs
        self.history: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        if self.every_epochs <= 0 or (epoch + 1) % self.every_epochs:
            return
        results = self.measure()
        self.history.append({"epoch": epoch + 1, **results})
        with self.writer.as_default(step=int(self.model.generator_optimizer.iterations.numpy())):
            for name, value in results.items():
                tf.summary.scalar(f"metrics/{name}", float(value))
        self.writer.flush()
        logging.info("Epoch %d metrics: %s", epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in results.items()))


def duration(seconds: float) -> str:
    """``75`` → ``"1m15s"``; ``3725`` → ``"1h02m"``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressLine(keras.callbacks.Callback):
    """Where Keras prints one line per epoch (output not a terminal: make into a log file, CI), a line every
    ``every_seconds`` inside an epoch too: the step, the time per step and what is left, so a long epoch
    is never a silence. A terminal has Keras' own progress bar and ETA, and gets nothing from this."""

    def __init__(self, epochs: int, steps_per_epoch: int, every_seconds: float = 30.0, clock=time.monotonic,
                 write=print):
        super().__init__()
        self.epochs, self.steps, self.every = epochs, steps_per_epoch, every_seconds
        self.clock, self.write = clock, write
        self.epoch, self.started, self.last = 0, None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.started is None:
            self.started, self.first_epoch = self.clock(), epoch
        self.last, self.epoch_started = self.clock(), self.clock()

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if batch == 0:  # the first step of an epoch may include tracing: the rate is timed from its end
            self.first_done = now
        if now - self.last < self.every or batch == 0:
            return
        self.last = now
        done = batch + 1
        per_step = (now - self.first_done) / batch
        steps_left = (self.steps - done) + (self.epochs - self.epoch - 1) * self.steps
        self.write(f"  epoch {self.epoch + 1}/{self.epochs}, step {done}/{self.steps} ({100 * done // self.steps} %), "
                   f"{per_step:.2f} s/step, epoch left {duration((self.steps - done) * per_step)}, "
                   f"run left ≈ {duration(steps_left * per_step)}", flush=True)
