"""Keras callbacks shared by every chapter: TensorBoard, sample grids, checkpoints, NaN stop."""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from t2igan.sampling import make_grid, save_png
from t2igan.training.run import Checkpointer, NonFiniteLossError, is_finite_number


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss, before anything is saved."""

    def __init__(self):
        super().__init__()
        self.error: NonFiniteLossError | None = None

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not is_finite_number(value):
                self.error = NonFiniteLossError(
                    f"{name} became {float(value)} at batch {batch}. Training stopped; the last good "
                    "checkpoint is kept (nothing was saved after the failure). Lower the learning rate, "
                    "check the data, or try without --mixed_precision."
                )
                self.model.stop_training = True
                return


class CheckpointEachEpoch(keras.callbacks.Callback):
    def __init__(self, checkpointer: Checkpointer, nan_guard: StopOnNonFinite, variables: Callable[[], list]):
        super().__init__()
        self.checkpointer = checkpointer
        self.nan_guard = nan_guard
        self.variables = variables

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.error is not None:
            return
        path = self.checkpointer.save(epoch + 1, self.variables())
        logging.info("Saved %s", path)


class TensorBoardLogger(keras.callbacks.Callback):
    """Scalars under stable tags (``loss/discriminator`` …) every ``every_steps`` steps, and learning rates."""

    def __init__(self, writer, tags: dict[str, str], optimizers: dict[str, keras.optimizers.Optimizer], every_steps: int = 20):
        super().__init__()
        self.writer = writer
        self.tags = tags
        self.optimizers = optimizers
        self.every_steps = max(1, every_steps)

    def _step(self) -> int:
        return int(self.model.generator_optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every_steps:
            return
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                tf.summary.scalar(self.tags.get(name, f"train/{name}"), float(value))
            for name, optimizer in self.optimizers.items():
                tf.summary.scalar(f"learning_rate/{name}", float(keras.ops.convert_to_numpy(optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=self._step()):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"epoch/{self.tags.get(name, name)}", float(value))
        self.writer.flush()


class SampleGrid(keras.callbacks.Callback):
    """A fixed caption × fixed noise grid each epoch: PNG in ``samples/`` and an image in TensorBoard.

    ``render()`` returns images of shape (rows, columns, H, W, 3) in [-1, 1]:
    one row per caption, one column per noise vector — the same every epoch,
    so the grids show training progress, not sampling noise.
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
        grid = make_grid(self.render())
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
