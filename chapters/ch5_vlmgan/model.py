"""Chapter 5 — VLMGAN (Cheng, Wen, Gu, arXiv 2208.09596): vision-language matching for text-to-image GANs.

A **reconstruction**: no code of VLMGAN exists and the formulas come from a secondary source (a paper
walkthrough). Every choice the sources leave open is a row U1…U18 of the README's "paper says / we chose /
why" table (§6) and is cited as such below. Read top to bottom:

1. the VLM encoders: DAMSM's text and image encoders, a separate copy initialised from the chapter's DAMSM (U1–U4);
2. the three matching scores: local (words attend to regions), global (cosine), general (the Matching
   Score Block, a small Transformer over all image and text tokens, U5–U6);
3. VLM pretraining: DAMSM-style contrastive losses on S_local and S_global plus a matching BCE for the MSB (U7–U8);
4. the generator-side losses: text–visual L_VLM and visual–visual L_VVM on the generated image (U10–U11);
5. the plug-in: λ2·L_VLM + λ1·L_VVM added to chapter 3's AttnGAN and chapter 4's DF-GAN generator loss:
   each subclass overrides ``generator_loss`` and adds the VLM terms to ``super()``'s, the VLM frozen
   (U9, U12–U16);
6. the VLMS metric: the mean general score over (image, caption) pairs (U17).
"""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf
from keras import layers

from chapters.ch3_attngan.damsm import (DamsmImageEncoder, DamsmPretrainer, DamsmTextEncoder, caption_to_image_top1, cosine,
                          matching_cross_entropy, word_attention)
from chapters.ch3_attngan import model as attngan
from chapters.ch2_stackgan.model import antialiased_resize
from chapters.ch4_dfgan_ratgan import model as dfgan
from t2igan.layers import same_class
NEGATIVE_INFINITY = float("-inf")
LOCAL_FORMS = ("walkthrough", "damsm")


# ---------------------------------------------------------------------------
# 1. The VLM encoders (U1–U4): DAMSM's, as a separate copy
# ---------------------------------------------------------------------------
# Text: φ_t (B, T, 256) words and φ̄ (B, 256) sentence from the bi-LSTM. Image: ϕ_r = conv1×1(Mixed_6e =
# Keras ``mixed7``, 17×17×768) and ϕ̄ = W·avgpool(Mixed_7c = ``mixed10``) with frozen Inception (U3, U4), or
# DAMSM's small CNN on CPU profiles. The VLM is then trained with its own objectives (section 3), while the
# GAN keeps conditioning on the frozen DAMSM (U1).
def vlm_encoders_from_damsm(text_encoder, image_encoder):
    """Fresh (text, image) encoders with the configuration and the current weights of built DAMSM encoders."""
    if not text_encoder.weights or not image_encoder.weights:
        raise ValueError("Build (call once) or load the DAMSM encoders before copying them into the VLM.")
    text = DamsmTextEncoder(text_encoder.embedding.input_dim, text_encoder.embedding.output_dim,
                            text_encoder.feature_dim // 2, text_encoder.dropout.rate)
    small = image_encoder.kind == "small"
    widths = tuple(conv.filters for conv in image_encoder.backbone.convs) if small else (32, 64, 128, 256)
    image = DamsmImageEncoder(image_encoder.kind, image_encoder.project_regions.filters, weights=None,
                              input_size=image_encoder.input_size, widths=widths,
                              backbone_batch_statistics=image_encoder.batch_statistics,
                              align_corners=image_encoder.align_corners)
    text([tf.zeros((1, 2), tf.int32), tf.constant([2])])
    size = image_encoder.input_size or 32
    image(tf.zeros((1, size, size, 3)))
    text.set_weights(text_encoder.get_weights())
    image.set_weights(image_encoder.get_weights())  # the Inception backbone too: ImageNet weights without a file
    return text, image


def flatten_regions(regions):
    """(B, H, W, D) → (B, H·W, D), float32; (B, R, D) passes through."""
    regions = tf.cast(regions, tf.float32)
    if regions.shape.rank == 4:
        regions = tf.reshape(regions, [tf.shape(regions)[0], -1, regions.shape[-1]])
    return regions


def normalize(x):
    """x / max(‖x‖, 1e-8) along the last axis (the eps of ``damsm.cosine``); finite gradient at 0."""
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-16)


# ---------------------------------------------------------------------------
# 2. Matching scores (README §2, U5, U6)
# ---------------------------------------------------------------------------
def local_pairs(regions, words, word_mask, gamma1, gamma2, form):
    """S_local for regions (…, R, D), words (…, T, D), word_mask (…, T) with broadcastable leading dims.

    walkthrough: s(r, t) = cos(ϕ_r, φ_t); α_{t,r} = softmax over regions r of γ1·s(r, t); c_t = Σ_r α_{t,r} ϕ_r
    damsm:       c_t from chapter 3's attention (dot products normalised over words first; needs right padding)
    both:        R_t = cos(c_t, φ_t);  S_local = (1/γ2)·log Σ_{valid t} exp(γ2·R_t)   (AttnGAN Eq. 10 form)
    """
    # BEGIN TASK matching_scores (local_pairs)
    if form == "walkthrough":
        similarity = tf.matmul(normalize(regions), normalize(words), transpose_b=True)  # (…, R, T)
        attention = tf.nn.softmax(gamma1 * similarity, axis=-2)  # over the regions
        context = tf.matmul(attention, regions, transpose_a=True)  # (…, T, D)
    elif form == "damsm":
        context, _ = word_attention(words, regions, tf.reduce_sum(tf.cast(word_mask, tf.int32), -1), gamma1)
    else:
        raise ValueError(f"local form must be one of {LOCAL_FORMS}, not {form!r}.")
    relevance = cosine(context, words)  # (…, T)
    return tf.reduce_logsumexp(tf.where(word_mask, gamma2 * relevance, NEGATIVE_INFINITY), axis=-1) / gamma2
    # END TASK matching_scores


def local_score(regions, words, word_mask, gamma1=4.0, gamma2=5.0, form="walkthrough", pairwise=True):
    """(S_local matrix (B_img, B_cap) or None, matched S_local (B,)); ``pairwise=False`` skips the matrix."""
    # BEGIN TASK matching_scores (local_score)
    regions, words = flatten_regions(regions), tf.cast(words, tf.float32)
    word_mask = tf.cast(word_mask, tf.bool)
    if not pairwise:
        return None, local_pairs(regions, words, word_mask, gamma1, gamma2, form)
    matrix = local_pairs(regions[:, None], words[None], word_mask[None], gamma1, gamma2, form)  # image axis first
    return matrix, tf.linalg.diag_part(matrix)
    # END TASK matching_scores


def global_score(image_global, sentence, pairwise=True):
    """(S_global matrix (B_img, B_cap) or None, matched S_global (B,)): S_global = cos(ϕ̄, φ̄)."""
    # BEGIN TASK matching_scores (global_score)
    image_global, sentence = tf.cast(image_global, tf.float32), tf.cast(sentence, tf.float32)
    if not pairwise:
        return None, cosine(image_global, sentence)
    matrix = cosine(image_global[:, None], sentence[None])
    return matrix, tf.linalg.diag_part(matrix)
    # END TASK matching_scores


class EncoderLayer(layers.Layer):
    """Pre-LN Transformer encoder layer: x + Drop(MHA(LN(x))), then x + Drop(FFN(LN(x))), FFN = ReLU MLP
    (PyTorch ``TransformerEncoderLayer`` with ``norm_first=True``; LayerNorm eps 1e-5 as PyTorch)."""

    def __init__(self, width, heads, ffn, dropout, **kwargs):
        super().__init__(**kwargs)
        self.norm1, self.norm2 = layers.LayerNormalization(epsilon=1e-5), layers.LayerNormalization(epsilon=1e-5)
        self.attention = layers.MultiHeadAttention(heads, width // heads, dropout=dropout)
        self.ffn_in, self.ffn_out = layers.Dense(ffn, activation="relu"), layers.Dense(width)
        self.dropout = layers.Dropout(dropout)

    def call(self, x, attention_mask, training=False):
        h = self.norm1(x)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.dropout(h, training=training)
        h = self.ffn_out(self.dropout(self.ffn_in(self.norm2(x)), training=training))
        return x + self.dropout(h, training=training)


class MatchingScoreBlock(keras.Model):
    """S_general = F_MSB(ϕ, ϕ̄, φ, φ̄) (U6): ψ = [ϕ̄, ϕ_1..ϕ_R, φ̄, φ_1..φ_T] + type embedding (4 modalities)
    + position embedding (regions, words; the two global tokens have none) → N pre-LN encoder layers with a
    key-padding mask → final LN → Dense(width → 1) per token → masked mean over tokens → sigmoid.

    The tokens are the encoders' features themselves, so ``width`` must equal their dimension (no input
    projection, as U6 counts). ``call`` → score (B,), and with ``return_pooled`` the masked mean of the
    final token features (B, width), which L_VGEN compares. ``logits`` gives the pre-sigmoid score.
    """

    def __init__(self, regions, words, width=256, depth=2, heads=4, ffn=1024, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"MSB width {width} must be divisible by the number of heads {heads}.")
        self.width, self.regions, self.words = width, regions, words
        init = keras.initializers.RandomNormal(stddev=0.02)  # BERT-style embeddings
        self.type_embedding = self.add_weight(shape=(4, width), initializer=init, name="type_embedding")
        self.region_positions = self.add_weight(shape=(regions, width), initializer=init, name="region_positions")
        self.word_positions = self.add_weight(shape=(words, width), initializer=init, name="word_positions")
        self.blocks = [EncoderLayer(width, heads, ffn, dropout) for _ in range(depth)]
        self.final_norm = layers.LayerNormalization(epsilon=1e-5)  # pre-LN stacks end with one
        self.to_logit = layers.Dense(1)

    def encode(self, inputs, training=False):
        """``inputs`` = [regions (B, R, D) or (B, H, W, D), image global (B, D), words (B, T, D), sentence (B, D),
        word mask (B, T)] → (final token features (B, 2 + R + T, width), token validity (B, 2 + R + T))."""
        regions, image_global, words, sentence, word_mask = inputs
        regions = flatten_regions(regions)
        if regions.shape[1] not in (None, self.regions) or {regions.shape[-1], words.shape[-1]} != {self.width}:
            raise ValueError(f"The MSB was built for {self.regions} regions of width {self.width}; got regions "
                             f"{tuple(regions.shape)} and words {tuple(words.shape)}.")
        dtype = self.compute_dtype  # float16 under mixed precision; the scores come back as float32
        types, region_positions, word_positions = (tf.cast(embedding, dtype) for embedding in (
            self.type_embedding, self.region_positions, self.word_positions[: tf.shape(words)[1]]))
        tokens = tf.concat([tf.cast(image_global, dtype)[:, None] + types[0],  # type 0: image global
                            tf.cast(regions, dtype) + types[1] + region_positions,  # 1: regions
                            tf.cast(sentence, dtype)[:, None] + types[2],  # 2: sentence
                            tf.cast(words, dtype) + types[3] + word_positions], axis=1)  # 3: words
        batch = tf.shape(tokens)[0]
        valid = tf.concat([tf.ones([batch, self.regions + 2], tf.bool), tf.cast(word_mask, tf.bool)], axis=1)
        mask = tf.broadcast_to(valid[:, None, :], [batch, tf.shape(valid)[1], tf.shape(valid)[1]])  # keys only
        x = tokens
        for block in self.blocks:
            x = block(x, mask, training=training)
        return tf.cast(self.final_norm(x), tf.float32), valid

    def logits(self, inputs, training=False):
        """(pre-sigmoid score (B,), pooled features (B, width)): masked means over the valid tokens."""
        x, valid = self.encode(inputs, training)
        weights = tf.cast(valid, tf.float32)
        count = tf.reduce_sum(weights, axis=1)
        per_token = tf.cast(self.to_logit(x)[..., 0], tf.float32)  # W0·ψ̂ + b0 per token
        logit = tf.reduce_sum(per_token * weights, axis=1) / count
        return logit, tf.reduce_sum(x * weights[..., None], axis=1) / count[:, None]

    def call(self, inputs, training=False, return_pooled=False):
        logit, pooled = self.logits(inputs, training)
        return (tf.sigmoid(logit), pooled) if return_pooled else tf.sigmoid(logit)


def msb_parameter_count(width=256, depth=2, ffn=1024, regions=289, words=18):
    """By arithmetic (heads do not change it: Q, K, V, O are each width × width + width in all):
    embeddings (4 + R + T)·w; per layer 2 LNs (2·2w) + attention 4(w² + w) + FFN (w·f + f + f·w + w);
    final LN 2w; Dense(w → 1) w + 1. At 256/2/1024/289/18: 79,616 + 2 × 789,760 + 512 + 257 = 1,659,905 (U6)."""
    per_layer = 2 * 2 * width + 4 * (width * width + width) + (width * ffn + ffn) + (ffn * width + width)
    return (4 + regions + words) * width + depth * per_layer + 2 * width + width + 1


# ---------------------------------------------------------------------------
# 3. VLM pretraining (U7, U8)
# ---------------------------------------------------------------------------
def contrastive_losses(local_matrix, global_matrix, class_ids, gamma3=10.0):
    """DAMSM's batch cross-entropy in both directions, same-class pairs masked, on γ3·S: (L_local, L_global) (B,).
    With the 1/γ2 of S_local the logit scale is γ3 = 10, not the official DAMSM code's γ2·γ3 = 50."""
    # BEGIN TASK vlm_loss (contrastive_losses)
    local0, local1 = matching_cross_entropy(gamma3 * local_matrix, class_ids)
    global0, global1 = matching_cross_entropy(gamma3 * global_matrix, class_ids)
    return local0 + local1, global0 + global1
    # END TASK vlm_loss


def negative_captions(global_matrix, class_ids, hard=False):
    """For each image, the index of a caption of a different-class example in the batch (any other example
    when the batch holds one class): drawn uniformly, or with ``hard`` the one of highest S_global (U7)."""
    batch = tf.shape(global_matrix)[0]
    other = ~tf.eye(batch, dtype=tf.bool)
    allowed = other if class_ids is None else other & ~same_class(class_ids)
    allowed = tf.where(tf.reduce_any(allowed, axis=1, keepdims=True), allowed, other)
    if hard:
        return tf.argmax(tf.where(allowed, tf.stop_gradient(global_matrix), NEGATIVE_INFINITY), 1, tf.int32)
    return tf.random.categorical(tf.where(allowed, 0.0, NEGATIVE_INFINITY), 1, dtype=tf.int32)[:, 0]


class VlmPretrainer(DamsmPretrainer):
    """Trains the VLM text encoder, the image projections and the MSB on L = L_local + L_global + L_general:
    DAMSM-style contrastive losses on S_local and S_global (γ3, same-class masking) and
    L_general = ½·[BCE(MSB(I_i, T_i), 1) + BCE(MSB(I_i, T_neg(i)), 0)] (1:1 positives and negatives).

    As DAMSM: text-encoder gradients clipped to global norm 0.25, compile with ``optimizer=Adam(2e-3, 0.5)``,
    :meth:`reset_optimizer_state` per epoch. ``freeze_backbone`` (default) also freezes DAMSM's small CPU
    backbone, already trained by DAMSM pretraining, so that only the projections train on either backbone (U4).
    Metrics: losses, caption → image top-1 retrieval by S_global, MSB accuracy at 0.5 and mean MSB scores.
    """

    loss_keys = ("local_loss", "global_loss", "general_loss")  # DamsmPretrainer's train_step sums these

    def __init__(self, text_encoder, image_encoder, msb, gamma1=4.0, gamma2=5.0, gamma3=10.0, local_form="walkthrough",
                 gradient_clip=0.25, clip_embedding=True, hard_negatives=False, freeze_backbone=True, **kwargs):
        super().__init__(text_encoder, image_encoder, gamma1, gamma2, gamma3, gradient_clip, clip_embedding, **kwargs)
        if local_form not in LOCAL_FORMS:
            raise ValueError(f"local_form must be one of {LOCAL_FORMS}, not {local_form!r}.")
        self.msb, self.local_form, self.hard_negatives = msb, local_form, hard_negatives
        if freeze_backbone and image_encoder.kind == "small":
            image_encoder.backbone.trainable = False  # (Inception is frozen by DamsmImageEncoder itself)
        names = ("loss", "local_loss", "global_loss", "general_loss", "retrieval_top1", "msb_accuracy",
                 "msb_positive", "msb_negative")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def loss_terms(self, batch, training):
        gamma1, gamma2, gamma3 = self.gammas
        lengths, class_ids = batch["caption_length"], batch["class_id"]
        words, sentence = self.text_encoder([batch["caption_ids"], lengths], training=training)
        mask = tf.sequence_mask(lengths, tf.shape(words)[1])
        regions, image_global = self.image_encoder(batch["image"], training=training)
        regions = flatten_regions(regions)
        local_matrix, _ = local_score(regions, words, mask, gamma1, gamma2, self.local_form)
        global_matrix, _ = global_score(image_global, sentence)
        local, global_ = contrastive_losses(local_matrix, global_matrix, class_ids, gamma3)
        negative = negative_captions(global_matrix, class_ids, self.hard_negatives)
        positive_logit, _ = self.msb.logits([regions, image_global, words, sentence, mask], training=training)
        negative_text = [tf.gather(x, negative) for x in (words, sentence, mask)]
        negative_logit, _ = self.msb.logits([regions, image_global, *negative_text], training=training)
        general = 0.5 * (tf.nn.softplus(-positive_logit) + tf.nn.softplus(negative_logit))  # BCE(·, 1), BCE(·, 0)
        correct = tf.cast(positive_logit > 0, tf.float32) + tf.cast(negative_logit <= 0, tf.float32)
        return dict(local_loss=local, global_loss=global_, general_loss=general,
                    retrieval_top1=caption_to_image_top1(image_global, sentence), msb_accuracy=0.5 * correct,
                    msb_positive=tf.sigmoid(positive_logit), msb_negative=tf.sigmoid(negative_logit))


# ---------------------------------------------------------------------------
# 4. Generator-side losses (U10, U11), per example (B,)
# ---------------------------------------------------------------------------
def vlm_loss(regions, image_global, general_logit, words, sentence, word_mask, class_ids=None, gamma1=4.0,
             gamma2=5.0, gamma3=10.0, local_form="walkthrough"):
    """Text–visual L_VLM = L_local + L_global + L_general of generated images against the batch captions:
    the pretraining contrastive losses (AttnGAN's DAMSM-term pattern) and L_general = −log S_general(x̂, T)
    (= softplus(−logit) from the MSB's ``logits``). Returns (L_VLM, {local, global, general}, matched scores)."""
    # BEGIN TASK vlm_loss (vlm_loss)
    local_matrix, local_matched = local_score(regions, words, word_mask, gamma1, gamma2, local_form)
    global_matrix, global_matched = global_score(image_global, sentence)
    local_loss, global_loss = contrastive_losses(local_matrix, global_matrix, class_ids, gamma3)
    general = tf.nn.softplus(-tf.cast(general_logit, tf.float32))
    scores = {"local": local_matched, "global": global_matched, "general": tf.sigmoid(general_logit)}
    return local_loss + global_loss + general, {"local": local_loss, "global": global_loss, "general": general}, scores
    # END TASK vlm_loss


def vvm_loss(fake_regions, fake_global, real_regions, real_global, fake_pooled, real_pooled, gamma1=4.0):
    """Visual–visual L_VVM = L_VG + L_VL + L_VGEN between the generated image x̂ and the real x (real side
    stop-gradient):  L_VG = 1 − cos(ϕ̄(x̂), ϕ̄(x));  L_VL = 1 − mean_r cos(ϕ_r(x), c_r) with c_r = Σ_k
    softmax_k(γ1·cos(ϕ_r(x), ϕ_k(x̂)))·ϕ_k(x̂) (pose-tolerant, not position-wise);  L_VGEN = mean_d of the
    squared difference of the MSB's pooled features for (x̂, T) and (x, T). Returns (L_VVM, components)."""
    # BEGIN TASK vvm_loss (vvm_loss)
    fake_regions, real_regions = flatten_regions(fake_regions), tf.stop_gradient(flatten_regions(real_regions))
    real_global = tf.stop_gradient(tf.cast(real_global, tf.float32))
    visual_global = 1.0 - cosine(tf.cast(fake_global, tf.float32), real_global)
    similarity = tf.matmul(normalize(real_regions), normalize(fake_regions), transpose_b=True)  # (B, R_real, R_fake)
    context = tf.matmul(tf.nn.softmax(gamma1 * similarity, axis=-1), fake_regions)  # (B, R_real, D)
    visual_local = 1.0 - tf.reduce_mean(cosine(real_regions, context), axis=-1)
    difference = tf.cast(fake_pooled, tf.float32) - tf.stop_gradient(tf.cast(real_pooled, tf.float32))
    visual_general = tf.reduce_mean(tf.square(difference), axis=-1)
    return (visual_global + visual_local + visual_general,
            {"global": visual_global, "local": visual_local, "general": visual_general})
    # END TASK vvm_loss


# ---------------------------------------------------------------------------
# 5. The plug-in (U9, U12–U16): L_G += λ2·L_VLM + λ1·L_VVM on the final image
# ---------------------------------------------------------------------------
# Chapters 3 and 4 compute L_G per example in ``generator_loss`` inside their generator tape; the classes
# below override it, add ``VlmTerms.vlm_terms`` of the final image and call ``super()``. Metric name →
# TensorBoard group (``vlm_local`` is logged as ``vlm/vlm_local``):
VLM_GROUPS = {"vlm": "loss", "vvm": "loss", "vlm_local": "vlm", "vlm_global": "vlm", "vlm_general": "vlm",
            "vvm_global": "vvm", "vvm_local": "vvm", "vvm_general": "vvm",
            **{f"scores_{level}_{side}": "scores" for level in ("local", "global", "general") for side in ("fake", "real")}}


class VlmTerms:
    """Mixin for a chapter-3/4 GAN: the frozen VLM (eval mode; gradients reach G only through x̂) and
    λ1 (VVM, default 1), λ2 (VLM, default ``default_vlm_weight``: AttnGAN's λ = 5, DF-GAN 1, U12/U16).
    λ1 = λ2 = 0 skips the VLM entirely: exactly the baseline. ``vlm_image_size``: what the VLM image encoder
    expects (default its ``input_size``); fakes and reals are resized to it bilinearly."""

    default_vlm_weight = 1.0

    def __init__(self, *args, vlm_text_encoder, vlm_image_encoder, msb, vvm_weight=1.0, vlm_weight=None,
                 vlm_gammas=(4.0, 5.0, 10.0), local_form="walkthrough", vlm_image_size=None, **kwargs):
        super().__init__(*args, **kwargs)
        if local_form not in LOCAL_FORMS:
            raise ValueError(f"local_form must be one of {LOCAL_FORMS}, not {local_form!r}.")
        self.vlm_text_encoder, self.vlm_image_encoder, self.msb = vlm_text_encoder, vlm_image_encoder, msb
        for network in (vlm_text_encoder, vlm_image_encoder, msb):
            network.trainable = False  # U9
        self.vvm_weight = float(vvm_weight)
        self.vlm_weight = float(self.default_vlm_weight if vlm_weight is None else vlm_weight)
        self.vlm_gammas, self.local_form = tuple(vlm_gammas), local_form
        self.vlm_image_size = vlm_image_size or vlm_image_encoder.input_size
        self.metric_groups = {**self.metric_groups, **VLM_GROUPS}
        self.track(*VLM_GROUPS)

    def to_vlm_size(self, images):
        size = self.vlm_image_size
        return images if not size or images.shape[1] == size else tf.image.resize(images, [size, size], "bilinear")

    def vlm_terms(self, fake, batch):
        """λ2·L_VLM + λ1·L_VVM per example on the generated images ``fake`` (U13, U16), and their logs;
        zero (and no VLM pass) when λ1 = λ2 = 0."""
        # BEGIN TASK vlm_plugin (VlmTerms.vlm_terms)
        if not (self.vvm_weight or self.vlm_weight):
            return tf.zeros([tf.shape(fake)[0]], tf.float32), {}
        gamma1, gamma2, gamma3 = self.vlm_gammas
        fake = tf.cast(fake, tf.float32)
        real = tf.cast(batch["image"], tf.float32)
        if real.shape[1] != fake.shape[1]:  # the real image at the last-stage resolution (U11), as chapter 2 resizes
            real = antialiased_resize(real, fake.shape[1:3])  # bilinear, antialiased; XLA compiles it
        lengths = batch["caption_length"]
        words, sentence = self.vlm_text_encoder([batch["caption_ids"], lengths], training=False)
        words, sentence = tf.stop_gradient(words), tf.stop_gradient(sentence)
        word_mask = tf.sequence_mask(lengths, tf.shape(words)[1])
        fake_regions, fake_global = self.vlm_image_encoder(self.to_vlm_size(fake), training=False)
        fake_regions = flatten_regions(fake_regions)
        real_regions, real_global = (tf.stop_gradient(tf.cast(x, tf.float32)) for x in
                                     self.vlm_image_encoder(self.to_vlm_size(real), training=False))
        real_regions = flatten_regions(real_regions)
        fake_logit, fake_pooled = self.msb.logits([fake_regions, fake_global, words, sentence, word_mask],
                                                  training=False)
        real_logit, real_pooled = (tf.stop_gradient(x) for x in self.msb.logits(
            [real_regions, real_global, words, sentence, word_mask], training=False))
        vlm, vlm_terms, fake_scores = vlm_loss(fake_regions, fake_global, fake_logit, words, sentence, word_mask,
                                               batch.get("class_id"), gamma1, gamma2, gamma3, self.local_form)
        vvm, vvm_terms = vvm_loss(fake_regions, fake_global, real_regions, real_global, fake_pooled, real_pooled,
                                  gamma1)
        real_local = local_score(real_regions, words, word_mask, gamma1, gamma2, self.local_form, False)[1]
        real_scores = {"local": real_local, "global": global_score(real_global, sentence, False)[1],
                       "general": tf.sigmoid(real_logit)}
        logs = {"vlm": vlm, "vvm": vvm, **{f"vlm_{k}": v for k, v in vlm_terms.items()},
                **{f"vvm_{k}": v for k, v in vvm_terms.items()},
                **{f"scores_{k}_fake": v for k, v in fake_scores.items()},
                **{f"scores_{k}_real": v for k, v in real_scores.items()}}
        return self.vlm_weight * vlm + self.vvm_weight * vvm, logs
        # END TASK vlm_plugin


class VlmAttnGan(VlmTerms, attngan.AttnGan):
    """VLMGAN+AttnGAN: chapter 3's losses unchanged (U14), plus λ2·L_VLM + λ1·L_VVM on the last stage (U13)."""

    default_vlm_weight = 5.0  # AttnGAN's DAMSM λ on CUB (50 on COCO), U12

    def generator_loss(self, fakes, mu, logvar, words, sentence, batch, logs):
        g_total, terms = super().generator_loss(fakes, mu, logvar, words, sentence, batch, logs)
        extra, extra_logs = self.vlm_terms(fakes[-1], batch)
        return g_total + extra, {**terms, **extra_logs}


class VlmDfGan(VlmTerms, dfgan.OneStageGan):
    """VLMGAN+DFGAN: DF-GAN's hinge G loss −D(x̂, s) plus λ2·L_VLM + λ1·L_VVM on the single output (U16);
    D, MA-GP and optimisers unchanged. With a RAT-GAN generator and discriminator: a project extension."""

    default_vlm_weight = 1.0  # the hinge loss is on another scale than BCE; tune separately (U16)

    def generator_loss(self, fake, sentence, batch):
        g_per_example, logs = super().generator_loss(fake, sentence, batch)
        extra, extra_logs = self.vlm_terms(fake, batch)
        return g_per_example + extra, {**logs, **extra_logs}


# ---------------------------------------------------------------------------
# 6. VLMS (U17): the mean general score of (image, caption) pairs under the frozen VLM
# ---------------------------------------------------------------------------
def mismatched_order(count, seed=0):
    """A seeded derangement: image i gets caption ``order[i]`` ≠ i (the shuffled lower reference)."""
    if count < 2:
        raise ValueError("Shuffled pairs need at least 2 (image, caption) pairs.")
    permutation = np.random.default_rng(seed).permutation(count)
    order = np.empty(count, np.int64)
    order[permutation] = np.roll(permutation, -1)  # image p[k] with caption p[k + 1]
    return order


def vlm_score(msb, text_encoder, image_encoder, images, caption_ids, caption_length, batch_size=64, gamma1=4.0,
              gamma2=5.0, local_form="walkthrough", shuffle_seed=None):
    """VLMS = mean S_general over the pairs (images[i], caption i), images in [−1, 1]; also mean S_global and
    S_local as diagnostics. ``shuffle_seed``: score mismatched pairs instead (:func:`mismatched_order`).
    Real test pairs give the upper reference. Not comparable with the paper's VLMS values."""
    caption_ids, caption_length = np.asarray(caption_ids), np.asarray(caption_length)
    count = len(images)
    if not count or len(caption_ids) != count or len(caption_length) != count:
        raise ValueError(f"vlm_score needs as many captions as images (> 0); got {count} images, "
                         f"{len(caption_ids)} captions, {len(caption_length)} lengths.")
    order = np.arange(count) if shuffle_seed is None else mismatched_order(count, shuffle_seed)

    @tf.function
    def batch_sums(images, caption_ids, lengths):  # traced once (and once more for a last, smaller batch)
        words, sentence = text_encoder([caption_ids, lengths], training=False)
        mask = tf.sequence_mask(lengths, tf.shape(words)[1])
        regions, image_global = image_encoder(images, training=False)
        general = msb([regions, image_global, words, sentence, mask], training=False)
        local = local_score(regions, words, mask, gamma1, gamma2, local_form, pairwise=False)[1]
        return [tf.reduce_sum(x) for x in (general, global_score(image_global, sentence, False)[1], local)]

    sums = np.zeros(3)
    for start in range(0, count, batch_size):
        chosen = order[start : start + batch_size]
        images_in = tf.convert_to_tensor(images[start : start + batch_size], tf.float32)
        sums += [float(x) for x in batch_sums(images_in, caption_ids[chosen], caption_length[chosen])]
    vlms, s_global, s_local = sums / count
    return {"vlms": vlms, "s_global": s_global, "s_local": s_local, "pairs": count}
