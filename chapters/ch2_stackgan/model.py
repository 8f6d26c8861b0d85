"""Chapter 2 — StackGAN++ (Zhang et al., TPAMI 2018) and StackGAN-v1 (ICCV 2017).

Read top to bottom beside the papers and the README:

1. conditioning augmentation (CA): the text condition is *sampled*, c ~ N(μ(t), σ(t)²),
   with a KL term (StackGAN §3.1) — ``chapters.ch2_stackgan.stages.ConditioningAugmentation``;
2. the StackGAN++ generator tree: one trunk, an image head at 64, 128 and 256 px;
3. one discriminator per stage with a conditional and an unconditional head
   (``chapters.ch2_stackgan.stages.StageDiscriminator``) and the joint loss (StackGAN++ Eq. 3–5,
   as coded in ``code/trainer.py``);
4. StackGAN-v1: stage I (64 px) then stage II (64 → 256 px), trained one after the other.

The conditioning inputs t are Reed's char-CNN-RNN embeddings of chapter 1
(``chapters.ch1_gan_int_cls.char_cnn_rnn``), precomputed and frozen, as in both official codes.
Official hyperparameters live in ``profiles.py`` (profile ``paper``).
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from t2igan.layers import bce_with_logits, normal_init
from chapters.ch2_stackgan.stages import (ConditioningAugmentation, JoinBlock, ResidualBlock, StageDiscriminator, UpBlock,
                           batch_norm, conv3x3, glu, kl_loss, orthogonal)
from t2igan.training.gan import ConditionalGAN

from chapters.ch1_gan_int_cls import model as reed  # chapter 1: Reed's D and residual block


def _levels(size: int, smallest: int = 8) -> int:
    levels = int(round(math.log2(size / 4)))
    if size < smallest or 4 * 2**levels != size:
        raise ValueError(f"Stage sizes must be powers of two ≥ {smallest}, got {size}; set base_size accordingly.")
    return levels


def stage_sizes(base_size: int, stages: int) -> list[int]:
    """Output size of each stage: base, 2·base, 4·base (64, 128, 256 at ``paper``)."""
    return [base_size * 2**i for i in range(stages)]


# ---------------------------------------------------------------------------
# 1–2. StackGAN++ generator tree (``G_NET``: CA_NET, INIT_STAGE_G, NEXT_STAGE_G, GET_IMAGE_G)
# ---------------------------------------------------------------------------
class TreeGenerator(keras.Model):
    """G(z, t) → [x₆₄, x₁₂₈, x₂₅₆], μ, log σ².

    * CA: t → (c, μ, log σ²), c 128-d.
    * Stage 1: [c, z] → Linear (no bias) → BN → GLU → 4×4×16·ngf → 4 up-blocks (GLU) → 64×64×ngf.
    * Stage k > 1: [c tiled, h] → join (3×3 + BN + GLU) → ``residual_blocks`` residual blocks →
      up-block: doubles the size, halves the width.
    * Each stage's features h_k → 3×3 conv → tanh: that stage's image.

    The same c feeds every stage. At ngf 64, 3 stages, t 1024-d, z 100 this has the
    official 21,239,696 parameters.
    """

    def __init__(self, text_dim=1024, noise_dim=100, condition_dim=128, base_width=64, stages=3, base_size=64,
                 residual_blocks=2, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.condition_dim = noise_dim, condition_dim
        self.sizes = stage_sizes(base_size, stages)
        ups = _levels(base_size)
        start = base_width * 2**ups  # 16·ngf = 1024 at 64 px
        self.start_width = start
        self.ca = ConditioningAugmentation(condition_dim, "v2")
        self.fc = layers.Dense(start * 16 * 2, use_bias=False, kernel_initializer=orthogonal())
        self.fc_norm = batch_norm()
        self.first_ups = [UpBlock(start // 2 ** (i + 1)) for i in range(ups)]  # … → ngf
        widths = [base_width // 2**k for k in range(stages)]  # stage k's input width: 64, 32, 16
        self.joins = [JoinBlock(widths[k - 1]) for k in range(1, stages)]
        self.residuals = [[ResidualBlock(widths[k - 1]) for _ in range(residual_blocks)] for k in range(1, stages)]
        self.next_ups = [UpBlock(widths[k]) for k in range(1, stages)]
        self.to_images = [conv3x3(3) for _ in range(stages)]

    def call(self, inputs, training=False):
        """``inputs = [z, t]`` or ``[z, t, ε]`` (ε: the CA noise; drawn here when absent)."""
        noise, text = inputs[0], inputs[1]
        condition_noise = inputs[2] if len(inputs) > 2 else None
        c, mu, logvar = self.ca(text, noise=condition_noise)
        h = tf.concat([c, tf.cast(noise, c.dtype)], axis=-1)  # [c, z], c first
        h = glu(self.fc_norm(self.fc(h), training=training))
        h = tf.reshape(h, [-1, 4, 4, self.start_width])
        for up in self.first_ups:
            h = up(h, training=training)
        features = [h]
        for join, residuals, up in zip(self.joins, self.residuals, self.next_ups):
            size = h.shape[1]
            tiled = tf.tile(c[:, None, None, :], [1, size, size, 1])
            h = join(tf.concat([tiled, h], axis=-1), training=training)  # [c, h], c first
            for block in residuals:
                h = block(h, training=training)
            h = up(h, training=training)
            features.append(h)
        images = [tf.cast(tf.tanh(head(f)), tf.float32) for head, f in zip(self.to_images, features)]
        return images, mu, logvar


class Discriminators(keras.Model):
    """The per-stage discriminators as one Keras model (one optimizer: Adam is per-variable, so
    one Adam over all three equals the three Adams of the official code)."""

    def __init__(self, sizes, base_width=64, condition_dim=128, text_first=True, **kwargs):
        super().__init__(**kwargs)
        self.sizes = list(sizes)
        self.stages = [StageDiscriminator(size, base_width, condition_dim, text_first) for size in self.sizes]

    def call(self, inputs, training=False):
        images, condition = inputs
        return [d([x, condition], training=training) for d, x in zip(self.stages, images)]


@functools.lru_cache(maxsize=None)
def antialiased_resize_matrix(source: int, target: int) -> np.ndarray:
    """The ``[target, source]`` matrix of TensorFlow's antialiased bilinear resize along one axis: the resize of
    each one-hot row (computed eagerly, once per pair of sizes)."""
    with tf.init_scope():  # eager even while a tf.function traces: the matrix enters the graph as a constant
        basis = tf.eye(source)[None, :, None, :]  # [1, source, 1, source]: one one-hot column per channel
        return tf.image.resize(basis, [target, 1], "bilinear", antialias=True)[0, :, 0, :].numpy()


def antialiased_resize(images, size):
    """``tf.image.resize(images, size, "bilinear", antialias=True)`` as two matrix products (``size``: one int for a
    square, or (height, width)). The resize is linear and separable, so the values are the same (float rounding
    aside), and XLA compiles it, whereas it has no kernel for the op behind the antialiased resize
    (ScaleAndTranslate): with it, ``--jit_compile`` works."""
    target_height, target_width = (size, size) if isinstance(size, int) else tuple(size)
    rows = tf.constant(antialiased_resize_matrix(images.shape[1], target_height), images.dtype)
    columns = tf.constant(antialiased_resize_matrix(images.shape[2], target_width), images.dtype)
    return tf.einsum("ih,bhwc,jw->bijc", rows, images, columns)


def resize_to_stages(images, sizes):
    """The real (or wrong) image at every stage's size (official: PIL resizes of the 256 crop)."""
    return [images if images.shape[1] == size else antialiased_resize(images, size) for size in sizes]


# ---------------------------------------------------------------------------
# 3. The StackGAN++ losses and training step (``code/trainer.py``)
# ---------------------------------------------------------------------------
def colour_moments(images):
    """Per-image channel means μ (B, 3) and covariances Σ (B, 3, 3) of the pixels (official
    ``compute_mean_covariance``): with x_p (3,) the p-th of the N = H·W pixels,

        μ = (1/N) Σ_p x_p,        Σ = (1/N) Σ_p (x_p − μ)(x_p − μ)ᵀ   (1/N, not 1/(N − 1), as the code)

    ``images`` (B, H, W, 3), float16 under mixed precision; the moments in float32.
    """
    # BEGIN TASK colour_consistency (colour_moments)
    images = tf.cast(images, tf.float32)
    pixels = tf.reshape(images, [tf.shape(images)[0], -1, images.shape[-1]])
    mean = tf.reduce_mean(pixels, axis=1)
    centred = pixels - mean[:, None, :]
    covariance = tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(pixels)[1], tf.float32)
    return mean, covariance
    # END TASK colour_consistency


class StackGanPlusPlus(ConditionalGAN):
    """One G forward per batch; every D updated on it, then G.

    Per stage i, with μ the CA mean (detached in the D step) and u = ``uncond_weight``:
        L_D,i = BCE(Dc(x, μ), 1) + u·BCE(Du(x), 1)                 real image, right text
              + BCE(Dc(x_w, μ), 0) + u·BCE(Du(x_w), 1)             wrong image: mismatched, yet real
              + BCE(Dc(G_i, μ), 0) + u·BCE(Du(G_i), 0)             generated
        (u = 0: L_D,i = real + ½·(wrong + fake), the v1-style form)
        L_G = Σ_i [BCE(Dc(G_i, μ), 1) + u·BCE(Du(G_i), 1)] + λ_KL·KL(μ, σ) [+ colour consistency]
    """

    def __init__(self, generator, discriminator, kl_weight=2.0, uncond_weight=1.0, colour_weight=0.0,
                 ema_decay=0.999, extra_groups=None, **kwargs):
        super().__init__(ema_decay=ema_decay, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.kl_weight, self.uncond_weight, self.colour_weight = kl_weight, uncond_weight, colour_weight
        self.sizes = generator.sizes
        # ``extra_groups``: a subclass's own metrics (AttnGAN's DAMSM terms), name → TensorBoard group.
        self.metric_groups = {"d_loss": "loss", "g_loss": "loss", "kl": "loss", **(extra_groups or {})}
        for size in self.sizes:  # one set per stage: d_loss_64 is the 64-px stage's
            for name, group in [("d_loss", "loss"), ("g_loss", "loss"), ("d_real", "score"), ("d_wrong", "score"),
                                ("d_fake", "score")]:
                self.metric_groups[f"{name}_{size}"] = group
        if colour_weight:
            self.metric_groups["colour"] = "loss"
        self.track(*self.metric_groups)

    def split_noise(self, noise):
        """The pipeline's noise row carries z and the CA's ε side by side."""
        return noise[:, : self.generator.noise_dim], noise[:, self.generator.noise_dim :]

    def discriminator_loss(self, d, real, wrong, fake, mu):
        """L_D,i per example (B,) of one stage's ``d`` (official ``train_Dnet``; the class docstring has the
        terms). ``d([images, μ], training=True)`` returns (conditional, unconditional) logits, each (B,).
        ``real``: real images with their text, ``wrong``: real images of another text, ``fake``: G's images,
        ``mu``: the CA mean, all detached here (official ``.detach()``: L_D trains D only). Returns
        (L_D,i, σ(Dc(x, μ)), σ(Dc(x_w, μ)), σ(Dc(G_i, μ))), the last three the conditional scores for the logs.
        """
        # BEGIN TASK joint_stage_loss (StackGanPlusPlus.discriminator_loss)
        fake, mu = tf.stop_gradient(fake), tf.stop_gradient(mu)
        u = self.uncond_weight
        real_c, real_u = d([real, mu], training=True)
        wrong_c, wrong_u = d([wrong, mu], training=True)
        fake_c, fake_u = d([fake, mu], training=True)
        real_loss, wrong_loss, fake_loss = bce_with_logits(real_c, 1.0), bce_with_logits(wrong_c, 0.0), bce_with_logits(fake_c, 0.0)
        if u > 0:
            per_example = (real_loss + u * bce_with_logits(real_u, 1.0) + wrong_loss + u * bce_with_logits(wrong_u, 1.0)
                           + fake_loss + u * bce_with_logits(fake_u, 0.0))
        else:
            per_example = real_loss + 0.5 * (wrong_loss + fake_loss)
        # END TASK joint_stage_loss
        return per_example, tf.sigmoid(real_c), tf.sigmoid(wrong_c), tf.sigmoid(fake_c)

    def update_discriminators(self, stage_loss, logs):
        """One step of the discriminator optimizer over every stage's D.

        ``stage_loss(i, d)`` → (per-example loss, D(real), D(wrong), D(fake)) of stage i; the scores
        and losses go into ``logs`` under the stage's size. Returns the summed per-example loss.
        """
        with tf.GradientTape() as tape:
            total = 0.0
            for i, (size, d) in enumerate(zip(self.sizes, self.discriminator.stages)):
                per_example, s_real, s_wrong, s_fake = stage_loss(i, d)
                total += per_example
                logs.update({f"d_loss_{size}": per_example, f"d_real_{size}": s_real, f"d_wrong_{size}": s_wrong,
                             f"d_fake_{size}": s_fake})
            loss = self.average(total)
        self.apply(self.discriminator_optimizer, tape, loss, self.discriminator.trainable_variables)
        return total

    def adversarial_generator_loss(self, fakes, condition, logs):
        """Σ_i [BCE(Dc(G_i, condition), 1) + u·BCE(Du(G_i), 1)] per example (B,), over the stages (``self.sizes``,
        ``self.discriminator.stages`` and ``fakes`` in the same order); stage i's term also goes into
        ``logs[f"g_loss_{size}"]``. ``condition`` (μ here) is not detached: the gradient reaches CA."""
        # BEGIN TASK joint_stage_loss (StackGanPlusPlus.adversarial_generator_loss)
        total = 0.0
        for size, d, fake in zip(self.sizes, self.discriminator.stages, fakes):
            conditional, unconditional = d([fake, condition], training=True)
            per_example = bce_with_logits(conditional, 1.0) + self.uncond_weight * bce_with_logits(unconditional, 1.0)
            total += per_example
            logs[f"g_loss_{size}"] = per_example
        return total
        # END TASK joint_stage_loss

    def colour_consistency(self, images):
        """λ·MSE(mean_i, mean_{i−1}) + 5λ·MSE(cov_i, cov_{i−1}) over consecutive stages (StackGAN++ §4.2).

        Per example (B,), with λ = ``self.colour_weight`` and (μ_i, Σ_i) = ``colour_moments(images[i])``:

            L_C = Σ_{i ≥ 1} λ·mean_c (μ_i − μ_{i−1})² + 5λ·mean_{c, c'} (Σ_i − Σ_{i−1})²

        (the paper's λ1‖μ_i − μ_{i−1}‖² + λ2‖Σ_i − Σ_{i−1}‖²_F with λ2 = 5·λ1, as means like the official
        ``nn.MSELoss``). The earlier stage i − 1 is the target: detached (official ``.detach()``).
        """
        # BEGIN TASK colour_consistency (StackGanPlusPlus.colour_consistency)
        per_example = 0.0
        for previous, current in zip(images[:-1], images[1:]):
            mean_p, cov_p = colour_moments(tf.stop_gradient(previous))
            mean_c, cov_c = colour_moments(current)
            per_example += (tf.reduce_mean(tf.square(mean_c - mean_p), axis=-1)
                            + 5.0 * tf.reduce_mean(tf.square(cov_c - cov_p), axis=[1, 2]))
        return self.colour_weight * per_example
        # END TASK colour_consistency

    def train_step(self, batch):
        text = batch["text_embedding"]
        z, epsilon = self.split_noise(batch["noise"][:, 0])
        reals = resize_to_stages(batch["image"], self.sizes)
        wrongs = resize_to_stages(batch["wrong_image"], self.sizes)
        logs = {}
        with tf.GradientTape() as g_tape:
            fakes, mu, logvar = self.generator([z, text, epsilon], training=True)
            # ---- every stage's D on the same generated batch (μ and the images detached)
            d_total = self.update_discriminators(lambda i, d: self.discriminator_loss(
                d, reals[i], wrongs[i], fakes[i], mu), logs)
            # ---- G against the updated Ds, μ with gradient into CA
            g_total = self.adversarial_generator_loss(fakes, mu, logs)
            kl = kl_loss(mu, logvar)
            g_total += self.kl_weight * kl
            if self.colour_weight:
                logs["colour"] = self.colour_consistency(fakes)
                g_total += logs["colour"]
            g_loss = self.average(g_total)
        self.apply(self.generator_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(d_loss=d_total, g_loss=g_total, kl=kl, **logs)

    def generate(self, noise, text_embedding, all_stages=False):
        """Images from ``noise`` = [z, ε] rows (ε: the CA noise); the largest stage unless ``all_stages``."""
        z, epsilon = self.split_noise(tf.convert_to_tensor(noise, tf.float32))
        images, _, _ = self.sampling_generator([z, text_embedding, epsilon], training=False)
        return images if all_stages else images[-1]


# ---------------------------------------------------------------------------
# 4. StackGAN-v1: stage I (64 px), then stage II (64 → 256 px) on top of the frozen stage I
# ---------------------------------------------------------------------------
def v1_batch_norm():
    # TF 0.12 code: decay 0.9, eps 1e-5, γ ~ N(1, 0.02).
    return batch_norm()


def v1_conv(filters, kernel, strides=1):
    # ``custom_ops.conv2d``: no bias, TruncatedNormal(0.02).
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                         kernel_initializer=keras.initializers.TruncatedNormal(0.0, 0.02))


class UpV1(layers.Layer):
    """Nearest ×2 → 3×3 conv → BN (→ ReLU): StackGAN-v1 up-sampling."""

    def __init__(self, filters, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.up, self.conv, self.norm, self.relu = layers.UpSampling2D(2), v1_conv(filters, 3), v1_batch_norm(), relu

    def call(self, x, training=False):
        x = self.norm(self.conv(self.up(x)), training=training)
        return tf.nn.relu(x) if self.relu else x


class StageOneGenerator(keras.Model):
    """G₀(z, t): CA (v1) → [c, z] → Linear → BN → 4×4×8·gf → residual → up (no ReLU) → residual →
    up … → 3×3 conv → tanh. Reed's G with nearest-neighbour up-sampling instead of transposed convs."""

    def __init__(self, text_dim=1024, noise_dim=100, condition_dim=128, base_width=128, image_size=64, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.condition_dim, self.sizes = noise_dim, condition_dim, [image_size]
        levels = _levels(image_size)
        widths = [base_width * 8 // 2**i for i in range(levels)]  # 1024, 512, 256, 128
        self.ca = ConditioningAugmentation(condition_dim, "v1")
        self.fc = layers.Dense(16 * widths[0], kernel_initializer=normal_init())
        self.fc_norm = v1_batch_norm()
        self.residual_4 = reed.Bottleneck(widths[0], widths[0] // 4, tf.nn.relu, False)
        self.up_8 = UpV1(widths[1], relu=False)
        self.residual_8 = reed.Bottleneck(widths[1], widths[1] // 4, tf.nn.relu, False)
        self.ups = [UpV1(w) for w in widths[2:]]
        self.to_image = keras.Sequential([layers.UpSampling2D(2), v1_conv(3, 3)])
        self.start_width = widths[0]

    def call(self, inputs, training=False):
        noise, text = inputs[0], inputs[1]
        c, mu, logvar = self.ca(text, noise=inputs[2] if len(inputs) > 2 else None)
        x = self.fc_norm(self.fc(tf.concat([c, tf.cast(noise, c.dtype)], axis=-1)), training=training)  # no ReLU
        x = tf.reshape(x, [-1, 4, 4, self.start_width])
        x = tf.nn.relu(self.residual_4(x, training=training))
        x = self.up_8(x, training=training)
        x = tf.nn.relu(self.residual_8(x, training=training))
        for up in self.ups:
            x = up(x, training=training)
        return [tf.cast(tf.tanh(self.to_image(x)), tf.float32)], mu, logvar


class StageTwoGenerator(keras.Model):
    """G₁(x₀, t): its own CA; encode x₀ to ¼ size × 512, join c, 4 residual blocks, up to 4·(x₀ size)."""

    def __init__(self, text_dim=1024, condition_dim=128, base_width=128, input_size=64, image_size=256,
                 residual_blocks=4, **kwargs):
        super().__init__(**kwargs)
        self.condition_dim, self.sizes = condition_dim, [image_size]
        ups = _levels(image_size) - _levels(input_size) + 2
        self.ca = ConditioningAugmentation(condition_dim, "v1")
        self.encode_convs = [v1_conv(base_width, 3), v1_conv(2 * base_width, 4, 2), v1_conv(4 * base_width, 4, 2)]
        self.encode_norms = [None, v1_batch_norm(), v1_batch_norm()]
        self.join, self.join_norm = v1_conv(4 * base_width, 3), v1_batch_norm()
        self.residuals = [[v1_conv(4 * base_width, 3), v1_batch_norm(), v1_conv(4 * base_width, 3), v1_batch_norm()]
                          for _ in range(residual_blocks)]
        self.ups = [UpV1(4 * base_width // 2 ** (i + 1)) for i in range(ups)]  # 256, 128, 64, 32
        self.to_image = v1_conv(3, 3)

    def call(self, inputs, training=False):
        stage_one_image, text = inputs[0], inputs[1]
        c, mu, logvar = self.ca(text, noise=inputs[2] if len(inputs) > 2 else None)
        x = stage_one_image
        for conv, norm in zip(self.encode_convs, self.encode_norms):
            x = conv(x)
            x = tf.nn.relu(norm(x, training=training) if norm is not None else x)
        size = x.shape[1]
        x = tf.concat([x, tf.tile(c[:, None, None, :], [1, size, size, 1])], axis=-1)
        x = tf.nn.relu(self.join_norm(self.join(x), training=training))
        for conv_a, norm_a, conv_b, norm_b in self.residuals:
            h = tf.nn.relu(norm_a(conv_a(x), training=training))
            x = tf.nn.relu(x + norm_b(conv_b(h), training=training))
        for up in self.ups:
            x = up(x, training=training)
        return [tf.cast(tf.tanh(self.to_image(x)), tf.float32)], mu, logvar


class StageTwoDiscriminator(keras.Model):
    """D₁(x, t): stride-2 convs to 4×4 (up to 32·df), 1×1 convs back to 8·df (the last without
    LeakyReLU), Reed's residual block, then the text head of stage I (own Linear(t) + LeakyReLU)."""

    def __init__(self, text_dim=1024, projection_dim=128, base_width=64, image_size=256, **kwargs):
        super().__init__(**kwargs)
        levels = _levels(image_size)
        widths = [base_width * 2 ** (i + max(0, 4 - levels)) for i in range(levels)]  # 64 … 2048 at 256 px
        self.downs = [v1_conv(w, 4, 2) for w in widths]
        self.down_norms = [None] + [v1_batch_norm() for _ in widths[1:]]
        squeeze, width = [], widths[-1]
        while width > 8 * base_width:
            width //= 2
            squeeze.append(width)
        self.squeezes = [v1_conv(w, 1) for w in squeeze]
        self.squeeze_norms = [v1_batch_norm() for _ in squeeze]
        leaky = lambda h: tf.nn.leaky_relu(h, 0.2)
        self.residual = reed.Bottleneck(8 * base_width, 2 * base_width, leaky, False)
        self.project_text = layers.Dense(projection_dim, kernel_initializer=normal_init())
        self.joint, self.joint_norm = v1_conv(8 * base_width, 1), v1_batch_norm()
        self.logit = layers.Conv2D(1, 4, strides=4, padding="valid", use_bias=False, kernel_initializer=normal_init())

    def call(self, inputs, training=False):
        images, text_embedding = inputs
        x = images
        for conv, norm in zip(self.downs, self.down_norms):
            x = conv(x)
            x = tf.nn.leaky_relu(norm(x, training=training) if norm is not None else x, 0.2)
        for i, (conv, norm) in enumerate(zip(self.squeezes, self.squeeze_norms)):
            x = norm(conv(x), training=training)
            x = tf.nn.leaky_relu(x, 0.2) if i < len(self.squeezes) - 1 else x
        x = tf.nn.leaky_relu(self.residual(x, training=training), 0.2)
        text = tf.nn.leaky_relu(self.project_text(text_embedding), 0.2)
        x = tf.concat([x, tf.tile(tf.cast(text, x.dtype)[:, None, None, :], [1, 4, 4, 1])], axis=-1)
        x = tf.nn.leaky_relu(self.joint_norm(self.joint(x), training=training), 0.2)
        return tf.cast(tf.reshape(self.logit(x), [-1]), tf.float32)


def stage_one_discriminator(text_dim=1024, projection_dim=128, base_width=64, image_size=64):
    """Stage-I D is Reed's D (chapter 1) without the BatchNorm on the projected text: 4,029,824 parameters."""
    return reed.Discriminator(text_dim, projection_dim, base_width, image_size, conv_bias=False,
                              missing_activations=True, text_batch_norm=False)


class StackGanV1(ConditionalGAN):
    """One stage of StackGAN-v1 (``stageI/trainer.py``; stage II the same on top of frozen stage I).

        L_D = BCE(D(x, t), 1) + ½·[BCE(D(x_w, t), 0) + BCE(D(G(z, c), t), 0)]
        L_G = BCE(D(G(z, c), t), 1) + λ_KL·KL
    ``stage_one`` (stage II only): the trained stage-I generator, frozen, whose image G₁ refines.
    """

    metric_groups = {**ConditionalGAN.metric_groups, "kl": "loss", "d_real": "score", "d_wrong": "score",
                     "d_fake": "score"}

    def __init__(self, generator, discriminator, stage_one=None, kl_weight=2.0, ema_decay=0.0, **kwargs):
        super().__init__(ema_decay=ema_decay, **kwargs)
        self.generator, self.discriminator, self.stage_one = generator, discriminator, stage_one
        if stage_one is not None:
            stage_one.trainable = False
        self.kl_weight = kl_weight
        self.sizes = generator.sizes
        self.noise_dim = stage_one.noise_dim if stage_one is not None else generator.noise_dim
        self.track("d_loss", "g_loss", "kl", "d_real", "d_wrong", "d_fake")

    def forward(self, generator, noise, text, training):
        """z and the CA noise(s) from one pipeline row: [z | ε (stage I) | ε (stage II)]."""
        z, rest = noise[:, : self.noise_dim], noise[:, self.noise_dim :]
        if self.stage_one is None:
            return generator([z, text, rest[:, : generator.condition_dim]], training=training)
        (coarse,), _, _ = self.stage_one([z, text, rest[:, : self.stage_one.condition_dim]], training=False)
        return generator([coarse, text, rest[:, self.stage_one.condition_dim :]], training=training)

    def train_step(self, batch):
        text, real, wrong = batch["text_embedding"], batch["image"], batch["wrong_image"]
        with tf.GradientTape() as g_tape:
            (fake,), mu, logvar = self.forward(self.generator, batch["noise"][:, 0], text, training=True)
            with tf.GradientTape() as d_tape:
                real_logits = self.discriminator([real, text], training=True)
                wrong_logits = self.discriminator([wrong, text], training=True)
                fake_logits = self.discriminator([tf.stop_gradient(fake), text], training=True)
                d_per_example = bce_with_logits(real_logits, 1.0) + 0.5 * (
                    bce_with_logits(wrong_logits, 0.0) + bce_with_logits(fake_logits, 0.0))
                d_loss = self.average(d_per_example)
            self.apply(self.discriminator_optimizer, d_tape, d_loss, self.discriminator.trainable_variables)
            kl = kl_loss(mu, logvar)
            g_per_example = bce_with_logits(self.discriminator([fake, text], training=True), 1.0) + self.kl_weight * kl
            g_loss = self.average(g_per_example)
        self.apply(self.generator_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(d_loss=d_per_example, g_loss=g_per_example, kl=kl, d_real=tf.sigmoid(real_logits),
                           d_wrong=tf.sigmoid(wrong_logits), d_fake=tf.sigmoid(fake_logits))

    def generate(self, noise, text_embedding, all_stages=False):
        noise = tf.convert_to_tensor(noise, tf.float32)
        (image,), _, _ = self.forward(self.sampling_generator, noise, text_embedding, training=False)
        if not all_stages:
            return image
        if self.stage_one is None:
            return [image]
        z, rest = noise[:, : self.noise_dim], noise[:, self.noise_dim :]
        (coarse,), _, _ = self.stage_one([z, text_embedding, rest[:, : self.stage_one.condition_dim]], training=False)
        return [coarse, image]
