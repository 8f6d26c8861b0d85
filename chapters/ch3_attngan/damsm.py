"""DAMSM (Xu et al., AttnGAN, CVPR 2018 §3.3): the text and image encoders and their matching losses.

Chapter 3 teaches them; chapters 4 and 5 and the metrics (R-precision) reuse them, so they live here.
Read top to bottom beside chapter 3's README:

1. the text encoder: a bidirectional LSTM gives a feature e_t per word and a sentence feature ē;
2. the image encoder: Inception-v3 regions v_r (17×17 = 289 of them) and a global code v̄, or a small
   CNN with the same interface for CPU profiles;
3. the losses: words attend to image regions, R(Q, D) scores caption–image pairs, and a cross-entropy
   over the batch asks each image to pick its own caption and vice versa (Eq. 7–13);
4. pretraining (``code/pretrain_DAMSM.py``): the model, and the command-side workflow every chapter
   shares (vocabulary, caption-id tables, pretrain when absent, load).

Everything follows the official code ``taoxugit/AttnGAN`` where it differs from the paper; the
differences are marked "official" and listed in chapter 3's README.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from t2igan.data.records import caption_fingerprint, check_fingerprint
from t2igan.layers import same_class
from t2igan.training.gan import ConditionalGAN
from t2igan.training.pretrain import pretrain_encoders, reset_optimizer_state

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


BACKBONES = ("inception", "inception_torchvision", "small")


def resize_bilinear(images, size, align_corners=False):
    """Bilinear resize to size × size as PyTorch's ``interpolate(mode="bilinear")`` (no antialiasing):
    half-pixel centres (``align_corners=False``, PyTorch ≥ 0.4), or corner pixels onto corner pixels
    (``align_corners=True``, what ``nn.Upsample`` did in PyTorch 0.3, when AttnGAN was written)."""
    if align_corners:
        return tf.compat.v1.image.resize_bilinear(images, [size, size], align_corners=True)
    return tf.image.resize(images, [size, size], "bilinear", antialias=False)


class DamsmImageEncoder(keras.Model):
    """Image in [−1, 1] → region features v (B, H', W', D) and global feature v̄ (B, D).

    ``backbone="inception"``: Keras InceptionV3 (frozen; ``weights``: None, "imagenet" or a local .h5),
    images resized bilinearly to 299; v = conv1×1(``mixed7`` = Mixed_6e, 17×17×768 → D, no bias),
    v̄ = Linear(average-pooled ``mixed10`` = Mixed_7c, 2048 → D). The two projections (U(−0.1, 0.1))
    are the only trainable weights: 196,608 + 524,544 = 721,152 at D = 256.
    ``backbone="inception_torchvision"``: the same with torchvision's Inception3, the network of the official
    ``CNN_ENCODER`` (BN with γ, average pools that count the padding; ``t2igan.metrics.inception``), so the
    released DAMSM loads exactly (``official.py``); ``weights``: None or torchvision's
    ``inception_v3_google-1a9a5a14.pth`` (or its ``.npz``), the ImageNet start of the official pretraining.
    ``backbone_batch_statistics=True`` reproduces the official quirk (sheet §7 #13): in training mode the
    frozen Inception's BatchNorm uses and updates batch statistics (β stays frozen).
    ``backbone="small"``: :class:`SmallBackbone`, trainable; images resized to ``input_size`` if given.
    ``align_corners``: the resize to 299 as PyTorch 0.3's bilinear ``Upsample`` (corner pixels aligned), as
    the released DAMSM was presumably trained; the default (half-pixel centres) is PyTorch ≥ 0.4's, which the
    R-precision code of DM-GAN and DF-GAN ran with.
    """

    def __init__(self, backbone="inception", embedding_dim=256, weights=None, input_size=None,
                 widths=(32, 64, 128, 256), backbone_batch_statistics=False, align_corners=False, **kwargs):
        super().__init__(**kwargs)
        self.kind = backbone
        self.batch_statistics = backbone_batch_statistics
        self.align_corners = align_corners
        if backbone in ("inception", "inception_torchvision"):
            self.input_size = input_size or 299
            if backbone == "inception":
                base = keras.applications.InceptionV3(include_top=False, weights=weights,
                                                      input_shape=(self.input_size, self.input_size, 3))
                self.backbone = keras.Model(base.input, [base.get_layer("mixed7").output,
                                                         base.get_layer("mixed10").output],
                                            name="inception_v3_mixed7_mixed10")
            else:
                from t2igan.metrics.inception import FidInception

                self.inception = FidInception(weights, variant="torchvision", input_size=self.input_size)
                self.backbone = self.inception.model  # the official weights load through self.inception
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
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, not {backbone!r}.")
        self.project_regions = layers.Conv2D(embedding_dim, 1, use_bias=False, kernel_initializer=uniform(0.1))
        self.pool = layers.GlobalAveragePooling2D()
        self.project_global = layers.Dense(embedding_dim, kernel_initializer=uniform(0.1),
                                           bias_initializer=uniform(1.0 / math.sqrt(global_width)))  # PyTorch default

    def call(self, images, training=False):
        x = tf.cast(images, self.compute_dtype)
        if self.input_size and (x.shape[1] != self.input_size or x.shape[2] != self.input_size):
            x = tf.cast(resize_bilinear(x, self.input_size, self.align_corners), self.compute_dtype)
        backbone_training = training and (self.kind == "small" or self.batch_statistics)
        local, deep = self.backbone(x, training=backbone_training)
        return self.project_regions(local), self.project_global(self.pool(deep))


# ---------------------------------------------------------------------------
# 3. DAMSM losses (``words_loss``, ``sent_loss``, ``func_attention``)
# ---------------------------------------------------------------------------
def attention_weights(words, regions, lengths, gamma1):
    """The scores s and the weights α of paper Eq. 7–9 (official ``func_attention``), both (…, R, T).

    words (…, T, D), regions (…, R, D) and lengths (…) with broadcastable leading dimensions:
        s[r, t] = v_rᵀ e_t;  s̄ = softmax over the caption's words (padded words excluded);
        α[r, t] = softmax over regions of γ1·s̄[·, t].
    s is returned unmasked (a padded word's is finite), for :func:`words_loss`.
    """
    # BEGIN TASK damsm_losses (attention_weights)
    words, regions = tf.cast(words, tf.float32), tf.cast(regions, tf.float32)
    valid = tf.sequence_mask(lengths, tf.shape(words)[-2])[..., None, :]  # (…, 1, T)
    raw = tf.matmul(regions, words, transpose_b=True)  # (…, R, T)
    scores = tf.where(valid, raw, NEGATIVE_INFINITY)
    return raw, tf.nn.softmax(gamma1 * tf.nn.softmax(scores, axis=-1), axis=-2)  # words first, then regions
    # END TASK damsm_losses


def word_attention(words, regions, lengths, gamma1):
    """Region context c_t = Σ_r α[r, t] v_r of every word (paper Eq. 9), α from :func:`attention_weights`.

    Returns c (…, T, D) and α (…, T, R).
    """
    # BEGIN TASK damsm_losses (word_attention)
    _, attention = attention_weights(words, regions, lengths, gamma1)
    return tf.matmul(attention, tf.cast(regions, tf.float32), transpose_a=True), tf.linalg.matrix_transpose(attention)
    # END TASK damsm_losses


def cosine(a, b, axis=-1, eps=1e-8):
    """PyTorch ``cosine_similarity``: a·b / max(‖a‖‖b‖, eps), computed as a·b / √max(‖a‖²‖b‖², eps²).

    The two are equal; the second has a finite gradient at a zero vector (padded words' features are
    zeros). There ‖a‖'s gradient is 0/0: TensorFlow's plain graph gives 0, XLA gives NaN, and a
    DAMSM pretraining compiled with XLA diverged at its first step.
    """
    # BEGIN TASK damsm_losses (cosine)
    squared_norms = tf.reduce_sum(a * a, axis) * tf.reduce_sum(b * b, axis)
    return tf.reduce_sum(a * b, axis) / tf.sqrt(tf.maximum(squared_norms, eps * eps))
    # END TASK damsm_losses


def matching_cross_entropy(scores, class_ids):
    """scores (B_images, B_captions); the match of image i is caption i.

    Other pairs of the same class are not negatives: set to −∞ (official). An example of unknown class
    (−1) is its own class (``t2igan.layers.same_class``), so every other caption is its negative. Returns per-example
    (image → caption, caption → image) cross-entropies, each (B,): the official ``loss0``, ``loss1``.
    """
    # BEGIN TASK damsm_losses (matching_cross_entropy)
    batch = tf.shape(scores)[0]
    if class_ids is not None:
        scores = tf.where(same_class(class_ids) & ~tf.eye(batch, dtype=tf.bool), NEGATIVE_INFINITY, scores)
    labels = tf.range(batch)
    image_to_text = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scores)
    text_to_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(scores))
    return image_to_text, text_to_image
    # END TASK damsm_losses


def words_loss(regions, words, lengths, class_ids=None, gamma1=4.0, gamma2=5.0, gamma3=10.0, paper_score=False):
    """Word-level DAMSM loss (Eq. 10–13): per-example (w0, w1), each (B,).

    For caption i and image j: c_t as in :func:`word_attention` (computed here without forming c), and
        R_ij = log Σ_t exp(γ2·cos(e_t, c_t))          (official code)
        R_ij = (1/γ2)·log Σ_t exp(γ2·cos(e_t, c_t))   (paper Eq. 10, ``paper_score=True``)
    The official code omits the 1/γ2 power of Eq. 10, so its effective scale is γ2·γ3 = 50 on the paper's
    R; γ3 was tuned with it, hence the default. Then S = γ3·R and :func:`matching_cross_entropy`.
    """
    regions = tf.cast(regions, tf.float32)
    if regions.shape.rank == 4:
        regions = tf.reshape(regions, [tf.shape(regions)[0], -1, regions.shape[-1]])
    # BEGIN TASK damsm_losses (words_loss)
    words = tf.cast(words, tf.float32)
    # Every (image j, caption i) pair at once: image axis first, caption axis second.
    scores, attention = attention_weights(words[None], regions[:, None], lengths[None], gamma1)  # (B_img, B_cap, R, T)
    # cos(e_t, c_t) without forming c (B_img, B_cap, T, D): e_t·c_t = Σ_r α[r, t] s[r, t] and
    # ‖c_t‖² = α_tᵀ (V Vᵀ) α_t, V the image's regions (R, D). R² instead of R·D multiply-adds per word and pair
    # (16 times fewer at the course's 4×4 regions, about as many at the paper's 17×17), and no B²·T·D tensor.
    dot = tf.reduce_sum(attention * scores, axis=-2)  # (B_img, B_cap, T)
    gram = tf.matmul(regions, regions, transpose_b=True)[:, None]  # (B_img, 1, R, R)
    context_norms = tf.reduce_sum(attention * tf.matmul(gram, attention), axis=-2)  # ‖c_t‖²
    word_norms = tf.reduce_sum(words * words, axis=-1)[None]  # ‖e_t‖², (1, B_cap, T)
    similarity = gamma2 * dot / tf.sqrt(tf.maximum(word_norms * context_norms, 1e-16))  # as cosine(), eps 1e-8
    valid = tf.sequence_mask(lengths, tf.shape(words)[1])[None]
    score = tf.reduce_logsumexp(tf.where(valid, similarity, NEGATIVE_INFINITY), axis=-1)  # = log Σ exp, stably
    if paper_score:
        score = score / gamma2
    return matching_cross_entropy(gamma3 * score, class_ids)
    # END TASK damsm_losses


def sentence_loss(global_features, sentence, class_ids=None, gamma3=10.0):
    """Sentence-level DAMSM loss (Eq. 11–13 with R = cos(v̄_j, ē_i)): per-example (s0, s1), each (B,)."""
    # BEGIN TASK damsm_losses (sentence_loss)
    global_features, sentence = tf.cast(global_features, tf.float32), tf.cast(sentence, tf.float32)
    scores = cosine(global_features[:, None], sentence[None])  # (B_img, B_cap)
    return matching_cross_entropy(gamma3 * scores, class_ids)
    # END TASK damsm_losses


# ---------------------------------------------------------------------------
# 4. DAMSM pretraining (``code/pretrain_DAMSM.py``)
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

    A subclass with other objectives overrides ``loss_terms`` and ``loss_keys`` (the terms summed into L).
    """

    loss_keys = ("words_loss0", "words_loss1", "sentence_loss0", "sentence_loss1")

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
        reset_optimizer_state(self.optimizer)

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
        terms["loss"] = sum(terms[key] for key in self.loss_keys)
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
            loss = ConditionalGAN.average(sum(terms[key] for key in self.loss_keys))
        # No loss scaling here: scaled float16 gradients would have to be unscaled before the clip.
        gradients = tape.gradient(loss, text_variables + other_variables)
        text_gradients, _ = tf.clip_by_global_norm(gradients[: len(text_variables)], self.gradient_clip)
        self.optimizer.apply_gradients(zip(text_gradients + gradients[len(text_variables):],
                                           text_variables + other_variables))
        return self.record(terms)

    def test_step(self, batch):
        return self.record(self.loss_terms(batch, training=False))



# ---------------------------------------------------------------------------
# 5. The workflow chapters share: vocabulary, caption ids, pretrain when absent, load
# ---------------------------------------------------------------------------
#: The profile keys that define the encoders; stored with them so another run can reuse them.
ENCODER_KEYS = ("damsm_backbone", "damsm_image_size", "damsm_small_widths", "inception_weights", "image_size",
                "word_embedding_dim", "text_hidden", "text_dropout")
#: Encoder keys a profile may leave out (chapter 4's), with their values when it does.
OPTIONAL_ENCODER_KEYS = {"damsm_align_corners": False}


def encoder_config(config):
    """The settings that define the encoders, as ``complete.json`` stores them."""
    return dict({key: config[key] for key in ENCODER_KEYS},
                **{key: config.get(key, default) for key, default in OPTIONAL_ENCODER_KEYS.items()})


def paths(folder):
    """(text weights, image weights, completion record) of the DAMSM stored in ``folder``."""
    return (os.path.join(folder, "damsm_text.weights.h5"), os.path.join(folder, "damsm_image.weights.h5"),
            os.path.join(folder, "complete.json"))


def is_complete(folder) -> bool:
    return os.path.exists(paths(folder)[2])


def vocabulary(folder, index):
    """The run's vocabulary: the official one when the data set ships it, else built from both splits
    (as AttnGAN does) and frozen in ``folder/vocabulary.json``."""
    from t2igan.text import resolve_vocabulary

    os.makedirs(folder, exist_ok=True)
    captions = [c for split in ("train", "test") for e in index.split(split) for c in e.captions]
    return resolve_vocabulary(os.path.join(folder, "vocabulary.json"), captions, index.vocabulary_words)


def id_table(examples, vocab):
    """Every caption's token ids at full length (the pipeline draws AttnGAN's words_num subset per step)."""
    from t2igan.data.pipeline import caption_tables

    encoded = {}
    for example in examples:
        for caption in example.captions:
            encoded[caption] = vocab.encode(caption)[0] or [0]
    width = max(len(ids) for ids in encoded.values())
    return caption_tables(examples, lambda caption: (encoded[caption], len(encoded[caption])), width)


def pad(ids, words_num):
    """AttnGAN's rule for long captions (an ordered random subset of words_num words, seed 0), then pad."""
    from t2igan.text import pad_ids

    return pad_ids(ids, words_num, np.random.default_rng(0))


def test_ids(index, vocab, words_num):
    """Test captions as (ids (N, C, words_num), lengths (N, C)); missing captions have length 1."""
    most = max(len(e.captions) for e in index.test)
    ids = np.zeros((len(index.test), most, words_num), np.int32)
    lengths = np.ones((len(index.test), most), np.int32)
    for i, example in enumerate(index.test):
        for c, caption in enumerate(example.captions):
            ids[i, c], lengths[i, c] = pad(vocab.encode(caption)[0] or [0], words_num)
    return ids, np.maximum(lengths, 1)


def encode_user_caption(vocab, caption, words_num):
    """A caption typed by a user → (ids (words_num,), length), with clear errors for unusable text."""
    from t2igan.errors import UserError
    from t2igan.text import tokenize

    if caption is None or not caption.strip():
        raise UserError('The caption is empty. Pass one with TEXT="a small red circle in the top left".')
    ids, unknown = vocab.encode(caption)
    if not ids:
        raise UserError(f"None of the words of {caption!r} are in the vocabulary; the model cannot draw it. "
                        f"Known words include: {', '.join(vocab.words[1:21])} …")
    if unknown:
        print(f"Words not in the vocabulary (dropped): {', '.join(unknown)}")
    if len(tokenize(caption)) > 1000:
        raise UserError("The caption is longer than 1,000 words; shorten it.")
    if len(ids) > words_num:
        print(f"The caption has {len(ids)} known words; the model reads {words_num} (AttnGAN's ordered random subset).")
    return pad(ids, words_num)


def encoder_image_size(config):
    return config["damsm_image_size"] if config["damsm_backbone"] == "small" else config["image_size"]


def build_encoders(config, vocabulary_size):
    """Fresh (text, image) encoders for the profile's DAMSM keys, built by a dummy call."""
    from t2igan.errors import UserError

    text = DamsmTextEncoder(vocabulary_size, config["word_embedding_dim"], config["text_hidden"], config["text_dropout"])
    weights = config["inception_weights"] or None
    if config["damsm_backbone"] not in BACKBONES:
        raise UserError(f"damsm_backbone: {config['damsm_backbone']!r} is not one of {', '.join(BACKBONES)}.")
    if weights and not os.path.exists(weights):
        wanted = ("torchvision's inception_v3_google-1a9a5a14.pth (https://download.pytorch.org/models/"
                  "inception_v3_google-1a9a5a14.pth; reading it needs torch, or convert it once with "
                  "python -m t2igan.torch_weights convert)" if config["damsm_backbone"] == "inception_torchvision"
                  else "the Keras InceptionV3 ImageNet weights (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)")
        raise UserError(f"inception_weights: {weights} does not exist. Download {wanted} and pass its path.")
    size = encoder_image_size(config)
    image = DamsmImageEncoder(config["damsm_backbone"], config["text_hidden"] * 2, weights=weights,
                              input_size=config["damsm_image_size"], widths=config["damsm_small_widths"],
                              align_corners=config.get("damsm_align_corners", False))
    text([tf.zeros((2, 4), tf.int32), tf.constant([4, 2])])
    image(tf.zeros((1, size, size, 3)))  # builds it; one image is enough (Inception at 299 is slow on CPUs)
    return text, image


def pair_datasets(config, index, vocab, images_fn, batch_size, steps_per_epoch):
    """Real (image, caption) pairs at the encoders' size for pretraining a matcher (DAMSM, chapter 5's VLM):
    ``(images {split: uint8}, training dataset, validation (50 test batches, as official), steps per epoch)``."""
    from t2igan.data.pipeline import make_dataset

    tables = {split: id_table(index.split(split), vocab) for split in ("train", "test")}
    class_ids = {split: np.array([e.class_id for e in index.split(split)], np.int32) for split in ("train", "test")}
    size = encoder_image_size(config)
    images = {split: images_fn(split, size) for split in ("train", "test")}
    steps = steps_per_epoch or len(images["train"]) // batch_size
    dataset = make_dataset(images["train"], class_ids["train"], tables["train"], global_batch_size=batch_size,
                           image_size=size, augment=config["augment"], seed=config["seed"], words_num=config["words_num"])
    validation = make_dataset(images["test"], class_ids["test"], tables["test"],
                              global_batch_size=min(batch_size, len(images["test"])), image_size=size, augment=False,
                              seed=12345, words_num=config["words_num"], repeat=False).take(50)
    return images, dataset, validation, steps


def epoch_rate(config, prefix, epoch):
    """The official per-epoch learning rate: ``rate × decay^epoch``, not below the floor (``<prefix>_learning_rate*``)."""
    rate = config[f"{prefix}_learning_rate"] * config[f"{prefix}_learning_rate_decay"] ** epoch
    return max(rate, config[f"{prefix}_learning_rate_floor"])


def pretrain(strategy, folder, log_dir, config, index, images_fn, verbose="auto"):
    """DAMSM pretraining (``pretrain_DAMSM.py``) into ``folder``: Adam re-created each epoch, lr ×0.98 per epoch
    down to the floor, text-encoder gradients clipped to 0.25; the weights with the best held-out
    caption → image retrieval are kept. ``images_fn(split, size)`` gives uint8 images. Returns the report."""
    from absl import logging

    vocab = vocabulary(folder, index)
    size = encoder_image_size(config)
    images, dataset, validation, steps = pair_datasets(config, index, vocab, images_fn, config["damsm_batch_size"],
                                                       config["damsm_steps_per_epoch"])
    text_path, image_path, complete_path = paths(folder)

    def build():
        text, image = build_encoders(config, len(vocab))
        return DamsmPretrainer(text, image, config["gamma1"], config["gamma2"], config["gamma3"],
                               config["damsm_gradient_clip"], paper_score=config["paper_word_score"])

    def save(pretrainer):  # the encoders with the best held-out caption → image top-1 are kept
        def write():
            pretrainer.text_encoder.save_weights(text_path)
            pretrainer.image_encoder.save_weights(image_path)
        return write

    def views(pretrainer):
        return [ValidationAttention(pretrainer.text_encoder, pretrainer.image_encoder, images["test"], index, vocab,
                                    config, os.path.join(log_dir, "damsm", "attention"))]

    logging.info("Pretraining DAMSM (%s backbone, %d px): %d epochs × %d steps.", config["damsm_backbone"], size,
                 config["damsm_epochs"], steps)
    _, history, schedule = pretrain_encoders(
        strategy, build, lambda: keras.optimizers.Adam(config["damsm_learning_rate"], beta_1=0.5, beta_2=0.999),
        dataset, validation, epochs=config["damsm_epochs"], steps_per_epoch=steps,
        log_dir=os.path.join(log_dir, "damsm"), verbose=verbose, epoch_learning_rate=lambda epoch: epoch_rate(config, "damsm", epoch),
        reset_optimizer_each_epoch=config["damsm_reset_optimizer_each_epoch"], keep_best=save, callbacks=views,
        jit_compile=config["pretrain_jit_compile"])
    report = {key: float(values[-1]) for key, values in history.history.items()}
    report.update(best_val_retrieval_top1=schedule.best, best_epoch=schedule.best_epoch)
    with open(complete_path, "w", encoding="utf-8") as file:
        json.dump(dict(report, data_fingerprint=caption_fingerprint(index), vocabulary_size=len(vocab),
                       encoder_config=encoder_config(config)), file, indent=2)
    return report


class ValidationAttention(keras.callbacks.Callback):
    """TensorBoard ``damsm/word_attention`` each epoch: for 4 fixed test images and their first caption, the
    image, then where each word attends among the image regions (α of Eq. 9) — what AttnGAN's
    ``pretrain_DAMSM.py`` saves as attention maps during validation. Each row's words are written over its
    maps, with a colour scale (each map scaled to its own max)."""

    def __init__(self, text, image, test_images, index, vocab, config, log_dir, count=4):
        super().__init__()
        self.text, self.image, self.vocab, self.gamma1 = text, image, vocab, config["gamma1"]
        count = min(count, len(test_images))
        size = encoder_image_size(config)
        pixels = tf.image.resize(tf.cast(test_images[:count], tf.float32), (size, size), antialias=True)
        self.pixels = (pixels / 127.5 - 1.0).numpy()
        ids, lengths = test_ids(index, vocab, config["words_num"])
        self.ids, self.lengths = ids[:count, 0], lengths[:count, 0]
        self.writer = tf.summary.create_file_writer(log_dir)

    def on_epoch_end(self, epoch, logs=None):
        from t2igan.sampling import attention_picture, heat_overlay

        words, _ = self.text([self.ids, self.lengths], training=False)
        regions, _ = self.image(self.pixels, training=False)
        height, width = regions.shape[1], regions.shape[2]
        flat = tf.reshape(regions, [len(self.ids), height * width, regions.shape[-1]])
        _, attention = word_attention(words, flat, self.lengths, self.gamma1)  # (B, T, R)
        maps = tf.reshape(attention, [len(self.ids), -1, height, width]).numpy()
        rows, labels = [], []
        for b, image in enumerate(self.pixels):
            rows.append(np.stack([image] + [heat_overlay(image, maps[b, t]) for t in range(int(self.lengths[b]))]))
            labels.append(["image"] + [self.vocab.words[t] for t in self.ids[b, : int(self.lengths[b])]])
        grid = attention_picture(rows, labels, scale_title="word attention")
        with self.writer.as_default(step=epoch + 1):
            tf.summary.image("damsm/word_attention", grid[None].astype(np.float32) / 255.0)
            if epoch == 0:
                tf.summary.text("damsm/captions", "\n\n".join(
                    f"{b}. " + " | ".join(self.vocab.words[t] for t in self.ids[b, : int(n)])
                    for b, n in enumerate(self.lengths)))
        self.writer.flush()


def describe(record: dict) -> str | None:
    """One line naming an imported DAMSM (for protocols), or None for one trained here."""
    imported = record.get("imported")
    if not imported:
        return None
    return (f"the official AttnGAN DAMSM ({imported['text_encoder']['file']}, {imported['image_encoder']['file']}, "
            f"image resize align_corners={record['encoder_config'].get('damsm_align_corners', False)})")


def load(folder, config, index):
    """The DAMSM stored in ``folder`` → (vocabulary, build) with ``build()`` → (text, image) encoders with
    the stored weights (call it inside the strategy scope). Checks they were trained on this data set; an
    imported official DAMSM (``official.py``) is checked against the data set's official vocabulary."""
    from absl import logging


    text_path, image_path, complete_path = paths(folder)
    with open(complete_path, encoding="utf-8") as file:
        record = json.load(file)
    config = dict(config, **record.get("encoder_config", {}))  # the widths it was trained with
    source = describe(record)
    if source is None:
        check_fingerprint(folder, index)
    elif record.get("dataset") not in (None, index.name):
        logging.warning("The DAMSM in %s was imported for the data set %r, this run reads %r: word ids may not match.",
                        folder, record.get("dataset"), index.name)
    vocab = vocabulary(folder, index)
    if source is not None and index.vocabulary_words and list(index.vocabulary_words) != vocab.words:
        from t2igan.errors import UserError

        raise UserError(f"The DAMSM in {folder} reads the word ids of another captions.pickle than this data set's: "
                        "convert it again with this data set's captions.pickle.")

    def build():
        text, image = build_encoders(config, len(vocab))
        text.load_weights(text_path)
        image.load_weights(image_path)
        text.source = image.source = source  # protocols name an imported DAMSM
        return text, image

    return vocab, build


def pretrain_for_run(strategy, run, config: dict, index, data_root: str) -> None:
    """(Re)train the run's DAMSM text and image encoders into ``run.text_encoder`` (``pretrain_DAMSM.py``)."""
    from t2igan.cli import fit_verbosity
    from t2igan.training.harness import image_array

    report = pretrain(strategy, run.text_encoder, run.logs, config, index,
                      lambda split, size: image_array(index, config, split, data_root, size), verbose=fit_verbosity())
    run.update_metrics("pretrain", report)
    print(f"DAMSM: held-out caption→image top-1 {report['best_val_retrieval_top1']:.3f} "
          f"(epoch {report['best_epoch']}, kept); saved in {run.text_encoder}")


def run_folder(run, config: dict) -> str:
    """Where the run's DAMSM lives: ``--set damsm_dir=FOLDER`` reuses one trained elsewhere (e.g. by
    chapter 3), otherwise the run's own ``text_encoder`` folder."""
    from t2igan.errors import UserError

    folder = config.get("damsm_dir") or run.text_encoder
    if config.get("damsm_dir") and not os.path.isdir(folder):
        raise UserError(f"damsm_dir: {folder} does not exist. Point it at a run's text_encoder folder, "
                        "e.g. runs/ch3-shapes-course/text_encoder, or leave it empty to pretrain one.")
    return folder


def for_run(run, config: dict, index, data_root: str, strategy=None):
    """The run's DAMSM as (vocabulary, build → (text, image) encoders); pretrains it first when absent
    (training only: ``strategy`` given)."""
    from absl import logging

    from t2igan.errors import UserError
    from t2igan.training.harness import chapter_number

    folder = run_folder(run, config)
    if not is_complete(folder):
        if strategy is None or folder != run.text_encoder:
            raise UserError(f"No pretrained DAMSM in {folder}. Train first: "
                            f"make chapter{chapter_number(run.chapter)}-train RUN_DIR={run.path}")
        logging.info("No pretrained DAMSM in %s: pretraining it first.", folder)
        pretrain_for_run(strategy, run, config, index, data_root)
    return load(folder, config, index)
