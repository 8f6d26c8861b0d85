"""The shared GAN base (t2igan.training.gan): what every chapter's train_step relies on."""

import keras
import numpy as np
import tensorflow as tf

from t2igan.training.gan import ConditionalGAN


def test_apply_with_a_loss_scale_optimizer_gives_the_unscaled_step():
    """--mixed_precision wraps Adam in a LossScaleOptimizer: the scaled loss must still reach the weights."""
    variable = tf.Variable([1.0, -2.0])
    plain, scaled = keras.optimizers.SGD(0.1), keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    twin = tf.Variable(variable)
    for optimizer, target in ((plain, variable), (scaled, twin)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(target**2)
        ConditionalGAN.apply(optimizer, tape, loss, [target])
    np.testing.assert_allclose(twin.numpy(), [0.8, -1.6], rtol=1e-6)  # w − 0.1·2w
    np.testing.assert_allclose(twin.numpy(), variable.numpy(), rtol=1e-6)
