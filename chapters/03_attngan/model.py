"""Chapter 3 — AttnGAN (Xu et al., CVPR 2018) and its DAMSM text/image encoders.

Read top to bottom beside the paper and the README:

1. the DAMSM text encoder: a bidirectional LSTM gives a feature e_t per word and a
   sentence feature ē (paper §3.3);
2. the DAMSM image encoder: Inception-v3 regions v_r (17×17 = 289 of them) and a global code v̄;
3. the DAMSM losses: words attend to image regions, R(Q, D) scores caption–image pairs, and a
   cross-entropy over the batch asks each image to pick its own caption and vice versa (Eq. 7–13);
4. the attentional generator: StackGAN++'s tree where stages 2 and 3 attend to the words
   (Eq. 1–2, ``GlobalAttentionGeneral``) instead of re-reading the sentence;
5. one discriminator per stage (StackGAN++'s, conditioned on the raw sentence feature) and the
   AttnGAN loss with a mismatched pair (``code/miscc/losses.py``);
6. the AttnGAN training step: Ds, then G with L_G = L_adv + λ·L_DAMSM + KL;
7. DAMSM pretraining (``code/pretrain_DAMSM.py``), which must run before 6.

Everything follows the official code ``taoxugit/AttnGAN`` where it differs from the paper; the
differences are marked "official" and listed in the README. Blocks shared with chapter 2 come from
``t2igan.stages``. Official hyperparameters live in ``profiles.py`` (profile ``paper``).
"""

from __future__ import annotations

import importlib
import math

import keras
import tensorflow as tf
from keras import layers

from t2igan.layers import bce_with_logits
from t2igan.stages import (ConditioningAugmentation, ResidualBlock, UpBlock, batch_norm,
                           conv3x3, glu, kl_loss, orthogonal)
from t2igan.training.gan import ConditionalGAN

stackgan = importlib.import_module("chapters.02_stackgan.model")  # chapter 2: stage sizes, real images per stage
NEGATIVE_INFINITY = float("-inf")


def uniform(bound):
    return keras.initializers.RandomUniform(-bound, bound)


# ---------------------------------------------------------------------------
# 1. DAMSM text encoder (``RNN_ENCODER``)
# ---------------------------------------------------------------------------
class PyTorchLstmCell(layers.Layer):
    """One step of ``torch.nn.LSTM``: z = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh, gates (i, f, g, o).

    PyTorch keeps two bias vectors; Keras' ``LSTMCell`` keeps their sum. Keeping both gives the
    official parameter count and maps a checkpoint 1:1 (kernel = W_ihᵀ, recurrent_kernel = W_hhᵀ,
    bias = b_ih, recurrent_bias = b_hh; Keras' gate order i, f, c, o is PyTorch's i, f, g, o).
    Initialised like PyTorch: everything U(±1/√units).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        init = uniform(1.0 / math.sqrt(self.units))
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * self.units), initializer=init, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units), initializer=init,
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * self.units,), initializer=init, name="bias")
        self.recurrent_bias = self.add_weight(shape=(4 * self.units,), initializer=init, name="recurrent_bias")

    def call(self, inputs, states, training=False):
        h, c = states
        z = (tf.matmul(inputs, self.kernel) + self.bias) + (tf.matmul(h, self.recurrent_kernel) + self.recurrent_bias)
        i, f, g, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]


class DamsmTextEncoder(keras.Model):
    """Caption ids (B, T) → word features e (B, T, 2·hidden) and sentence feature ē (B, 2·hidden).

    Embedding U(−0.1, 0.1) → Dropout(0.5) → bidirectional LSTM. Id 0 is padding (AttnGAN pads with
    ``<end>`` = 0); lengths are given or taken as the number of non-zero ids. As with PyTorch's packed
    sequences, the backward LSTM starts at each caption's last real word, word features are exact
    zeros at padded steps, and ē = [forward state after the last word; backward state after word 0].
    At vocabulary 5,450 this has the official 2,075,320 parameters (LSTM 440,320).
    """

    def __init__(self, vocabulary_size, embedding_dim=300, hidden=128, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.feature_dim = 2 * hidden
        self.embedding = layers.Embedding(vocabulary_size, embedding_dim, embeddings_initializer=uniform(0.1))
        self.dropout = layers.Dropout(dropout)
        self.forward_lstm = layers.RNN(PyTorchLstmCell(hidden), return_sequences=True, return_state=True)
        self.backward_lstm = layers.RNN(PyTorchLstmCell(hidden), return_sequences=True, return_state=True,
                                        go_backwards=True)

    def call(self, inputs, training=False):
        """``inputs`` = ids, or ``[ids, lengths]``."""
        ids, lengths = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        ids = tf.cast(ids, tf.int32)
        mask = tf.not_equal(ids, 0) if lengths is None else tf.sequence_mask(lengths, tf.shape(ids)[1])
        x = self.dropout(self.embedding(ids), training=training)
        # Masked steps carry the state unchanged: reading right-padded captions backwards, the state stays
        # zero through the padding and the backward LSTM really starts at the last word.
        forward, forward_state, _ = self.forward_lstm(x, mask=mask, training=training)
        backward, backward_state, _ = self.backward_lstm(x, mask=mask, training=training)
        backward = tf.reverse(backward, axis=[1])  # go_backwards emits steps in reading order T−1 … 0
        words = tf.concat([forward, backward], axis=-1) * tf.cast(mask, x.dtype)[..., None]
        return words, tf.concat([forward_state, backward_state], axis=-1)

    @property
    def lstm_variables(self):
        return self.forward_lstm.trainable_variables + self.backward_lstm.trainable_variables


# ---------------------------------------------------------------------------
# 2. DAMSM image encoder (``CNN_ENCODER``)
# ---------------------------------------------------------------------------
class SmallBackbone(layers.Layer):
    """A CPU-sized stand-in for Inception: 4 × (conv 4×4 stride 2 → GroupNorm → LeakyReLU 0.2).

    Returns the stride-8 map (the "regions", like Mixed_6e) and the stride-16 map (like Mixed_7c).
    Trained from scratch with the projections during DAMSM pretraining.
    """

    def __init__(self, widths=(32, 64, 128, 256), **kwargs):
        super().__init__(**kwargs)
        if len(widths) != 4:
            raise ValueError(f"The small backbone needs 4 widths (strides 2, 4, 8, 16), not {widths}.")
        self.convs = [layers.Conv2D(w, 4, strides=2, padding="same") for w in widths]
        self.norms = [layers.GroupNormalization(groups=math.gcd(8, w), epsilon=1e-5) for w in widths]

    def call(self, images, training=False):
        x, outputs = images, []
        for conv, norm in zip(self.convs, self.norms):
            x = tf.nn.leaky_relu(norm(conv(x)), 0.2)
            outputs.append(x)
        return outputs[2], outputs[3]


class DamsmImageEncoder(keras.Model):
    """Image in [−1, 1] → region features v (B, H', W', D) and global feature v̄ (B, D).

    ``backbone="inception"``: Keras InceptionV3 (frozen; ``weights``: None, "imagenet" or a local .h5),
    images resized bilinearly to 299; v = conv1×1(``mixed7`` = Mixed_6e, 17×17×768 → D, no bias),
    v̄ = Linear(average-pooled ``mixed10`` = Mixed_7c, 2048 → D). The two projections (U(−0.1, 0.1))
    are the only trainable weights: 196,608 + 524,544 = 721,152 at D = 256.
    ``backbone_batch_statistics=True`` reproduces the official quirk (sheet §7 #13): in training mode the
    frozen Inception's BatchNorm uses and updates batch statistics (β stays frozen).
    ``backbone="small"``: :class:`SmallBackbone`, trainable; images resized to ``input_size`` if given.
    """

    def __init__(self, backbone="inception", embedding_dim=256, weights=None, input_size=None,
                 widths=(32, 64, 128, 256), backbone_batch_statistics=False, **kwargs):
        super().__init__(**kwargs)
        self.kind = backbone
        self.batch_statistics = backbone_batch_statistics
        if backbone == "inception":
            self.input_size = input_size or 299
            base = keras.applications.InceptionV3(include_top=False, weights=weights,
                                                  input_shape=(self.input_size, self.input_size, 3))
            self.backbone = keras.Model(base.input, [base.get_layer("mixed7").output, base.get_layer("mixed10").output],
                                        name="inception_v3_mixed7_mixed10")
            self.backbone.trainable = False
            for layer in self.backbone.layers if backbone_batch_statistics else []:
                if isinstance(layer, layers.BatchNormalization):
                    layer.trainable = True  # Keras BN uses batch statistics only when the layer is trainable …
                    for variable in layer.weights:
                        variable.trainable = False  # … but its β stays frozen
            global_width = 2048
        elif backbone == "small":
            self.input_size = input_size
            self.backbone = SmallBackbone(widths)
            global_width = widths[-1]
        else:
            raise ValueError(f"backbone must be 'inception' or 'small', not {backbone!r}.")
        self.project_regions = layers.Conv2D(embedding_dim, 1, use_bias=False, kernel_initializer=uniform(0.1))
        self.pool = layers.GlobalAveragePooling2D()
        self.project_global = layers.Dense(embedding_dim, kernel_initializer=uniform(0.1),
                                           bias_initializer=uniform(1.0 / math.sqrt(global_width)))  # PyTorch default

    def call(self, images, training=False):
        x = tf.cast(images, self.compute_dtype)
        if self.input_size and x.shape[1] != self.input_size:
            x = tf.image.resize(x, [self.input_size, self.input_size], "bilinear")  # = align_corners False
        backbone_training = training and (self.kind == "small" or self.batch_statistics)
        local, deep = self.backbone(x, training=backbone_training)
        return self.project_regions(local), self.project_global(self.pool(deep))


# ---------------------------------------------------------------------------
# 3. DAMSM losses (``words_loss``, ``sent_loss``, ``func_attention``)
# ---------------------------------------------------------------------------
def word_attention(words, regions, lengths, gamma1):
    """Region context c_t of every word (paper Eq. 7–9; official ``func_attention``).

    words (…, T, D), regions (…, R, D) and lengths (…) with broadcastable leading dimensions:
        s[r, t] = v_rᵀ e_t;  s̄ = softmax over the caption's words (padded words excluded);
        α[r, t] = softmax over regions of γ1·s̄[·, t];  c_t = Σ_r α[r, t] v_r.
    Returns c (…, T, D) and α (…, T, R).
    """
    words, regions = tf.cast(words, tf.float32), tf.cast(regions, tf.float32)
    valid = tf.sequence_mask(lengths, tf.shape(words)[-2])[..., None, :]  # (…, 1, T)
    scores = tf.where(valid, tf.matmul(regions, words, transpose_b=True), NEGATIVE_INFINITY)  # (…, R, T)
    attention = tf.nn.softmax(gamma1 * tf.nn.softmax(scores, axis=-1), axis=-2)  # words first, then regions
    return tf.matmul(attention, regions, transpose_a=True), tf.linalg.matrix_transpose(attention)


def cosine(a, b, axis=-1, eps=1e-8):
    """PyTorch ``cosine_similarity``: a·b / max(‖a‖‖b‖, eps)."""
    return tf.reduce_sum(a * b, axis) / tf.maximum(tf.norm(a, axis=axis) * tf.norm(b, axis=axis), eps)


def matching_cross_entropy(scores, class_ids):
    """scores (B_images, B_captions); the match of image i is caption i.

    Other pairs of the same class are not negatives: set to −∞ (official). Returns per-example
    (image → caption, caption → image) cross-entropies, each (B,): the official ``loss0``, ``loss1``.
    """
    batch = tf.shape(scores)[0]
    if class_ids is not None:
        same_class = tf.equal(class_ids[:, None], class_ids[None, :]) & ~tf.eye(batch, dtype=tf.bool)
        scores = tf.where(same_class, NEGATIVE_INFINITY, scores)
    labels = tf.range(batch)
    image_to_text = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scores)
    text_to_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(scores))
    return image_to_text, text_to_image


def words_loss(regions, words, lengths, class_ids=None, gamma1=4.0, gamma2=5.0, gamma3=10.0, paper_score=False):
    """Word-level DAMSM loss (Eq. 10–13): per-example (w0, w1), each (B,).

    For caption i and image j: c_t from :func:`word_attention`, and
        R_ij = log Σ_t exp(γ2·cos(e_t, c_t))          (official code)
        R_ij = (1/γ2)·log Σ_t exp(γ2·cos(e_t, c_t))   (paper Eq. 10, ``paper_score=True``)
    The official code omits the 1/γ2 power of Eq. 10, so its effective scale is γ2·γ3 = 50 on the paper's
    R; γ3 was tuned with it, hence the default. Then S = γ3·R and :func:`matching_cross_entropy`.
    """
    regions = tf.cast(regions, tf.float32)
    if regions.shape.rank == 4:
        regions = tf.reshape(regions, [tf.shape(regions)[0], -1, regions.shape[-1]])
    words = tf.cast(words, tf.float32)
    # Every (image j, caption i) pair at once: image axis first, caption axis second.
    context, _ = word_attention(words[None], regions[:, None], lengths[None], gamma1)  # (B_img, B_cap, T, D)
    similarity = gamma2 * cosine(words[None], context)  # (B_img, B_cap, T)
    valid = tf.sequence_mask(lengths, tf.shape(words)[1])[None]
    score = tf.reduce_logsumexp(tf.where(valid, similarity, NEGATIVE_INFINITY), axis=-1)  # = log Σ exp, stably
    if paper_score:
        score = score / gamma2
    return matching_cross_entropy(gamma3 * score, class_ids)


def sentence_loss(global_features, sentence, class_ids=None, gamma3=10.0):
    """Sentence-level DAMSM loss (Eq. 11–13 with R = cos(v̄_j, ē_i)): per-example (s0, s1), each (B,)."""
    global_features, sentence = tf.cast(global_features, tf.float32), tf.cast(sentence, tf.float32)
    scores = cosine(global_features[:, None], sentence[None])  # (B_img, B_cap)
    return matching_cross_entropy(gamma3 * scores, class_ids)


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
        keys = self.project(tf.cast(words, h.dtype))  # (B, T, C)
        queries = tf.reshape(h, [batch, pixels, h.shape[-1]])
        scores = tf.matmul(queries, keys, transpose_b=True)  # (B, HW, T)
        if self.faithful_mask_bug:
            source = (tf.range(batch)[:, None] * pixels + tf.range(pixels)[None, :]) % batch  # (B, HW)
            mask = tf.gather(word_mask, source)  # (B, HW, T): pixel q of b gets sample source[b, q]'s mask
        else:
            mask = word_mask[:, None, :]
        attention = tf.nn.softmax(tf.where(mask, scores, tf.cast(NEGATIVE_INFINITY, scores.dtype)), axis=-1)
        context = tf.reshape(tf.matmul(attention, keys), tf.shape(h))
        maps = tf.reshape(tf.transpose(attention, [0, 2, 1]), [batch, -1, height, width])
        return context, maps


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
        for attention, residuals, up in zip(self.attentions, self.residuals, self.next_ups):
            context, maps = attention(h, words, tf.cast(word_mask, tf.bool))
            h = tf.concat([h, context], axis=-1)  # [h, context], h first
            for block in residuals:
                h = block(h, training=training)
            h = up(h, training=training)
            features.append(h)
            attention_maps.append(tf.cast(maps, tf.float32))
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
                         extra_tags={"damsm": "loss/damsm", "damsm_words": "loss/damsm_words",
                                     "damsm_sentence": "loss/damsm_sentence"}, **kwargs)
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

    def train_step(self, batch):
        lengths, class_ids = batch["caption_length"], batch["class_id"]
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
            g_total = self.adversarial_generator_loss(fakes, sentence, logs)
            damsm_words, damsm_sentence = self.damsm_loss(fakes[-1], words, sentence, lengths, class_ids)
            kl = kl_loss(mu, logvar)
            g_total += self.damsm_weight * (damsm_words + damsm_sentence) + self.kl_weight * kl
            g_loss = self.average(g_total)
        self.apply(self.generator_optimizer, g_tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(d_loss=d_total, g_loss=g_total, kl=kl, damsm=damsm_words + damsm_sentence,
                           damsm_words=damsm_words, damsm_sentence=damsm_sentence, **logs)

    def generate(self, noise, caption_ids, caption_length, all_stages=False, return_attention=False):
        """Images from ``noise`` = [z, ε] rows; the largest stage unless ``all_stages``; with
        ``return_attention`` also the attention maps (B, T, H, W) of each attention stage."""
        z, epsilon = self.split_noise(tf.convert_to_tensor(noise, tf.float32))
        words, sentence, mask = self.encode_text(caption_ids, caption_length)
        images, maps, _, _ = self.sampling_generator([z, sentence, words, mask, epsilon], training=False)
        images = images if all_stages else images[-1]
        return (images, maps) if return_attention else images


# ---------------------------------------------------------------------------
# 7. DAMSM pretraining (``code/pretrain_DAMSM.py``)
# ---------------------------------------------------------------------------
def caption_to_image_top1(global_features, sentence):
    """Per caption: 1 if its own image has the highest cosine with it among the batch's images."""
    scores = cosine(tf.cast(global_features, tf.float32)[:, None], tf.cast(sentence, tf.float32)[None])
    best = tf.argmax(scores, axis=0, output_type=tf.int32)  # best image for each caption (column)
    return tf.cast(tf.equal(best, tf.range(tf.shape(scores)[1])), tf.float32)


class DamsmPretrainer(keras.Model):
    """Trains the text encoder and the image projections (with the small backbone: all of the image
    encoder) on L = w0 + w1 + s0 + s1, compiled with ``optimizer=Adam(2e-3, beta_1=0.5)``.

    * Official: the text encoder's gradients (embedding and LSTM: ``rnn_model.parameters()``) are
      clipped to global norm 0.25; ``clip_embedding=False`` clips the LSTM only. Under tf.distribute
      the clip applies to each replica's share before the optimizer sums them (exact on one replica).
    * Official: a fresh Adam every epoch and lr ×0.98 per epoch down to lr/10: the caller sets the
      learning rate and calls :meth:`reset_optimizer_state` at each epoch start.
    * Metrics: the four loss terms, their sum, and in-batch caption → image top-1 retrieval by ē·v̄.
    """

    def __init__(self, text_encoder, image_encoder, gamma1=4.0, gamma2=5.0, gamma3=10.0, gradient_clip=0.25,
                 clip_embedding=True, paper_score=False, **kwargs):
        super().__init__(**kwargs)
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.gammas, self.gradient_clip, self.clip_embedding = (gamma1, gamma2, gamma3), gradient_clip, clip_embedding
        self.paper_score = paper_score
        names = ("loss", "words_loss0", "words_loss1", "sentence_loss0", "sentence_loss1", "retrieval_top1")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build_optimizer(self):
        """Create the optimizer's slots eagerly (inside the strategy scope), as ``ConditionalGAN`` does."""
        self.optimizer.build(self.trainable_variables)
        self.built = True

    def reset_optimizer_state(self):
        """Zero Adam's step count and moments (the official new Adam per epoch), keeping the learning rate."""
        for variable in self.optimizer.variables:
            if "learning_rate" not in variable.name:
                variable.assign(tf.zeros_like(variable))

    def loss_terms(self, batch, training):
        gamma1, gamma2, gamma3 = self.gammas
        lengths, class_ids = batch["caption_length"], batch["class_id"]
        words, sentence = self.text_encoder([batch["caption_ids"], lengths], training=training)
        regions, global_features = self.image_encoder(batch["image"], training=training)
        w0, w1 = words_loss(regions, words, lengths, class_ids, gamma1, gamma2, gamma3, self.paper_score)
        s0, s1 = sentence_loss(global_features, sentence, class_ids, gamma3)
        return dict(words_loss0=w0, words_loss1=w1, sentence_loss0=s0, sentence_loss1=s1,
                    retrieval_top1=caption_to_image_top1(global_features, sentence))

    def record(self, terms):
        terms["loss"] = terms["words_loss0"] + terms["words_loss1"] + terms["sentence_loss0"] + terms["sentence_loss1"]
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, batch):
        text_variables = (self.text_encoder.trainable_variables if self.clip_embedding
                          else self.text_encoder.lstm_variables)
        clipped = {id(v) for v in text_variables}
        other_variables = [v for v in self.trainable_variables if id(v) not in clipped]
        with tf.GradientTape() as tape:
            terms = self.loss_terms(batch, training=True)
            per_example = sum(terms[k] for k in ("words_loss0", "words_loss1", "sentence_loss0", "sentence_loss1"))
            loss = ConditionalGAN.average(per_example)
        # No loss scaling here: scaled float16 gradients would have to be unscaled before the clip.
        gradients = tape.gradient(loss, text_variables + other_variables)
        text_gradients, _ = tf.clip_by_global_norm(gradients[: len(text_variables)], self.gradient_clip)
        self.optimizer.apply_gradients(zip(text_gradients + gradients[len(text_variables):],
                                           text_variables + other_variables))
        return self.record(terms)

    def test_step(self, batch):
        return self.record(self.loss_terms(batch, training=False))
