"""Chapter 3 — AttnGAN (Xu et al., CVPR 2018) and its DAMSM text/image encoders.

Read top to bottom beside the paper and the README:

1–3. DAMSM, in ``damsm.py`` beside this file (chapters 4 and 5 import it) and imported here: the text
   encoder (a bidirectional LSTM: a feature e_t per word and a sentence feature ē, paper §3.3), the image encoder
   (Inception-v3 regions v_r and a global code v̄) and the losses (words attend to image regions, R(Q, D)
   scores caption–image pairs, a cross-entropy over the batch matches images and captions, Eq. 7–13);
4. the attentional generator: StackGAN++'s tree where stages 2 and 3 attend to the words
   (Eq. 1–2, ``GlobalAttentionGeneral``) instead of re-reading the sentence;
5. one discriminator per stage (StackGAN++'s, conditioned on the raw sentence feature) and the
   AttnGAN loss with a mismatched pair (``code/miscc/losses.py``);
6. the AttnGAN training step: Ds, then G with L_G = L_adv + λ·L_DAMSM + KL;
7. DAMSM pretraining (``code/pretrain_DAMSM.py``, ``damsm.py`` section 4), which must run before 6.

Everything follows the official code ``taoxugit/AttnGAN`` where it differs from the paper; the
differences are marked "official" and listed in the README. Blocks shared with chapter 2 come from
chapter 2's ``stages.py``. Official hyperparameters live in ``profiles.py`` (profile ``paper``).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from chapters.ch3_attngan.damsm import (DamsmImageEncoder, DamsmPretrainer, DamsmTextEncoder, PyTorchLstmCell,  # noqa: F401 (sections 1–3)
                          SmallBackbone, caption_to_image_top1, cosine, matching_cross_entropy,
                          sentence_loss, word_attention, words_loss)
from t2igan.layers import bce_with_logits
from chapters.ch2_stackgan.stages import (ConditioningAugmentation, ResidualBlock, UpBlock, batch_norm,
                           conv3x3, glu, kl_loss, orthogonal)

from chapters.ch2_stackgan import model as stackgan  # chapter 2: stage sizes, real images per stage
NEGATIVE_INFINITY = float("-inf")


# ---------------------------------------------------------------------------
# 1–3. DAMSM: the text encoder, the image encoder and their matching losses
# ---------------------------------------------------------------------------
# They have their own file, ``damsm.py``, because chapters 4 and 5 import them too. Read its sections 1–3
# now: it is this chapter's lesson as much as the rest of this file; the names
# are imported above, so ``model.words_loss`` etc. work as if they were written here.


# ---------------------------------------------------------------------------
# 4. The attentional generator (``G_NET``, ``NEXT_STAGE_G``, ``GlobalAttentionGeneral``)
# ---------------------------------------------------------------------------
class WordAttention(layers.Layer):
    """Attention of image features h (B, H, W, C) to the words (paper Eq. 1–2).

    e'_t = W e_t (1×1 conv = bias-free linear, D → C); for each pixel q, β_q = softmax over the real
    words of h_qᵀ e'_t (no temperature); context c_q = Σ_t β_qt e'_t. Returns (context (B, H, W, C),
    attention maps (B, T, H, W)). ``word_mask`` (B, T) is True for real words.

    ``faithful_mask_bug=True`` reproduces the official misalignment (sheet §7 #9, upstream issue #93):
    the (B, T) mask is tiled so that pixel q of sample b gets the mask of sample (b·H·W + q) mod B.
    Released AttnGAN checkpoints were trained with it; correct per-sample masking is the default.
    """

    def __init__(self, channels, faithful_mask_bug=False, **kwargs):
        super().__init__(**kwargs)
        self.faithful_mask_bug = faithful_mask_bug
        self.project = layers.Dense(channels, use_bias=False, kernel_initializer=orthogonal())

    def call(self, h, words, word_mask):
        batch, height, width = tf.shape(h)[0], tf.shape(h)[1], tf.shape(h)[2]
        pixels = height * width
        if self.faithful_mask_bug:
            source = (tf.range(batch)[:, None] * pixels + tf.range(pixels)[None, :]) % batch  # (B, HW)
            mask = tf.gather(word_mask, source)  # (B, HW, T): pixel q of b gets sample source[b, q]'s mask
        else:
            mask = word_mask[:, None, :]
        # BEGIN TASK word_attention (WordAttention.call)
        keys = self.project(tf.cast(words, h.dtype))  # (B, T, C)
        queries = tf.reshape(h, [batch, pixels, h.shape[-1]])
        scores = tf.matmul(queries, keys, transpose_b=True)  # (B, HW, T)
        attention = tf.nn.softmax(tf.where(mask, scores, tf.cast(NEGATIVE_INFINITY, scores.dtype)), axis=-1)
        context = tf.reshape(tf.matmul(attention, keys), tf.shape(h))
        maps = tf.reshape(tf.transpose(attention, [0, 2, 1]), [batch, -1, height, width])
        return context, maps
        # END TASK word_attention


GlobalAttentionGeneral = WordAttention  # the official name


def upsamplings(size):
    levels = int(round(math.log2(size / 4)))
    if size < 8 or 4 * 2**levels != size:
        raise ValueError(f"base_size must be a power of two ≥ 8 (64 in the paper), not {size}.")
    return levels


class AttnGanGenerator(keras.Model):
    """G(z, ē, e, mask) → images per stage, attention maps per attention stage, μ, log σ².

    * CA: ē (256) → Linear → GLU → μ, log σ² (each ``condition_dim``); c = μ + σ·ε.
    * Stage 1 (StackGAN++'s): [c, z] → Linear (no bias) → BN → GLU → 4×4×16·ngf → up-blocks → h₁ (ngf).
    * Stage k > 1: context = attention(h, words); [h, context] (h first) → R residual blocks (2·ngf)
      → up-block (→ ngf, twice the size). Official: the CA code c is *not* used after stage 1; the
      later stages see the text only through the words.
    * Each h_k → 3×3 conv → tanh: that stage's image.

    At ngf 32, R 2, 3 stages of 64/128/256 px this has the official 7,084,592 parameters (13,811,456 at
    ngf 48, R 3). Smaller ``base_size``: 16·ngf becomes ngf·base_size/4, so h₁ is ngf wide at any size.
    """

    def __init__(self, noise_dim=100, condition_dim=100, base_width=32, stages=3, base_size=64, residual_blocks=2,
                 faithful_mask_bug=False, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.condition_dim = noise_dim, condition_dim
        self.sizes = stackgan.stage_sizes(base_size, stages)
        ups = upsamplings(base_size)
        self.start_width = base_width * 2**ups  # 16·ngf = 512 at 64 px, ngf 32
        self.ca = ConditioningAugmentation(condition_dim, "v2")
        self.fc = layers.Dense(self.start_width * 16 * 2, use_bias=False, kernel_initializer=orthogonal())
        self.fc_norm = batch_norm()
        self.first_ups = [UpBlock(self.start_width // 2 ** (i + 1)) for i in range(ups)]  # … → ngf
        self.attentions = [WordAttention(base_width, faithful_mask_bug) for _ in range(1, stages)]
        self.residuals = [[ResidualBlock(2 * base_width) for _ in range(residual_blocks)] for _ in range(1, stages)]
        self.next_ups = [UpBlock(base_width) for _ in range(1, stages)]
        self.to_images = [conv3x3(3) for _ in range(stages)]

    def call(self, inputs, training=False):
        """``inputs = [z, sentence, words, word_mask]`` or ``[…, ε]`` (ε: the CA noise; drawn when absent)."""
        noise, sentence, words, word_mask = inputs[:4]
        c, mu, logvar = self.ca(sentence, noise=inputs[4] if len(inputs) > 4 else None)
        h = tf.concat([c, tf.cast(noise, c.dtype)], axis=-1)  # [c, z], c first
        h = tf.reshape(glu(self.fc_norm(self.fc(h), training=training)), [-1, 4, 4, self.start_width])
        for up in self.first_ups:
            h = up(h, training=training)
        features, attention_maps = [h], []
        # BEGIN TASK attention_stage (AttnGanGenerator.call)
        for attention, residuals, up in zip(self.attentions, self.residuals, self.next_ups):
            context, maps = attention(h, words, tf.cast(word_mask, tf.bool))
            h = tf.concat([h, context], axis=-1)  # [h, context], h first
            for block in residuals:
                h = block(h, training=training)
            h = up(h, training=training)
            features.append(h)
            attention_maps.append(tf.cast(maps, tf.float32))
        # END TASK attention_stage
        images = [tf.cast(tf.tanh(head(f)), tf.float32) for head, f in zip(self.to_images, features)]
        return images, attention_maps, mu, logvar


# ---------------------------------------------------------------------------
# 5. Discriminators (``D_NET64/128/256``) and the AttnGAN D loss
# ---------------------------------------------------------------------------
def Discriminators(sizes, base_width=64, condition_dim=256):  # noqa: N802 (builds a model, named like one)
    """Chapter 2's per-stage discriminators, conditioned on the raw sentence feature ē (not on μ), with
    [image code, ē] in that order (``text_first=False``). One optimizer over all (Adam is per-variable,
    so it equals the official one Adam per D). ndf 64: 6,313,730 / 19,424,002 / 71,858,946 parameters."""
    return stackgan.Discriminators(sizes, base_width, condition_dim, text_first=False)


def discriminator_loss(real_conditional, real_unconditional, fake_conditional, fake_unconditional,
                       wrong_conditional, unconditional=True):
    """Official ``discriminator_loss`` per example, from the logits of one stage:
        L_D = (BCE(Du(x), 1) + BCE(Dc(x, ē), 1))/2 + (BCE(Du(x̂), 0) + BCE(Dc(x̂, ē), 0) + BCE(Dc(x, ē'), 0))/3
    with ē' a mismatched caption; without the unconditional head
        L_D = BCE(Dc(x, ē), 1) + (BCE(Dc(x̂, ē), 0) + BCE(Dc(x, ē'), 0))/2.
    """
    real, fake = bce_with_logits(real_conditional, 1.0), bce_with_logits(fake_conditional, 0.0)
    wrong = bce_with_logits(wrong_conditional, 0.0)
    if not unconditional:
        return real + 0.5 * (fake + wrong)
    return (0.5 * (bce_with_logits(real_unconditional, 1.0) + real)
            + (bce_with_logits(fake_unconditional, 0.0) + fake + wrong) / 3.0)


# ---------------------------------------------------------------------------
# 6. The AttnGAN training step (``code/trainer.py``)
# ---------------------------------------------------------------------------
class AttnGan(stackgan.StackGanPlusPlus):
    """Chapter 2's StackGAN++ training step with AttnGAN's losses: one G forward per batch; every D
    updated on it (``update_discriminators``), then G (``adversarial_generator_loss`` + DAMSM + KL).

        L_G = Σ_i [BCE(Dc(x̂_i, ē), 1) + BCE(Du(x̂_i), 1)] + λ·(w0 + w1 + s0 + s1) + λ_KL·KL(μ, σ)
    The Ds are conditioned on the sentence feature ē (not on μ). The DAMSM terms use only the last
    stage's image, through the frozen image encoder (gradients flow into G). The text and image
    encoders are pretrained (section 7) and never updated here.
    """

    def __init__(self, generator, discriminator, text_encoder, image_encoder, damsm_weight=5.0, kl_weight=1.0,
                 unconditional=True, gamma1=4.0, gamma2=5.0, gamma3=10.0, ema_decay=0.999, **kwargs):
        super().__init__(generator, discriminator, kl_weight=kl_weight, uncond_weight=1.0 if unconditional else 0.0,
                         colour_weight=0.0, ema_decay=ema_decay,
                         extra_groups={"damsm": "loss", "damsm_words": "loss", "damsm_sentence": "loss"}, **kwargs)
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        text_encoder.trainable = False
        image_encoder.trainable = False
        self.damsm_weight, self.unconditional = damsm_weight, unconditional
        self.gammas = (gamma1, gamma2, gamma3)

    def encode_text(self, caption_ids, caption_length):
        """Frozen DAMSM text encoder (inference mode): words (B, T, D), sentence (B, D), word mask (B, T)."""
        words, sentence = self.text_encoder([caption_ids, caption_length], training=False)
        mask = tf.sequence_mask(caption_length, tf.shape(caption_ids)[1])
        return tf.stop_gradient(words), tf.stop_gradient(sentence), mask

    def stage_discriminator_loss(self, d, real, fake, sentence):
        """Two trunk passes (real, fake; separate BN batches, as official); the mismatched pair reuses the
        real code with the sentence rolled by one: image i with caption i+1 (mod B, within the replica's
        batch). Official: image i with caption i+1 for i < B−1 (B−1 pairs, no class check)."""
        real_code, fake_code = d.image_code(real, training=True), d.image_code(fake, training=True)
        real_c = d.conditional(real_code, sentence, True)
        fake_c = d.conditional(fake_code, sentence, True)
        wrong_c = d.conditional(real_code, tf.roll(sentence, shift=-1, axis=0), True)
        per_example = discriminator_loss(real_c, d.unconditional(real_code), fake_c,
                                         d.unconditional(fake_code), wrong_c, self.unconditional)
        return per_example, tf.sigmoid(real_c), tf.sigmoid(wrong_c), tf.sigmoid(fake_c)

    def damsm_loss(self, image, words, sentence, lengths, class_ids):
        """(w0 + w1, s0 + s1) per example for generated images against their captions."""
        gamma1, gamma2, gamma3 = self.gammas
        regions, global_features = self.image_encoder(image, training=False)
        w0, w1 = words_loss(regions, words, lengths, class_ids, gamma1, gamma2, gamma3)
        s0, s1 = sentence_loss(global_features, sentence, class_ids, gamma3)
        return w0 + w1, s0 + s1

    def generator_loss(self, fakes, mu, logvar, words, sentence, batch, logs):
        """L_G per example (paper Eq. 3, 7): every stage's adversarial term against the updated Ds (``logs``
        collects them), λ·L_DAMSM of the last stage's images and the CA's KL term. Returns (L_G, its terms)."""
        g_total = self.adversarial_generator_loss(fakes, sentence, logs)
        damsm_words, damsm_sentence = self.damsm_loss(fakes[-1], words, sentence, batch["caption_length"],
                                                      batch["class_id"])
        kl = kl_loss(mu, logvar)
        g_total += self.damsm_weight * (damsm_words + damsm_sentence) + self.kl_weight * kl
        return g_total, dict(kl=kl, damsm=damsm_words + damsm_sentence, damsm_words=damsm_words,
                             damsm_sentence=damsm_sentence)

    def train_step(self, batch):
        lengths = batch["caption_length"]
        words, sentence, word_mask = self.encode_text(batch["caption_ids"], lengths)
        z, epsilon = self.split_noise(batch["noise"][:, 0])
        reals = stackgan.resize_to_stages(batch["image"], self.sizes)
        logs = {}
        with tf.GradientTape() as g_tape:
            fakes, _, mu, logvar = self.generator([z, sentence, words, word_mask, epsilon], training=True)
            # ---- every stage's D on the same generated batch (images detached)
            d_total = self.update_discriminators(lambda i, d: self.stage_discriminator_loss(
                d, reals[i], tf.stop_gradient(fakes[i]), sentence), logs)
            # ---- G against the updated Ds, plus DAMSM on the last stage and KL
            g_total, terms = self.generator_loss(fakes, mu, logvar, words, sentence, batch, logs)
            g_loss = self.average(g_total)
        self.apply(self.generator_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(d_loss=d_total, g_loss=g_total, **terms, **logs)

    def generate(self, noise, caption_ids, caption_length, all_stages=False, return_attention=False):
        """Images from ``noise`` = [z, ε] rows; the largest stage unless ``all_stages``; with
        ``return_attention`` also the attention maps (B, T, H, W) of each attention stage."""
        z, epsilon = self.split_noise(tf.convert_to_tensor(noise, tf.float32))
        words, sentence, mask = self.encode_text(caption_ids, caption_length)
        images, maps, _, _ = self.sampling_generator([z, sentence, words, mask, epsilon], training=False)
        images = images if all_stages else images[-1]
        return (images, maps) if return_attention else images


# 7. DAMSM pretraining (``code/pretrain_DAMSM.py``): ``chapters.ch3_attngan.damsm`` section 4.
