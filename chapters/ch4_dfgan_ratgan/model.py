"""Chapter 4 — one-stage GANs: DF-GAN (Tao et al., CVPR 2022) and RAT-GAN (Ye et al., 2022).

Read top to bottom beside the papers and the README:

1. affine fusion: the text (and noise) predict a per-channel scale γ and shift β of the activations —
   DF-GAN's ``Affine``, the one fusion operator of both models — and the generator block built on it;
2. the DF-GAN generator: 4×4 → 256×256 in one stage, every up-block fused by two DFBlocks;
3. the DF-GAN discriminator: a residual trunk and a head that sees the sentence once, at 4×4;
4. the matching-aware gradient penalty (MA-GP): a smooth D around real, matching (image, text) pairs;
5. the RAT-GAN generator: one shared LSTM, stepped once per affine, drives all the affines, so each
   fusion depends on all earlier ones (recurrent affine transformation);
6. the RAT-GAN discriminator with its spatial-attention ("soft threshold") head;
7. the training step of both: hinge loss with mismatched text, the MA-GP inside the D step (DF-GAN'22)
   or as a second D step (RAT-GAN), then G against the updated D.

Everything follows the official codes (``tobran/DF-GAN`` CVPR'22 revision, ``senmaoy/RAT-GAN`` paper
revision) where they differ from the papers; the differences are marked "official" and listed in the
README. Parameters the official classes build but never use are not built here. The sentence comes from
chapter 3's frozen DAMSM text encoder. Official hyperparameters live in ``profiles.py``.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from t2igan.layers import torch_conv, torch_linear
from t2igan.training.gan import ConditionalGAN


def lrelu(x):
    return tf.nn.leaky_relu(x, 0.2)  # slope 0.2 everywhere (Keras' default is 0.3)


def tile(sentence, size):
    """The sentence (B, D) repeated over a size×size map: (B, size, size, D)."""
    return tf.tile(sentence[:, None, None, :], [1, size, size, 1])


def torch_view(x, channels):
    """A PyTorch ``view(B, C, 4, 4)`` of the fc output, as NHWC: a ported fc checkpoint maps 1:1."""
    return tf.transpose(tf.reshape(x, [-1, channels, 4, 4]), [0, 2, 3, 1])


def modulation_statistics(gamma, beta):
    """[mean γ, std γ, mean β, std β] over the batch and channels: how far the fusion is from identity."""
    gamma, beta = tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)
    return tf.stack([tf.reduce_mean(gamma), tf.math.reduce_std(gamma), tf.reduce_mean(beta), tf.math.reduce_std(beta)])


def log2_size(image_size, smallest=8):
    levels = int(round(math.log2(image_size)))
    if image_size < smallest or 2**levels != image_size:
        raise ValueError(f"image_size must be a power of two ≥ {smallest} (256 in the papers), not {image_size}.")
    return levels


def dfgan_widths(base_width, image_size):
    """Official ``get_G_in_out_chs``, widest first: nf·min(2^i, 8) for i < log2(size) − 1, reversed."""
    return [base_width * min(2**i, 8) for i in range(log2_size(image_size) - 1)][::-1]


# ---------------------------------------------------------------------------
# 1. Affine fusion (DF-GAN ``Affine``) and the generator block both models share
# ---------------------------------------------------------------------------
class Affine(layers.Layer):
    """x ↦ γ(c)·x + β(c) per channel, with γ and β each a 2-layer MLP of the condition c:
    Linear(condition_dim → hidden) → ReLU → Linear(hidden → channels).

    The second layers start at weight 0 with γ-bias 1 and β-bias 0, so every affine is the identity at
    init and the text's influence grows during training. DF-GAN'22: c = [z, s] (356-d), hidden =
    channels; RAT-GAN: c = the LSTM hidden state h_t (256-d), hidden = 256.
    """

    def __init__(self, channels, hidden, condition_dim, **kwargs):
        super().__init__(**kwargs)
        self.gamma_hidden = torch_linear(hidden, condition_dim)
        self.gamma_out = layers.Dense(channels, kernel_initializer="zeros", bias_initializer="ones")
        self.beta_hidden = torch_linear(hidden, condition_dim)
        self.beta_out = layers.Dense(channels, kernel_initializer="zeros", bias_initializer="zeros")

    def call(self, x, condition, return_modulation=False):
        # BEGIN TASK affine_fusion (Affine.call)
        condition = tf.cast(condition, x.dtype)
        gamma = self.gamma_out(tf.nn.relu(self.gamma_hidden(condition)))
        beta = self.beta_out(tf.nn.relu(self.beta_hidden(condition)))
        out = gamma[:, None, None, :] * x + beta[:, None, None, :]
        return (out, gamma, beta) if return_modulation else out
        # END TASK affine_fusion


class FusionBlock(layers.Layer):
    """The generator block of both models: out = shortcut(x) + g·residual(x), with

        residual: x ← LReLU(Affine_k(x, c_k)) for k = 1..4, conv3×3(in → out) after k = 2 and
                  conv3×3(out → out) after k = 4 — DF-GAN's DFBlock(in) → conv → DFBlock(out) → conv
                  with DFBlock = Affine → LReLU → Affine → LReLU;
        shortcut: conv1×1 (bias) when in ≠ out, else x.

    DF-GAN'22: all four affines see c = [z, s], hidden width = channels, and no gate (g ≡ 1, official).
    RAT-GAN: affine k sees the controller's k-th hidden state of this block, hidden width 256, and a
    scalar gate g = 0 at init, so the block starts as its shortcut. The up-sampling is the generator's.
    """

    def __init__(self, fin, fout, condition_dim, hidden=None, gated=False, **kwargs):
        super().__init__(**kwargs)
        self.affines = [Affine(c, hidden or c, condition_dim) for c in (fin, fin, fout, fout)]
        self.conv1 = torch_conv(fout, 3, 9 * fin)
        self.conv2 = torch_conv(fout, 3, 9 * fout)
        self.shortcut = torch_conv(fout, 1, fin) if fin != fout else None
        self.gate = self.add_weight(shape=(), initializer="zeros", name="gate") if gated else None

    def call(self, x, conditions):
        """``conditions``: one condition per affine (4). Returns (out, [modulation statistics per affine])."""
        # BEGIN TASK affine_fusion (FusionBlock.call)
        h, statistics = x, []
        for k, (affine, condition) in enumerate(zip(self.affines, conditions)):
            h, gamma, beta = affine(h, condition, return_modulation=True)
            h = lrelu(h)
            statistics.append(modulation_statistics(gamma, beta))
            if k == 1:
                h = self.conv1(h)
        residual = self.conv2(h)
        if self.gate is not None:
            residual = tf.cast(self.gate, x.dtype) * residual
        return (x if self.shortcut is None else self.shortcut(x)) + residual, statistics
        # END TASK affine_fusion


# ---------------------------------------------------------------------------
# 2. DF-GAN generator (``NetG``, ``G_Block``, ``DFBLK``)
# ---------------------------------------------------------------------------
class DfGanGenerator(keras.Model):
    """G(z, s) → image in [−1, 1].

    fc: Linear(z → 16·widths[0]) viewed as (C, 4, 4) like PyTorch, then NHWC (a ported checkpoint maps
    1:1); nearest ×2 up-sampling and a :class:`FusionBlock` per consecutive pair of widths; LReLU → conv3×3(→3)
    → tanh. The affines
    see c = [z, s] (noise first; ``condition_on_noise=False``: s only, the 2020 code's choice).
    At nf 32, 256 px: widths 256, 256, 256, 256, 128, 64, 32 and the official 9,744,131 parameters.
    """

    def __init__(self, noise_dim=100, sentence_dim=256, base_width=32, image_size=256, condition_on_noise=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.condition_on_noise = noise_dim, condition_on_noise
        self.widths = dfgan_widths(base_width, image_size)
        condition_dim = sentence_dim + (noise_dim if condition_on_noise else 0)
        self.fc = torch_linear(16 * self.widths[0], noise_dim)
        self.blocks = [FusionBlock(fin, fout, condition_dim) for fin, fout in zip(self.widths, self.widths[1:])]
        self.up = layers.UpSampling2D(2, interpolation="nearest")
        self.to_rgb = torch_conv(3, 3, 9 * self.widths[-1])

    def call(self, inputs, training=False, return_modulation=False):
        z, sentence = inputs
        z = tf.cast(z, self.compute_dtype)
        condition = tf.concat([z, tf.cast(sentence, z.dtype)], -1) if self.condition_on_noise else sentence
        x = torch_view(self.fc(z), self.widths[0])
        statistics = []
        for block in self.blocks:
            x, block_statistics = block(self.up(x), [condition] * 4)
            statistics += block_statistics
        images = tf.cast(tf.tanh(self.to_rgb(lrelu(x))), tf.float32)
        return (images, statistics) if return_modulation else images


# ---------------------------------------------------------------------------
# 3. DF-GAN discriminator (``NetD``, ``D_Block``, ``NetC``)
# ---------------------------------------------------------------------------
class DownBlock(layers.Layer):
    """out = avgpool2(shortcut(x)) + g·residual(x), scalar g = 0 at init.

    residual = conv4×4 s2 (no bias) → LReLU → conv3×3 (no bias) → LReLU; shortcut = conv1×1 (bias) when
    fin ≠ fout, else x. Official: the 1×1 conv is built even when fin == fout and then never used; it is
    left out here (65,792 parameters per such block at 256 channels).
    """

    def __init__(self, fin, fout, **kwargs):
        super().__init__(**kwargs)
        self.pad = layers.ZeroPadding2D(1)  # PyTorch's Conv2d(4, stride 2, padding 1) = pad 1 + 'valid'
        self.conv1 = torch_conv(fout, 4, 16 * fin, use_bias=False, strides=2, padding="valid")
        self.conv2 = torch_conv(fout, 3, 9 * fout, use_bias=False)
        self.shortcut = torch_conv(fout, 1, fin) if fin != fout else None
        self.pool = layers.AveragePooling2D(2)
        self.gate = self.add_weight(shape=(), initializer="zeros", name="gate")

    def call(self, x):
        residual = lrelu(self.conv2(lrelu(self.conv1(self.pad(x)))))
        shortcut = self.pool(x if self.shortcut is None else self.shortcut(x))
        return shortcut + tf.cast(self.gate, x.dtype) * residual


class SentenceHead(layers.Layer):
    """DF-GAN's conditional head ``NetC``: concat[features, tiled s] (image first) → conv3×3 (→ 2nf, no
    bias) → LReLU → conv4×4 'valid' (→ 1, no bias) on the 4×4 map → one logit per example."""

    def __init__(self, base_width, feature_width, sentence_dim=256, **kwargs):
        super().__init__(**kwargs)
        self.joint = torch_conv(2 * base_width, 3, 9 * (feature_width + sentence_dim), use_bias=False)
        self.out = torch_conv(1, 4, 16 * 2 * base_width, use_bias=False, padding="valid")

    def call(self, features, sentence):
        h = tf.concat([features, tile(tf.cast(sentence, features.dtype), features.shape[1])], -1)
        return tf.cast(tf.reshape(self.out(lrelu(self.joint(h))), [-1]), tf.float32)


class ResidualDiscriminator(keras.Model):
    """The interface both models' discriminators share: a trunk ``features(images)`` (stem conv, then
    ``blocks``), a conditional ``head`` reached through ``logits(features, s)``, and ``call([images, s])``
    → logits (B,). Keeping the trunk separate lets the mismatched pairs reuse the real images' features."""

    def features(self, images, training=False):
        x = self.stem(tf.cast(images, self.compute_dtype))
        for block in self.blocks:
            x = block(x)
        return x

    def logits(self, features, sentence, training=False):
        return self.head(features, sentence)

    def call(self, inputs, training=False):
        images, sentence = inputs
        return self.logits(self.features(images, training), sentence, training)


class DfGanDiscriminator(ResidualDiscriminator):
    """Trunk: conv3×3(3 → nf) then DownBlocks over nf·min(2^i, 8) → 4×4×8nf; head :class:`SentenceHead`.
    At nf 32, 256 px: trunk 6,421,830 (the official NetD builds 6,619,206), head 295,936, 6,717,766 in all."""

    def __init__(self, base_width=32, image_size=256, sentence_dim=256, **kwargs):
        super().__init__(**kwargs)
        widths = dfgan_widths(base_width, image_size)[::-1]  # narrowest first
        self.stem = torch_conv(base_width, 3, 27)
        self.blocks = [DownBlock(fin, fout) for fin, fout in zip(widths, widths[1:])]
        self.head = SentenceHead(base_width, widths[-1], sentence_dim)


# ---------------------------------------------------------------------------
# 4. The matching-aware gradient penalty (MA-GP)
# ---------------------------------------------------------------------------
def magp(gradient_images, gradient_sentence, weight=2.0, power=6.0):
    """Per example: weight·‖g‖^power with g = [flatten(∂D/∂x), ∂D/∂s] (one vector per sample).

    Official: the norm of the *concatenated* gradient, not ‖∇x‖ + ‖∇s‖ as the paper writes. Computed as
    (Σg²)^(power/2), without forming the norm (√ has an infinite derivative at 0), and in float32.
    """
    # BEGIN TASK magp (magp)
    batch = tf.shape(gradient_images)[0]
    squared = (tf.reduce_sum(tf.square(tf.reshape(tf.cast(gradient_images, tf.float32), [batch, -1])), -1)
               + tf.reduce_sum(tf.square(tf.reshape(tf.cast(gradient_sentence, tf.float32), [batch, -1])), -1))
    return weight * tf.pow(squared, power / 2.0)
    # END TASK magp


def matching_aware_penalty(discriminator, images, sentence, weight=2.0, power=6.0, return_features=False):
    """MA-GP of ``discriminator`` at the real, matching pairs (images, sentence).

    An inner tape watches the inputs; o = logits(features(images), sentence) and (∂Σo/∂x, ∂Σo/∂s) feed
    :func:`magp`. Call it under an outer tape on D's variables: that tape differentiates the gradient
    itself (double back-propagation). Returns (penalty (B,), o (B,)) [, features — to reuse them].
    """
    # BEGIN TASK magp (matching_aware_penalty)
    with tf.GradientTape() as tape:
        tape.watch([images, sentence])
        features = discriminator.features(images, training=True)
        logits = discriminator.logits(features, sentence, training=True)
        total = tf.reduce_sum(logits)  # inside the tape: an op outside it would not be recorded
    gradient_images, gradient_sentence = tape.gradient(total, [images, sentence])
    penalty = magp(gradient_images, gradient_sentence, weight, power)
    return (penalty, logits, features) if return_features else (penalty, logits)
    # END TASK magp


# ---------------------------------------------------------------------------
# 5. RAT-GAN generator (``NetG``, ``G_Block`` with the shared ``CustomLSTM``)
# ---------------------------------------------------------------------------
class RatGanGenerator(keras.Model):
    """G(z, s) → image in [−1, 1], with a recurrent controller for the affines.

    * Controller: one ``LSTMCell(256)`` shared by every block, initial state h0 = Linear(z), c0 = Linear(z),
      input = the sentence s at every step; initialised U(±1/16), one bias, gate order i, f, c, o (the
      official ``CustomLSTM``'s i, f, g, o). One step per affine: 4 per block, 28 per forward at 256 px;
      (h, c) is threaded explicitly and carries across blocks, so block k's fusion depends on all before it.
    * fc: Linear(z → 16·8nf) viewed as (8nf, 4, 4) → NHWC; block 0 at 4×4 (8nf → 8nf), then nearest ×2 +
      a gated :class:`FusionBlock` per level (widths 8nf, then DF-GAN's list); LReLU → conv3×3(→ 3) → tanh.
    Official: each block also builds two more affines and two feature projections that are never used
    (6,034,560 parameters at nf 64): not built here. At nf 64, 256 px: 32,057,098 (official built 38,091,658).
    """

    def __init__(self, noise_dim=100, sentence_dim=256, base_width=64, image_size=256, controller_units=256,
                 **kwargs):
        super().__init__(**kwargs)
        self.noise_dim = noise_dim
        self.widths = [8 * base_width] + dfgan_widths(base_width, image_size)
        init = keras.initializers.RandomUniform(-1.0 / 16, 1.0 / 16)
        self.controller = layers.LSTMCell(controller_units, unit_forget_bias=False, kernel_initializer=init,
                                          recurrent_initializer=init, bias_initializer=init)
        self.controller.build((None, sentence_dim))
        self.h0 = torch_linear(controller_units, noise_dim)
        self.c0 = torch_linear(controller_units, noise_dim)
        self.fc = torch_linear(16 * self.widths[0], noise_dim)
        self.blocks = [FusionBlock(fin, fout, controller_units, hidden=controller_units, gated=True)
                       for fin, fout in zip(self.widths, self.widths[1:])]
        self.up = layers.UpSampling2D(2, interpolation="nearest")
        self.to_rgb = torch_conv(3, 3, 9 * self.widths[-1])

    def call(self, inputs, training=False, return_modulation=False):
        z, sentence = inputs
        z = tf.cast(z, self.compute_dtype)
        sentence = tf.cast(sentence, z.dtype)
        x = torch_view(self.fc(z), self.widths[0])
        # BEGIN TASK rat_controller (RatGanGenerator.call)
        state = [self.h0(z), self.c0(z)]  # re-initialised from z at every forward
        statistics = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.up(x)
            hidden_states = []
            for _ in range(4):  # one controller step per affine of this block
                hidden, state = self.controller(sentence, state)
                hidden_states.append(hidden)
            x, block_statistics = block(x, hidden_states)
            statistics += block_statistics
        # END TASK rat_controller
        images = tf.cast(tf.tanh(self.to_rgb(lrelu(x))), tf.float32)
        return (images, statistics) if return_modulation else images


# ---------------------------------------------------------------------------
# 6. RAT-GAN discriminator (``NetD`` with ``D_GET_LOGITS_att``)
# ---------------------------------------------------------------------------
class AttentionHead(layers.Layer):
    """The paper-version head on the 8×8 trunk output f (official ``D_GET_LOGITS_att``):

        S8 = tile(s, 8);  p = sigmoid(conv1×1(LReLU(conv3×3([f, S8]))))         (B, 8, 8, 1)
        p ← softmax of p over the 64 positions
        h = DownBlock(f + 256 → f)([f, S8·p]) → 4×4;  logit = conv4×4(LReLU(conv3×3([h, tile(s, 4)])))

    The "soft threshold": the softmax acts on sigmoid outputs in (0, 1), so the weights can differ by
    at most a factor e — each lies in [1/(1 + 63e), e/(e + 63)] ≈ [0.0058, 0.0414] (uniform: 1/64). The
    attention is therefore very soft, and the weighted sentence map is about s/64 in magnitude.
    """

    def __init__(self, base_width, feature_width, sentence_dim=256, **kwargs):
        super().__init__(**kwargs)
        joint_width = feature_width + sentence_dim
        self.attention_joint = torch_conv(2 * base_width, 3, 9 * joint_width, use_bias=False)
        self.attention_out = torch_conv(1, 1, 2 * base_width, use_bias=False)
        self.block = DownBlock(joint_width, feature_width)
        self.head = SentenceHead(base_width, feature_width, sentence_dim)

    def attention(self, features, sentence):
        """Soft-threshold weights (B, 8, 8, 1), summing to 1 over the positions of each sample."""
        h = tf.concat([features, tile(sentence, features.shape[1])], -1)
        p = tf.sigmoid(self.attention_out(lrelu(self.attention_joint(h))))
        return tf.reshape(tf.nn.softmax(tf.reshape(p, [tf.shape(p)[0], -1]), -1), tf.shape(p))

    def call(self, features, sentence, return_attention=False):
        sentence = tf.cast(sentence, features.dtype)
        weights = self.attention(features, sentence)
        h = self.block(tf.concat([features, tile(sentence, features.shape[1]) * weights], -1))
        logits = self.head(h, sentence)
        return (logits, tf.cast(weights[..., 0], tf.float32)) if return_attention else logits


class RatGanDiscriminator(ResidualDiscriminator):
    """Trunk: conv3×3(3 → nf) then DownBlocks over nf·min(2^i, 16) down to 8×8 (8×8×16nf at 256 px).

    ``head="attention"`` (paper version, default): :class:`AttentionHead` on the 8×8 map. Official: a
    further block (block5) is built and never called: not built here. ``head="plain"`` (repository HEAD,
    attention disabled): one more DownBlock to 4×4 in the trunk, then DF-GAN's :class:`SentenceHead`.
    At nf 64, 256 px, attention head: 85,261,062 used parameters (head 34,671,745).
    """

    def __init__(self, base_width=64, image_size=256, sentence_dim=256, head="attention", **kwargs):
        super().__init__(**kwargs)
        if head not in ("attention", "plain"):
            raise ValueError(f"head must be 'attention' or 'plain', not {head!r}.")
        widths = [base_width * min(2**i, 16) for i in range(log2_size(image_size, 16) - 2)]  # … down to 8×8
        if head == "plain":
            widths.append(widths[-1])  # one more block: 4×4
        self.head_kind = head
        self.stem = torch_conv(base_width, 3, 27)
        self.blocks = [DownBlock(fin, fout) for fin, fout in zip(widths, widths[1:])]
        self.head = (AttentionHead if head == "attention" else SentenceHead)(base_width, widths[-1], sentence_dim)

    def logits(self, features, sentence, training=False, return_attention=False):
        if not return_attention:
            return self.head(features, sentence)
        if self.head_kind != "attention":
            raise ValueError("Only the attention head (head='attention') has an attention map.")
        return self.head(features, sentence, return_attention=True)


# ---------------------------------------------------------------------------
# 7. The one-stage training step (DF-GAN ``code/lib/modules.py``; RAT-GAN ``code/main.py``)
# ---------------------------------------------------------------------------
def discriminator_hinge_loss(real_logits, fake_logits, mismatch_logits, average=tf.reduce_mean):
    """D's hinge loss with mismatched text (DF-GAN Eq. 1 without the MA-GP):

        L_D = E[relu(1 − D(x, s))] + ½·(E[relu(1 + D(G(z, s), s))] + E[relu(1 + D(x', s))])

    ``real_logits`` D(x, s) of real, matching pairs (B,); ``fake_logits`` D(x̂, s) (B,); ``mismatch_logits``
    D(x', s) of real images with another example's caption (B or B − 1). ``average`` is the mean over the
    *global* batch (``ConditionalGAN.average`` under tf.distribute). Returns (L_D, (real, fake, mismatch)):
    the loss and the three per-example hinge terms.
    """
    # BEGIN TASK hinge_loss (discriminator_hinge_loss)
    real = tf.nn.relu(1.0 - real_logits)
    fake = tf.nn.relu(1.0 + fake_logits)
    mismatch = tf.nn.relu(1.0 + mismatch_logits)
    return average(real) + 0.5 * (average(fake) + average(mismatch)), (real, fake, mismatch)
    # END TASK hinge_loss


class OneStageGan(ConditionalGAN):
    """Hinge loss with mismatched text and the MA-GP, for a generator and a discriminator of this chapter.

        L_D = relu(1 − D(x, s)) + ½·[relu(1 + D(G(z, s), s)) + relu(1 + D(x', s))] + MA-GP
        L_G = −D(G(z, s), s)        (the same fake batch, scored by the updated D)

    * ``mismatch="roll"`` (DF-GAN'22): x' = the features rolled by one, image i+1 with caption i (B pairs);
      ``"shift"`` (RAT-GAN, DF-GAN'20): image i with caption i+1, the last dropped (B − 1 pairs per replica,
      so a replica needs at least 2 examples).
    * ``penalty_step="joint"`` (DF-GAN'22): the MA-GP joins L_D in one D step, from the same real forward;
      ``"separate"`` (RAT-GAN): one D step on the hinge terms, then a fresh forward of the updated D and a
      second D step on the MA-GP alone (Adam's moments move twice per iteration).
    The sentence comes from the frozen DAMSM text encoder; no EMA in either official code (``ema_decay``).
    """

    metric_groups = {"d_loss": "loss", "g_loss": "loss", "d_real": "hinge", "d_fake": "hinge", "d_mismatch": "hinge",
                     "gradient_penalty": "loss"}

    def __init__(self, generator, discriminator, text_encoder, mismatch="roll", penalty_step="joint",
                 penalty_weight=2.0, penalty_power=6.0, ema_decay=0.0, **kwargs):
        super().__init__(ema_decay=ema_decay, **kwargs)
        if mismatch not in ("roll", "shift") or penalty_step not in ("joint", "separate"):
            raise ValueError(f"mismatch must be 'roll'/'shift' and penalty_step 'joint'/'separate', "
                             f"not {mismatch!r}/{penalty_step!r}.")
        self.generator, self.discriminator, self.text_encoder = generator, discriminator, text_encoder
        text_encoder.trainable = False
        self.mismatch, self.penalty_step = mismatch, penalty_step
        self.penalty_args = (penalty_weight, penalty_power)
        self.track(*self.metric_groups)

    def encode_text(self, caption_ids, caption_length):
        """The frozen DAMSM sentence feature (inference mode, no gradient), float32 (B, 256)."""
        _, sentence = self.text_encoder([caption_ids, caption_length], training=False)
        return tf.stop_gradient(tf.cast(sentence, tf.float32))

    def mismatched_logits(self, real_features, sentence):
        """D(x', s) of real images paired with another example's caption, from the real images' trunk
        features (B, h, w, C): ``"roll"`` image i+1 with caption i (image 0 with the last caption),
        ``"shift"`` image i with caption i+1, the last dropped."""
        # BEGIN TASK hinge_loss (OneStageGan.mismatched_logits)
        if self.mismatch == "roll":
            return self.discriminator.logits(tf.roll(real_features, shift=-1, axis=0), sentence, training=True)
        return self.discriminator.logits(real_features[:-1], sentence[1:], training=True)
        # END TASK hinge_loss

    def discriminator_step(self, images, fake_images, sentence):
        d = self.discriminator
        with tf.GradientTape() as tape:
            if self.penalty_step == "joint":  # the MA-GP reuses this real forward
                penalty, real_logits, real_features = matching_aware_penalty(d, images, sentence, *self.penalty_args,
                                                                             return_features=True)
            else:
                real_features = d.features(images, training=True)
                real_logits = d.logits(real_features, sentence, training=True)
            mismatch_logits = self.mismatched_logits(real_features, sentence)
            fake_logits = d([fake_images, sentence], training=True)
            loss, (real, fake, mismatch) = discriminator_hinge_loss(real_logits, fake_logits, mismatch_logits,
                                                                    self.average)
            if self.penalty_step == "joint":
                loss += self.average(penalty)
        self.apply(self.discriminator_optimizer, tape, loss, d.trainable_variables)
        if self.penalty_step == "separate":  # a fresh forward of the updated D, a second step on the MA-GP
            with tf.GradientTape() as tape:
                penalty, _ = matching_aware_penalty(d, images, sentence, *self.penalty_args)
                penalty_loss = self.average(penalty)
            self.apply(self.discriminator_optimizer, tape, penalty_loss, d.trainable_variables)
        real, fake, mismatch, penalty = (tf.reduce_mean(t) for t in (real, fake, mismatch, penalty))
        return dict(d_loss=real + 0.5 * (fake + mismatch) + penalty, d_real=real, d_fake=fake, d_mismatch=mismatch,
                    gradient_penalty=penalty)

    def generator_loss(self, fake, sentence, batch):
        """DF-GAN's hinge generator loss per example, −D(x̂, s) (paper Eq. 2); returns (loss (B,), logs)."""
        # BEGIN TASK hinge_loss (OneStageGan.generator_loss)
        return -self.discriminator([fake, sentence], training=True), {}
        # END TASK hinge_loss

    def train_step(self, batch):
        images = tf.cast(batch["image"], tf.float32)
        sentence = self.encode_text(batch["caption_ids"], batch["caption_length"])
        z = tf.cast(batch["noise"][:, 0], tf.float32)  # drawn per replica by the data pipeline
        with tf.GradientTape() as g_tape:
            fake = self.generator([z, sentence], training=True)
            with g_tape.stop_recording():  # the D step(s) on the detached fake batch
                terms = self.discriminator_step(images, tf.stop_gradient(fake), sentence)
            g_per_example, g_logs = self.generator_loss(fake, sentence, batch)
            g_loss = self.average(g_per_example)
        self.apply(self.generator_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(g_loss=tf.reduce_mean(g_per_example), **terms, **g_logs)

    def generate(self, noise, caption_ids, caption_length, return_modulation=False):
        """Images (B, H, W, 3) from noise (B, noise_dim) with the sampling generator (EMA when enabled);
        with ``return_modulation`` also the per-affine [mean γ, std γ, mean β, std β] statistics."""
        sentence = self.encode_text(caption_ids, caption_length)
        z = tf.convert_to_tensor(noise, tf.float32)
        return self.sampling_generator([z, sentence], training=False, return_modulation=return_modulation)

    def discriminator_attention(self, images, caption_ids, caption_length):
        """The attention head's soft-threshold maps (B, 8, 8) for (images, captions)."""
        if getattr(self.discriminator, "head_kind", None) != "attention":
            raise ValueError("discriminator_attention needs a RatGanDiscriminator with head='attention'.")
        sentence = self.encode_text(caption_ids, caption_length)
        features = self.discriminator.features(tf.cast(images, tf.float32), training=False)
        return self.discriminator.logits(features, sentence, training=False, return_attention=True)[1]
