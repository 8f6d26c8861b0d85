"""Chapter 1 — GAN-INT-CLS: Reed et al., "Generative Adversarial Text to Image Synthesis", ICML 2016.

Read top to bottom beside the paper and the README:

1. the text encoder φ(t): Reed's char-CNN-RNN (CVPR 2016), trained with the
   symmetric DS-SJE loss against an image encoder (§2.1 of the CVPR paper);
2. the generator G(z, φ(t)) and discriminator D(x, φ(t)) of ``main_cls_int.lua``;
3. the GAN-CLS loss (matching-aware D: real/right, real/wrong, fake/right) and
   GAN-INT (G also trained on interpolated text embeddings), Algorithm 1.

Official hyperparameters live in ``profiles.py`` (profile ``paper``).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from t2igan.layers import bce_with_logits, normal_init, torch_linear
from t2igan.training.gan import ConditionalGAN

LEAK = 0.2  # LeakyReLU slope in Reed's code (Keras' default is 0.3)


# ---------------------------------------------------------------------------
# 1. Text encoder φ(t): Reed's char-CNN-RNN, pretrained with DS-SJE
# ---------------------------------------------------------------------------
# It has its own file, ``char_cnn_rnn.py`` beside this one (StackGAN, chapter 2, imports it for the
# same embeddings): read it now. In short:
#   CharCnnRnn    one-hot characters → 3 × Conv1D (+ 2 max-pools) → GRU → mean → Linear → φ(t)
#   ImageEncoder  the image side θ(v) of the joint embedding (Reed: fixed GoogLeNet features)
#   ds_sje_loss   hinge on F(v, t) = ⟨θ(v), φ(t)⟩ against other-class pairs, both directions
#   JointEmbedding  the Keras model ``chapter1-pretrain`` fits
# The GAN never trains φ(t): every caption is embedded once, before GAN training.
from chapters.ch1_gan_int_cls.char_cnn_rnn import CharCnnRnn, ImageEncoder, JointEmbedding, ds_sje_loss  # noqa: F401,E402


# ---------------------------------------------------------------------------
# 2. Generator and discriminator (main_cls_int.lua)
# ---------------------------------------------------------------------------
def batch_norm(**kwargs):
    # PyTorch/Torch momentum 0.1 ≙ Keras 0.9; eps 1e-5; γ ~ N(1, 0.02) as in Reed's init.
    # synchronized=True: statistics over the global batch under tf.distribute.
    return layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=True,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02), **kwargs
    )


class Bottleneck(layers.Layer):
    """x + [1×1 → BN → act → 3×3 → BN → act → 3×3 → BN]  (Reed's residual block; act applied after the sum by the caller)."""

    def __init__(self, width, inner, activation, use_bias, **kwargs):
        super().__init__(**kwargs)
        conv = dict(kernel_initializer=normal_init(), use_bias=use_bias)
        self.convs = [layers.Conv2D(inner, 1, **conv), layers.Conv2D(inner, 3, padding="same", **conv),
                      layers.Conv2D(width, 3, padding="same", **conv)]
        self.norms = [batch_norm(), batch_norm(), batch_norm()]
        self.activation = activation

    def call(self, x, training=False):
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h), training=training)
            if i < 2:
                h = self.activation(h)
        return x + h


def _levels(image_size):
    if image_size not in (16, 32, 64):
        raise ValueError(f"GAN-INT-CLS builds 16, 32 or 64 px images, not {image_size}; set image_size to one of them.")
    return {64: 4, 32: 3, 16: 2}[image_size]  # number of 2× up/down-samplings between 4×4 and the image


class Generator(keras.Model):
    """G(z, φ(t)): φ(t) → Linear(128) + LeakyReLU(0.2); concat [z, t] → 4×4 → … → 64×64 tanh."""

    def __init__(self, text_dim=1024, noise_dim=100, projection_dim=128, base_width=128, image_size=64, conv_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim = noise_dim
        levels = _levels(image_size)
        widths = [base_width * 8 // 2**i for i in range(levels)]  # 1024, 512, 256, 128 at ngf 128
        conv = dict(kernel_initializer=normal_init(), use_bias=conv_bias)
        self.project_text = torch_linear(projection_dim, fan_in=text_dim)
        self.start = layers.Conv2DTranspose(widths[0], 4, padding="valid", **conv)  # 1×1 → 4×4
        self.start_norm = batch_norm()
        relu = tf.nn.relu
        self.residual_4 = Bottleneck(widths[0], widths[0] // 4, relu, conv_bias)
        self.up_8 = layers.Conv2DTranspose(widths[1], 4, strides=2, padding="same", **conv)
        self.up_8_norm = batch_norm()
        self.residual_8 = Bottleneck(widths[1], widths[1] // 4, relu, conv_bias)
        self.ups = [layers.Conv2DTranspose(w, 4, strides=2, padding="same", **conv) for w in widths[2:]]
        self.up_norms = [batch_norm() for _ in widths[2:]]
        self.to_image = layers.Conv2DTranspose(3, 4, strides=2, padding="same", **conv)

    def call(self, inputs, training=False):
        noise, text_embedding = inputs
        text = tf.nn.leaky_relu(self.project_text(text_embedding), LEAK)
        x = tf.concat([noise, tf.cast(text, noise.dtype)], axis=-1)[:, None, None, :]  # [z, t], noise first
        x = self.start_norm(self.start(x), training=training)  # BN, no ReLU before the residual block
        x = tf.nn.relu(self.residual_4(x, training=training))
        x = self.up_8_norm(self.up_8(x), training=training)
        x = tf.nn.relu(self.residual_8(x, training=training))
        for up, norm in zip(self.ups, self.up_norms):
            x = tf.nn.relu(norm(up(x), training=training))
        return tf.cast(tf.tanh(self.to_image(x)), tf.float32)


class Discriminator(keras.Model):
    """D(x, φ(t)): strided convs to 4×4×512, residual block, tiled projected text, 1×1 conv, 4×4 logit.

    As in the CUB/Flowers code, conv3 and conv4 have no LeakyReLU
    (``missing_activations=True``; the COCO script has them — set False to add them).
    ``text_batch_norm=False`` drops the BatchNorm on the projected text: that is
    StackGAN-v1's stage-I discriminator (chapter 2), otherwise the same network.
    """

    def __init__(self, text_dim=1024, projection_dim=128, base_width=64, image_size=64, conv_bias=False,
                 missing_activations=True, text_batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        levels = _levels(image_size)
        widths = [base_width * 8 // 2 ** (levels - 1 - i) for i in range(levels)]  # 64, 128, 256, 512
        conv = dict(kernel_initializer=normal_init(), use_bias=conv_bias)
        self.pad = layers.ZeroPadding2D(1)  # PyTorch's symmetric pad 1 for 4×4 stride-2 convs
        self.downs = [layers.Conv2D(w, 4, strides=2, padding="valid", **conv) for w in widths]
        self.down_norms = [None] + [batch_norm() for _ in widths[1:]]
        # Which downsampling layers are followed by LeakyReLU (the last two are not, in the official code).
        self.down_activated = [True] * levels
        if missing_activations:
            self.down_activated[-2:] = [False, False]
        leaky = lambda h: tf.nn.leaky_relu(h, LEAK)
        self.residual = Bottleneck(widths[-1], widths[-1] // 4, leaky, conv_bias)
        self.project_text = torch_linear(projection_dim, fan_in=text_dim)
        self.text_norm = batch_norm() if text_batch_norm else None  # StackGAN-v1's stage-I D has none
        self.joint = layers.Conv2D(widths[-1], 1, **conv)
        self.joint_norm = batch_norm()
        self.logit = layers.Conv2D(1, 4, padding="valid", **conv)

    def call(self, inputs, training=False):
        images, text_embedding = inputs
        x = images
        for conv, norm, activated in zip(self.downs, self.down_norms, self.down_activated):
            x = conv(self.pad(x))
            if norm is not None:
                x = norm(x, training=training)
            if activated:
                x = tf.nn.leaky_relu(x, LEAK)
        x = tf.nn.leaky_relu(self.residual(x, training=training), LEAK)
        text = self.project_text(text_embedding)
        if self.text_norm is not None:
            text = self.text_norm(text, training=training)
        text = tf.nn.leaky_relu(text, LEAK)
        text = tf.tile(tf.cast(text, x.dtype)[:, None, None, :], [1, 4, 4, 1])  # replicate 4×4
        x = tf.concat([x, text], axis=-1)  # [image, text], image first
        x = tf.nn.leaky_relu(self.joint_norm(self.joint(x), training=training), LEAK)
        return tf.cast(tf.reshape(self.logit(x), [-1]), tf.float32)


# ---------------------------------------------------------------------------
# 3. GAN-CLS + GAN-INT (Algorithm 1 of the paper, as coded in main_cls_int.lua)
# ---------------------------------------------------------------------------
class GanIntCls(ConditionalGAN):
    """One D step then one G step per batch.

    D:  L_D = BCE(D(x, t), 1) + w_cls · BCE(D(x̂, t), 0) + (1 − w_cls) · BCE(D(G(z, t), t), 0)
        (x̂ = an image of another class — the "wrong" image; w_cls = 0.5)
    G:  L_G = BCE(D(G(z, t), t), 1) on the batch's captions, plus, with GAN-INT,
        BCE(D(G(z', t_int), t_int), 1) with t_int = β·t1 + (1 − β)·t2, β = 0.5.

    Reed builds G's batch as 64 real-text rows + 32 interpolated rows and
    averages over the 96. Here *every* example gets an interpolation partner
    (the pipeline's ``wrong_text_embedding``) at half weight, which has the same
    expected loss and keeps every replica's rows independent of how the batch
    is split (so 1 and N replicas train identically). The two kinds of rows go
    through the networks as separate batches (see the G step).
    """

    metric_groups = {**ConditionalGAN.metric_groups, "d_real": "score", "d_wrong": "score", "d_fake": "score"}

    def __init__(self, generator, discriminator, matching_aware=True, interpolation=True,
                 cls_weight=0.5, interp_beta=0.5, interp_weight=1.0, ema_decay=0.0, **kwargs):
        super().__init__(ema_decay=ema_decay, **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.matching_aware = matching_aware
        self.interpolation = interpolation
        self.cls_weight = cls_weight if matching_aware else 0.0
        self.interp_beta = interp_beta
        self.interp_weight = interp_weight
        self.track("d_loss", "g_loss", "d_real", "d_wrong", "d_fake")

    def discriminator_loss(self, real_images, wrong_images, fake_images, text):
        """GAN-CLS's D loss (Algorithm 1 as coded in ``main_cls_int.lua``), s = sigmoid(D(·, ·)):

            L_D = BCE(D(x, t), 1) + w_cls · BCE(D(x̂, t), 0) + (1 − w_cls) · BCE(D(G(z, t), t), 0)
                = −[log s_r + w_cls · log(1 − s_w) + (1 − w_cls) · log(1 − s_f)],   w_cls = ``self.cls_weight``

        three pairs: real image x with its caption t ("real/right", label 1), a real image x̂ of another
        class with t (``wrong_images``: "real/wrong", label 0), the generator's image G(z, t) with t
        (``fake_images``: "fake/right", label 0). D's step trains D only: no gradient may reach G through them.
        Three separate D passes of B rows each (BatchNorm sees each kind alone), in the order real, fake,
        wrong. Without ``self.matching_aware`` (plain conditional GAN, w_cls = 0) there is no wrong pass, and
        the real logits stand in for the wrong ones in the logs.

        ``real_images``, ``wrong_images``, ``fake_images``: (B, H, W, 3); ``text``: φ(t) (B, D). Returns (L_D, L_D per
        example (B,), (real_logits, wrong_logits, fake_logits) each (B,)), where L_D = ``self.average`` of the
        per-example values: the mean over the *global* batch, correct under any number of replicas.
        """
        # BEGIN TASK gan_cls_loss (GanIntCls.discriminator_loss)
        real_logits = self.discriminator([real_images, text], training=True)
        fake_logits = self.discriminator([tf.stop_gradient(fake_images), text], training=True)
        per_example = bce_with_logits(real_logits, 1.0) + (1.0 - self.cls_weight) * bce_with_logits(fake_logits, 0.0)
        if self.matching_aware:  # GAN-CLS: a real image with the wrong caption is "fake" too
            wrong_logits = self.discriminator([wrong_images, text], training=True)
            per_example += self.cls_weight * bce_with_logits(wrong_logits, 0.0)
        else:
            wrong_logits = real_logits
        return self.average(per_example), per_example, (real_logits, wrong_logits, fake_logits)
        # END TASK gan_cls_loss

    def generator_loss(self, noise, interpolation_noise, text, partner_text):
        """G's loss: GAN-CLS's non-saturating term plus GAN-INT's (Reed §4.3):

            L_G = [BCE(D(G(z, t₁), t₁), 1) + w · BCE(D(G(z', t_int), t_int), 1)] / (1 + w),
            t_int = β·t₁ + (1 − β)·t₂,   β = ``self.interp_beta``,   w = ½ · ``self.interp_weight``

        t₁ = ``text`` (B, D) the batch's captions, t₂ = ``partner_text`` (B, D) each example's interpolation
        partner (another example's caption), z = ``noise`` and z' = ``interpolation_noise`` (B, Z) two fresh
        draws. BCE(·, 1) = −log s: the non-saturating loss that Reed's code uses for log(1 − s). The
        interpolated pair (G's image, t_int) is judged by D as a whole; t_int has no real image. The weight ½
        stands in for Reed's 32 interpolated rows per 64 real ones. Real-text rows and interpolated rows go
        through G and D as two separate batches of B (never one 2B batch: BatchNorm). Without
        ``self.interpolation`` only the first term (w = 0). Returns (L_G, L_G per example (B,)), where
        L_G = ``self.average`` of the per-example values (the global-batch mean, as for D).
        """
        # BEGIN TASK gan_int (GanIntCls.generator_loss)
        generated = self.generator([noise, text], training=True)
        per_example = bce_with_logits(self.discriminator([generated, text], training=True), 1.0)
        if self.interpolation:  # GAN-INT: also fool D on captions between two training captions
            interpolated = self.interp_beta * text + (1.0 - self.interp_beta) * partner_text
            generated_interpolated = self.generator([interpolation_noise, interpolated], training=True)
            interpolated_logits = self.discriminator([generated_interpolated, interpolated], training=True)
            weight = 0.5 * self.interp_weight  # Reed: 32 interpolated rows per 64 real ones
            per_example = (per_example + weight * bce_with_logits(interpolated_logits, 1.0)) / (1.0 + weight)
        return self.average(per_example), per_example
        # END TASK gan_int

    def train_step(self, batch):
        real, text = batch["image"], batch["text_embedding"]
        noise = batch["noise"]  # (B, 3, Z): one draw for the D step, two for the G step
        # ---- discriminator step
        fake = self.generator([noise[:, 0], text], training=True)
        with tf.GradientTape() as tape:
            d_loss, d_per_example, (real_logits, wrong_logits, fake_logits) = self.discriminator_loss(
                real, batch["wrong_image"], fake, text)
        self.apply(self.discriminator_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # ---- generator step (fresh noise). Real-text rows and interpolated rows go through G and D
        # as two separate batches of B, like the D step's passes: one mixed 2B batch lets G exploit
        # BatchNorm statistics that D never sees in its own step (observed: D(fake) → 0 in the D step
        # while → 1 in the G step, and the samples collapse).
        with tf.GradientTape() as tape:
            g_loss, g_per_example = self.generator_loss(noise[:, 1], noise[:, 2], text, batch["wrong_text_embedding"])
        self.apply(self.generator_optimizer, tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(  # metrics: plain means over this replica's rows; Keras averages replicas
            d_loss=tf.reduce_mean(d_per_example), g_loss=tf.reduce_mean(g_per_example),
            d_real=tf.sigmoid(real_logits), d_wrong=tf.sigmoid(wrong_logits), d_fake=tf.sigmoid(fake_logits),
        )

    def generate(self, noise, text_embedding):
        return self.sampling_generator([noise, text_embedding], training=False)
