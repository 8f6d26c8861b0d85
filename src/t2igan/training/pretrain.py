"""The one pretraining loop of the text / matching encoders: chapter 1's char-CNN-RNN (DS-SJE), chapter 3's
DAMSM and chapter 5's VLM differ only in the model whose ``train_step`` holds the loss, its optimizer, a
per-epoch learning rate, and whether the best epoch is kept.

    history, best = pretrain_encoders(strategy, build, optimizer, dataset, validation, epochs=…, …)

``build()`` makes the pretraining model (a ``keras.Model`` with ``train_step`` / ``test_step``) inside the
strategy scope; its optimizer's slots are created there too, eagerly, as ``ConditionalGAN`` does.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import tensorflow as tf
from absl import logging

from t2igan.training.callbacks import StopOnNonFinite
from t2igan.training.loop import train


def reset_optimizer_state(optimizer) -> None:
    """Zero the optimizer's step count and moments (a fresh optimizer, as AttnGAN creates one per epoch),
    keeping its learning rate."""
    for variable in optimizer.variables:
        if "learning_rate" not in variable.name:
            variable.assign(tf.zeros_like(variable))


class EpochLearningRate(keras.callbacks.Callback):
    """At each epoch start: ``rate(epoch)`` as the learning rate, after resetting the optimizer when asked."""

    def __init__(self, model, rate: Callable[[int], float], reset_optimizer: bool):
        super().__init__()
        self.trained, self.rate, self.reset_optimizer = model, rate, reset_optimizer

    def on_epoch_begin(self, epoch, logs=None):
        if self.reset_optimizer:
            reset_optimizer_state(self.trained.optimizer)
        self.trained.optimizer.learning_rate.assign(self.rate(epoch))


class KeepBest(keras.callbacks.Callback):
    """Calls ``save()`` after every epoch whose ``metric`` (a validation log) beats the best so far;
    ``best``, ``best_epoch`` (1-based) and ``best_logs`` describe the kept epoch. Nothing is kept once
    ``guard`` (a :class:`StopOnNonFinite` placed before it) has seen a NaN."""

    def __init__(self, save: Callable[[], None], metric: str = "val_retrieval_top1", guard: StopOnNonFinite | None = None):
        super().__init__()
        self.save, self.metric, self.guard = save, metric, guard
        self.best, self.best_epoch, self.best_logs = -1.0, 0, {}

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.error is not None:
            return
        score = float((logs or {}).get(self.metric, -1.0))
        if score > self.best:
            self.best, self.best_epoch, self.best_logs = score, epoch + 1, dict(logs or {})
            self.save()


def pretrain_encoders(strategy, build: Callable[[], keras.Model], optimizer: Callable[[], keras.optimizers.Optimizer],
                      dataset, validation, *, epochs: int, steps_per_epoch: int, log_dir: str, verbose=2,
                      epoch_learning_rate: Callable[[int], float] | None = None, reset_optimizer_each_epoch: bool = False,
                      keep_best: Callable[[keras.Model], Callable[[], None]] | None = None,
                      callbacks: Callable[[keras.Model], list] | None = None, jit_compile: bool = False):
    """Build and compile the pretraining model and train it (:func:`t2igan.training.loop.train`, ``fit``'s loop
    under any strategy); TensorBoard in ``log_dir``.

    ``keep_best(model)`` returns the function that saves the model's encoders; it runs after each epoch
    whose held-out caption → image top-1 is the best so far. ``callbacks(model)`` adds a chapter's own
    (after the schedule and the keep-best rule). ``jit_compile`` compiles the train and test steps with XLA
    (the run's ``pretrain_jit_compile`` setting). Returns ``(model, history, KeepBest or None)``.
    """
    if strategy.num_replicas_in_sync > 1:
        logging.warning("Pretraining on %d replicas: the matching loss compares the captions and images within each "
                        "replica's share of a batch, not the whole batch, so it differs from a one-device pretraining "
                        "(pretrain on one device with make chapterN-pretrain to keep the two equal).",
                        strategy.num_replicas_in_sync)
    with strategy.scope():
        model = build()
        model.compile(optimizer=optimizer(), jit_compile=bool(jit_compile))
        model.optimizer.build(model.trainable_variables)  # slots inside the scope, before any replica step
        model.built = True
    # Encoders with NaN weights still score a retrieval top-1 (every similarity NaN ranks the first caption
    # first): without the guard a diverged pretraining was kept, and the GAN failed at its first step.
    guard = StopOnNonFinite("The pretraining stopped, and its encoders are not marked complete (the next command "
                            "pretrains again): lower its learning rate or check the data.", epoch_logs=True)
    every_epoch = [guard]  # first: it sees a NaN before anything saves
    if epoch_learning_rate is not None:
        every_epoch.append(EpochLearningRate(model, epoch_learning_rate, reset_optimizer_each_epoch))
    best = KeepBest(keep_best(model), guard=guard) if keep_best is not None else None
    every_epoch += [best] if best is not None else []
    every_epoch += list(callbacks(model)) if callbacks is not None else []
    every_epoch.append(keras.callbacks.TensorBoard(os.path.join(log_dir), write_graph=False))
    history = train(model, dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation,
                    callbacks=every_epoch, verbose=verbose)
    if guard.error is not None:
        raise guard.error
    return model, history, best
