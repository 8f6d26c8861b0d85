"""The training loop of every chapter's GAN and every encoder pretraining: what ``Model.fit`` does, under any
``tf.distribute`` strategy, across machines too.

Keras 3's ``Model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585: it reduces each
step's scalar logs over workers with ``axis=0``). This loop keeps everything a user gets from ``fit`` — the
progress bar, every Keras callback in the order ``fit`` calls them, ``model.stop_training``, the ``History`` —
and runs the model's own ``train_step`` / ``test_step`` with ``strategy.run`` inside one ``tf.function``:

    history = train(model, dataset, epochs=…, steps_per_epoch=…, initial_epoch=…, callbacks=[…], verbose=2)

One path for every strategy (default, Mirrored, MultiWorkerMirrored): a single device runs the same code as
a cluster. The step's logs are averaged over replicas (``fit``'s ``"mean"``), so every worker sees the same
numbers and takes the same decisions (a NaN stops all of them at the same step).

**Sharding.** Each dataset is distributed with ``AutoShardPolicy.DATA``: every worker runs the whole input
pipeline (its shuffles, noise and mismatched pairs are seeded, so all workers compute the same elements) and
keeps its own slice of each global batch. The global batch, and so the update, is the same for one process
and for N (tests/test_multiworker.py). The cost is that every worker decodes every batch; FILE sharding would
give each worker other images, and a different training from the one-process run.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from t2igan.training.distribute import PeerLostError, is_multiworker

#: what TensorFlow raises in a collective or a save when another worker is gone (killed, its machine down)
LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                    tf.errors.AbortedError, tf.errors.InternalError)


def distribute(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """``dataset`` (batched by the global batch) as the strategy's distributed dataset, sharded by DATA."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def step_function(strategy: tf.distribute.Strategy, step, jit_compile: bool = False):
    """``step(batch)`` on every replica (``strategy.run``), its logs averaged over replicas, in a
    ``tf.function`` (XLA when ``jit_compile``). Returns ``(on_batch, on_iterator)``: the same step taking a
    distributed batch, or taking the next batch of a distributed iterator (one call, no Python in between)."""

    # autograph=False: no step uses Python control flow on tensors (it would fail to trace, loudly), and
    # converting the steps' code cost ~4 s of every training process's start (measured, chapter 1 smoke).
    # XLA: one replica compiles the whole step (what the README's step times measured); several compile the
    # step each replica runs, as Keras does, since one XLA cluster cannot hold the variables of several
    # devices (harness.start_training keeps XLA off for several replicas on CPUs, where that fails too).
    several = strategy.num_replicas_in_sync > 1
    replica_step = tf.function(step, jit_compile=True, reduce_retracing=True, autograph=False) \
        if jit_compile and several else step

    def one_step(batch):
        outputs = strategy.run(replica_step, args=(batch,))
        return tf.nest.map_structure(
            lambda value: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None), outputs)

    on_batch = tf.function(one_step, jit_compile=bool(jit_compile) and not several, reduce_retracing=True,
                           autograph=False)

    @tf.function(autograph=False)
    def on_iterator(iterator):
        return on_batch(next(iterator))

    return on_batch, on_iterator


def as_numbers(logs) -> dict:
    """A step's logs as Python floats (a scalar) or NumPy arrays, what callbacks and the progress bar take."""
    numbers = {}
    for name, value in logs.items():
        value = np.asarray(keras.ops.convert_to_numpy(value))
        numbers[name] = float(value) if value.size == 1 else value
    return numbers


def train(model: keras.Model, dataset: tf.data.Dataset, *, epochs: int, steps_per_epoch: int, initial_epoch: int = 0,
          callbacks: Sequence[keras.callbacks.Callback] = (), verbose: int = 2,
          validation_data: tf.data.Dataset | None = None) -> keras.callbacks.History:
    """``model.fit(dataset, epochs=…, initial_epoch=…, steps_per_epoch=…, callbacks=…, verbose=…,
    validation_data=…)`` for a compiled, built ``model`` whose ``train_step(batch)`` (and ``test_step``, for
    ``validation_data``) returns its logs. ``dataset`` yields global batches without end (one iterator runs
    through every epoch, as ``fit`` keeps it with ``steps_per_epoch``); ``validation_data`` is a finite data
    set, run to its end after each epoch, its logs prefixed ``val_``. Returns the ``History``."""
    strategy = model.distribute_strategy
    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, add_progbar=verbose != 0,
                                                 verbose=verbose, epochs=epochs, steps=steps_per_epoch, model=model)
    _, train_function = step_function(strategy, model.train_step, model.jit_compile)
    iterator = iter(distribute(dataset, strategy))
    validation = None
    if validation_data is not None:
        validation = distribute(validation_data, strategy)
        test_function, _ = step_function(strategy, model.test_step, model.jit_compile)
    model.stop_training = False
    try:
        epoch_logs = _epochs(model, iterator, validation, train_function, test_function if validation else None,
                             callback_list, epochs, initial_epoch, steps_per_epoch)
    except LOST_PEER_ERRORS as error:
        if not is_multiworker(strategy):
            raise
        raise PeerLostError(f"A worker of TF_CONFIG stopped answering during training ({type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0][:160]}). Start the same command on every machine "
                            "again: each resumes from the run's last complete checkpoint.") from error
    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, keras.optimizers.Optimizer) and epochs > initial_epoch:
        optimizer.finalize_variable_values(model.trainable_weights)  # as fit: a no-op without use_ema
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


def _epochs(model, iterator, validation, train_function, test_function, callback_list, epochs: int,
            initial_epoch: int, steps_per_epoch: int) -> dict:
    """``fit``'s epochs: the callbacks in its order, the stop flag after every step; the last epoch's logs."""
    callback_list.on_train_begin()
    epoch_logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()  # each epoch's logs are means over that epoch, as fit's
        callback_list.on_epoch_begin(epoch)
        logs: dict = {}
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            try:
                logs = as_numbers(train_function(iterator))
            except tf.errors.OutOfRangeError:
                logging.warning("The training data ran out at epoch %d, step %d (a data set that repeats was "
                                "expected); training stops here.", epoch + 1, step)
                model.stop_training = True
                break
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if validation is not None and not model.stop_training:
            epoch_logs.update({f"val_{name}": value
                               for name, value in evaluate(model, validation, test_function, callback_list).items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    return epoch_logs


def evaluate(model: keras.Model, validation, test_function, callback_list) -> dict:
    """One pass of ``test_step`` over a distributed, finite data set: the logs of its last batch (means
    over the pass: the model's metrics are reset first)."""
    model.reset_metrics()
    callback_list.on_test_begin()
    logs: dict = {}
    for step, batch in enumerate(validation):
        callback_list.on_test_batch_begin(step)
        logs = as_numbers(test_function(batch))
        callback_list.on_test_batch_end(step, logs)
    callback_list.on_test_end(logs)
    return logs
