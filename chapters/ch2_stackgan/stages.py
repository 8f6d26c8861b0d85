"""Building blocks of the multi-stage GANs (StackGAN++ and AttnGAN): chapters 2 and 3 both use them.

Everything follows ``hanzhanggit/StackGAN-v2`` ``code/model.py`` (AttnGAN copies
these blocks): bias-free 3×3 convolutions, BatchNorm, GLU instead of ReLU in the
generator, orthogonal initialisation.

* :class:`ConditioningAugmentation` — sample the text condition from N(μ(t), σ(t)²)
  and the KL term that keeps it close to N(0, I) (StackGAN §3.1).
* :class:`UpBlock`, :class:`JoinBlock`, :class:`ResidualBlock` — the generator's pieces.
* :class:`StageDiscriminator` — D64 / D128 / D256: an image code at 4×4 and two
  heads, conditional (on the text code tiled 4×4) and unconditional.
* :func:`kl_loss` — the CA's KL term. (StackGAN++'s colour-consistency statistics, used by chapter 2
  only, are ``chapters.ch2_stackgan.model.colour_moments``.)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

LEAK = 0.2


def orthogonal():
    """StackGAN-v2 / AttnGAN ``weights_init``: conv and linear weights orthogonal, gain 1."""
    return keras.initializers.Orthogonal(gain=1.0)


def batch_norm(**kwargs):
    """PyTorch BatchNorm (momentum 0.1 ≙ Keras 0.9, eps 1e-5) with γ ~ N(1, 0.02) as in ``weights_init``.

    ``synchronized=True``: statistics over the global batch under tf.distribute.
    """
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True,
                                     gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02), **kwargs)


def conv3x3(filters, **kwargs):
    return layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=orthogonal(), **kwargs)


def check_stage_sizes(config) -> list[int]:
    """Stage sizes base·2^k; the last must be the profile's image_size (a clear error otherwise)."""
    sizes = [config["base_size"] * 2**i for i in range(config["stages"])]
    if sizes[-1] != config["image_size"]:
        raise ValueError(f"image_size {config['image_size']} must equal the last stage's size {sizes[-1]} "
                         f"(base_size {config['base_size']} × 2^(stages − 1)); change one of them with --set.")
    return sizes


def glu(x):
    """Gated linear unit over channels: first half · sigmoid(second half)."""
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


# ---------------------------------------------------------------------------
# Conditioning augmentation (StackGAN §3.1; v2 ``CA_NET``)
# ---------------------------------------------------------------------------
class ConditioningAugmentation(layers.Layer):
    """t (D) → μ, log σ² (each ``condition_dim``) → c = μ + σ·ε.

    ``parameterisation="v2"`` (StackGAN++, AttnGAN): Linear(D → 4c) → GLU → [μ, logvar], ε ~ N(0, 1).
    ``parameterisation="v1"`` (StackGAN-v1): Linear(D → 2c) → LeakyReLU(0.2) on the whole output →
    [μ, log σ] (log σ, not log σ²), ε ~ truncated normal. Either way the layer returns
    ``(c, μ, logvar)`` with logvar = log σ², so :func:`kl_loss` serves both.
    ``noise`` may be passed in (tests, or one draw shared by several calls).
    """

    def __init__(self, condition_dim=128, parameterisation="v2", **kwargs):
        super().__init__(**kwargs)
        if parameterisation not in ("v1", "v2"):
            raise ValueError(f"parameterisation must be 'v1' or 'v2', not {parameterisation!r}.")
        self.condition_dim = condition_dim
        self.parameterisation = parameterisation
        width = 4 * condition_dim if parameterisation == "v2" else 2 * condition_dim
        if parameterisation == "v2":
            self.fc = layers.Dense(width, kernel_initializer=orthogonal(), bias_initializer="zeros")
        else:
            self.fc = layers.Dense(width, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02))

    def call(self, text_embedding, noise=None, training=False):
        """t (B, D) → (c, μ, log σ²), each (B, ``condition_dim``), with c = μ + σ·ε and σ = exp(½·log σ²)
        (the reparameterisation trick: c stays differentiable in μ and σ). ε (B, ``condition_dim``) is
        ``noise`` when given, else a fresh draw: N(0, 1) for v2, a truncated normal (|ε| ≤ 2) for v1."""
        # BEGIN TASK conditioning_augmentation (ConditioningAugmentation.call)
        h = self.fc(text_embedding)
        if self.parameterisation == "v2":
            h = glu(h)
            mu, logvar = tf.split(h, 2, axis=-1)
        else:
            h = tf.nn.leaky_relu(h, LEAK)
            mu, log_sigma = tf.split(h, 2, axis=-1)
            logvar = 2.0 * log_sigma
        if noise is None:
            shape = tf.shape(mu)
            noise = (tf.random.normal(shape, dtype=mu.dtype) if self.parameterisation == "v2"
                     else tf.random.truncated_normal(shape, dtype=mu.dtype))
        return mu + tf.exp(0.5 * logvar) * noise, mu, logvar
        # END TASK conditioning_augmentation


def kl_loss(mu, logvar):
    """KL(N(μ, σ²) ‖ N(0, I)) per example, averaged over dimensions (both official codes use the mean):

        KL = −½ · mean_d (1 + log σ²_d − μ²_d − σ²_d)

    ``mu``, ``logvar`` (B, d), float16 under mixed precision; computed in float32. Returns shape (B,); the
    batch mean of this is the official ``KL_loss``.
    """
    # BEGIN TASK conditioning_augmentation (kl_loss)
    mu, logvar = tf.cast(mu, tf.float32), tf.cast(logvar, tf.float32)
    return -0.5 * tf.reduce_mean(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1)
    # END TASK conditioning_augmentation


# ---------------------------------------------------------------------------
# Generator blocks (v2 ``upBlock``, ``Block3x3_relu``, ``ResBlock``)
# ---------------------------------------------------------------------------
class UpBlock(layers.Layer):
    """Nearest ×2 → conv3×3 (→ 2·out) → BN → GLU."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.up = layers.UpSampling2D(2, interpolation="nearest")
        self.conv = conv3x3(2 * filters)
        self.norm = batch_norm()

    def call(self, x, training=False):
        return glu(self.norm(self.conv(self.up(x)), training=training))


class JoinBlock(layers.Layer):
    """conv3×3 (→ 2·out) → BN → GLU (``Block3x3_relu``: no ReLU despite the name)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv3x3(2 * filters)
        self.norm = batch_norm()

    def call(self, x, training=False):
        return glu(self.norm(self.conv(x), training=training))


class ResidualBlock(layers.Layer):
    """x + [conv3×3 (→ 2C), BN, GLU, conv3×3 (→ C), BN]; no activation after the sum."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.join = JoinBlock(filters)
        self.conv = conv3x3(filters)
        self.norm = batch_norm()

    def call(self, x, training=False):
        return x + self.norm(self.conv(self.join(x, training=training)), training=training)


# ---------------------------------------------------------------------------
# Per-stage discriminator (v2 ``D_NET64`` / ``D_NET128`` / ``D_NET256``)
# ---------------------------------------------------------------------------
class ConvNormLeaky(layers.Layer):
    """conv (4×4 stride 2, or 3×3 stride 1) → BN (optional) → LeakyReLU(0.2)."""

    def __init__(self, filters, down: bool, norm=True, **kwargs):
        super().__init__(**kwargs)
        self.pad = layers.ZeroPadding2D(1)  # PyTorch's symmetric padding 1
        self.conv = layers.Conv2D(filters, 4 if down else 3, strides=2 if down else 1, padding="valid",
                                  use_bias=False, kernel_initializer=orthogonal())
        self.norm = batch_norm() if norm else None

    def call(self, x, training=False):
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x, training=training)
        return tf.nn.leaky_relu(x, LEAK)


class StageDiscriminator(keras.Model):
    """D for one stage: image → code (4×4×8·ndf) → conditional and unconditional logits.

    * ``encode_image_by_16times``: 4 stride-2 convs (3 → ndf → 2ndf → 4ndf → 8ndf), the first without BN;
      at a stage smaller than 64 px, fewer of them (the code is 4×4 either way, and narrower).
    * Larger stages add ``downBlock``s (8ndf → 16ndf → 32ndf) then 3×3 ``Block3x3_leakRelu``s back to 8ndf.
    * Conditional head: concat [c tiled 4×4, code] (text first, as in v2; ``text_first=False`` for AttnGAN)
      → 3×3 conv → BN → LeakyReLU → 4×4 stride-4 conv (with bias) → logit.
    * Unconditional head: 4×4 stride-4 conv on the code → logit.

    At ndf 64 and condition 128 the 64/128/256-px discriminators have the official
    5,723,906 / 18,834,178 / 71,269,122 parameters. Returns ``(conditional, unconditional)``
    logits, each (B,); pass ``condition=None`` for the unconditional head only.
    """

    def __init__(self, image_size=64, base_width=64, condition_dim=128, text_first=True, **kwargs):
        super().__init__(**kwargs)
        levels = int(round(math.log2(image_size / 4)))
        if image_size < 8 or 4 * 2**levels != image_size:
            raise ValueError(f"A stage discriminator needs a power-of-two image size ≥ 8, not {image_size}.")
        encode = min(levels, 4)
        # Smaller stages keep the top of the ladder narrower: 32 px → ndf, 2ndf, 4ndf (a 4×4×4ndf code).
        widths = [base_width * 2**i for i in range(encode)]
        self.encode = [ConvNormLeaky(w, down=True, norm=i > 0) for i, w in enumerate(widths)]
        code_width = widths[-1]
        extra = levels - encode  # 1 at 128 px, 2 at 256 px
        self.downs = [ConvNormLeaky(code_width * 2 ** (i + 1), down=True) for i in range(extra)]
        self.squeeze = [ConvNormLeaky(code_width * 2 ** (extra - 1 - i), down=False) for i in range(extra)]
        self.condition_dim = condition_dim
        self.text_first = text_first
        self.joint = ConvNormLeaky(code_width, down=False) if condition_dim else None
        logit = dict(kernel_size=4, strides=4, padding="valid", use_bias=True, kernel_initializer=orthogonal())
        self.conditional_logit = layers.Conv2D(1, **logit) if condition_dim else None
        self.unconditional_logit = layers.Conv2D(1, **logit)

    def image_code(self, images, training=False):
        x = images
        for block in self.encode + self.downs + self.squeeze:
            x = block(x, training=training)
        return x

    def conditional(self, code, condition, training=False):
        """The conditional head on an image code: concat with the tiled condition → 3×3 → logit (B,)."""
        tiled = tf.tile(tf.cast(condition, code.dtype)[:, None, None, :], [1, 4, 4, 1])
        joint = tf.concat([tiled, code] if self.text_first else [code, tiled], axis=-1)
        return tf.cast(tf.reshape(self.conditional_logit(self.joint(joint, training=training)), [-1]), tf.float32)

    def unconditional(self, code):
        """The unconditional head on an image code → logit (B,)."""
        return tf.cast(tf.reshape(self.unconditional_logit(code), [-1]), tf.float32)

    def call(self, inputs, training=False):
        images, condition = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        code = self.image_code(images, training=training)
        if condition is None or self.joint is None:
            return None, self.unconditional(code)
        return self.conditional(code, condition, training=training), self.unconditional(code)
