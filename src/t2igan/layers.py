"""Small reusable pieces: PyTorch/Torch-compatible initialisers and per-example losses."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers


def normal_init(stddev: float = 0.02):
    """N(0, 0.02): the DCGAN-style init used by Reed's and StackGAN-v1's convolutions."""
    return keras.initializers.RandomNormal(0.0, stddev)


def torch_linear(units: int, fan_in: int, use_bias: bool = True, **kwargs) -> layers.Dense:
    """``Dense`` initialised like ``torch.nn.Linear``: weight and bias U(±1/√fan_in)."""
    return layers.Dense(
        units,
        use_bias=use_bias,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)),
        **kwargs,
    )


def torch_conv(filters: int, kernel_size: int, fan_in: int, use_bias: bool = True, strides: int = 1,
               padding: str = "same", **kwargs) -> layers.Conv2D:
    """``Conv2D`` initialised like ``torch.nn.Conv2d``: weight and bias U(±1/√fan_in), fan_in = in·k·k."""
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)),
        **kwargs,
    )


UNKNOWN_CLASS = -1


def same_class(class_ids):
    """(B, B) bool: examples i and j are of one class. An example of unknown class (``class_id`` −1: COCO,
    a custom data set without ``classes.txt``) is of its own class only, as the official AttnGAN gives
    every COCO image its own id; every example is of its own class (the diagonal is True). The one
    meaning of "same class" for every matching loss and the data pipeline's mismatched pairs."""
    class_ids = tf.convert_to_tensor(class_ids)
    known = class_ids != UNKNOWN_CLASS
    equal = tf.equal(class_ids[:, None], class_ids[None, :]) & known[:, None] & known[None, :]
    return equal | tf.eye(tf.shape(class_ids)[0], dtype=tf.bool)


def bce_with_logits(logits, label: float):
    """Per-example binary cross-entropy against a constant 0/1 label (shape (B,))."""
    logits = tf.cast(logits, tf.float32)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), float(label)), logits=logits)
