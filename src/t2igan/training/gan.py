"""The base every chapter's GAN extends: a ``keras.Model`` trained with ``fit``.

A chapter subclass builds its networks in ``__init__``, calls
:meth:`ConditionalGAN.track` for each quantity it logs, and writes
``train_step`` with :meth:`average` for every loss. The base takes care of
what is easy to get wrong under ``tf.distribute``:

* **Loss scaling.** Each replica sees ``global_batch / N`` examples and Keras'
  optimizer *sums* gradients over replicas, so a replica's loss is
  ``sum(per_example) / global_batch`` (``tf.nn.compute_average_loss``).
  Metrics track the plain per-replica mean; Keras averages them over replicas.
* **EMA of the generator** (StackGAN++/AttnGAN/DF-GAN style): a second
  generator whose trainable weights follow ``ema ← d·ema + (1−d)·w`` and whose
  BatchNorm statistics are copied, updated in cross-replica context.
* **Mixed precision**: losses go through ``optimizer.scale_loss``.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class ConditionalGAN(keras.Model):
    """Shared machinery: two optimizers, replica-correct losses, trackers, EMA."""

    #: metric name → its TensorBoard group: ``d_loss`` is logged as ``loss/d_loss`` (subclasses extend it)
    metric_groups: dict[str, str] = {"d_loss": "loss", "g_loss": "loss"}

    def __init__(self, ema_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.ema_decay = float(ema_decay)
        self._trackers: dict[str, keras.metrics.Mean] = {}
        self.ema_generator: keras.Model | None = None

    # ----------------------------------------------------------------- compile
    def compile(self, generator_optimizer, discriminator_optimizer, jit_compile=False, **kwargs):
        super().compile(jit_compile=jit_compile, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def build_optimizers(self) -> None:
        """Create optimizer slots eagerly (inside the strategy scope), never lazily in a replica."""
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.built = True  # the networks are built; stops Keras from tracing a symbolic call()

    # ---------------------------------------------------------------- metrics
    def track(self, *names: str) -> None:
        for name in names:
            self._trackers[name] = keras.metrics.Mean(name=name)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def record(self, **values) -> dict:
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    # ------------------------------------------------------------------ losses
    @staticmethod
    def average(per_example_loss):
        """Mean over the *global* batch: correct under any number of replicas."""
        per_example_loss = tf.cast(per_example_loss, tf.float32)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = tf.shape(per_example_loss)[0] * replicas
        return tf.reduce_sum(per_example_loss) / tf.cast(global_batch, tf.float32)

    @staticmethod
    def apply(optimizer, tape, loss, variables):
        with tape:  # the scaling must be recorded, or a LossScaleOptimizer's scaled loss has no gradient
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables))

    # --------------------------------------------------------------------- EMA
    def enable_ema(self, make_generator) -> None:
        """Create the averaged generator (call inside the strategy scope, after building)."""
        if self.ema_decay <= 0:
            return
        self.ema_generator = make_generator()
        self.ema_generator.set_weights(self.generator.get_weights())
        self.ema_generator.trainable = False

    def update_ema(self) -> None:
        if self.ema_generator is None:
            return
        decay = self.ema_decay
        pairs = list(zip(self.generator.weights, self.ema_generator.weights))
        # Computed in replica context; mirrored weights are equal on every replica.
        new_values = [
            decay * averaged.value + (1.0 - decay) * live.value if live.trainable else live.value
            for live, averaged in pairs
        ]
        context = tf.distribute.get_replica_context()
        if not tf.distribute.has_strategy() or context is None:
            for (_, averaged), value in zip(pairs, new_values):
                averaged.assign(value)
            return

        def merge(strategy, *values):
            # Mirrored variables may only be written from cross-replica context.
            for (_, averaged), value in zip(pairs, values):
                strategy.extended.update(averaged.value, lambda variable, x: variable.assign(x), args=(value,))

        context.merge_call(merge, args=tuple(new_values))

    @property
    def sampling_generator(self) -> keras.Model:
        """The generator used for samples and evaluation (EMA when enabled)."""
        return self.ema_generator if self.ema_generator is not None else self.generator
