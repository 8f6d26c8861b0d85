"""Reed's char-CNN-RNN text encoder and its DS-SJE pretraining (shared by chapters 1 and 2).

Reed et al., "Learning Deep Representations of Fine-Grained Visual Descriptions", CVPR 2016.
GAN-INT-CLS (chapter 1) and both StackGANs (chapter 2) condition on the 1024-d
caption embeddings of this encoder, precomputed once: the GANs never train it.

* :class:`CharCnnRnn` — characters → φ(t);
* :class:`ImageEncoder`, :func:`ds_sje_loss`, :class:`JointEmbedding` — the
  symmetric structured joint embedding used to pretrain it;
* :func:`pretrain` — trains φ(t) for a run and stores ``text_encoder/``:
  weights, vocabulary, every caption's embedding (``embeddings-{train,test}.npy``)
  and ``complete.json`` (written last; its presence means "usable").
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras import layers

from t2igan.data.records import caption_fingerprint, check_fingerprint
from t2igan.layers import same_class
from t2igan.training.gan import ConditionalGAN
from t2igan.training.pretrain import pretrain_encoders

LEAK = 0.2


# ---------------------------------------------------------------------------
# The encoder and its joint-embedding training
# ---------------------------------------------------------------------------
class CharCnnRnn(keras.Model):
    """Characters → 1024-d caption embedding φ(t).

    one-hot chars (L × 70) → Conv1D(k4)+ReLU → MaxPool(3) → Conv1D(k4)+ReLU →
    MaxPool(3) → Conv1D(k4)+ReLU → GRU over the remaining steps → mean of the
    hidden states → Linear → φ(t). At the paper widths (384, 512, 512; GRU 512;
    1024 out; L = 201 → 18 GRU steps) this has Reed's 4,045,184 parameters.
    Keras' GRU with ``reset_after=True`` has the same six matrices and six bias
    vectors as Reed's FixedGRU; it applies the reset gate after the recurrent
    product (the cuDNN form).
    """

    def __init__(self, alphabet_depth=70, conv_widths=(384, 512, 512), rnn_width=512, embedding_dim=1024, **kwargs):
        super().__init__(**kwargs)
        self.alphabet_depth = alphabet_depth
        self.convs = [layers.Conv1D(width, 4, activation="relu") for width in conv_widths]
        self.pools = [layers.MaxPooling1D(3, 3), layers.MaxPooling1D(3, 3)]
        self.rnn = layers.GRU(rnn_width, return_sequences=True, reset_after=True)
        self.project = layers.Dense(embedding_dim)

    def call(self, char_ids, training=False):
        # Id 0 (outside the alphabet, or padding) becomes an all-zero row, as in Reed's loader.
        # BEGIN TASK char_cnn_rnn (CharCnnRnn.call)
        x = tf.one_hot(char_ids, self.alphabet_depth + 1)[..., 1:]
        x = self.pools[0](self.convs[0](x))
        x = self.pools[1](self.convs[1](x))
        x = self.convs[2](x)
        hidden = self.rnn(x, training=training)
        return self.project(tf.reduce_mean(hidden, axis=1))
        # END TASK char_cnn_rnn


class ImageEncoder(keras.Model):
    """The image side of the joint embedding.

    Reed et al. used fixed 1024-d GoogLeNet features; with no ImageNet network
    to download, a small CNN is trained jointly with the text encoder instead
    (documented in the README). Its output lives in the same space as φ(t). The last
    feature map is flattened, not averaged, so the embedding keeps *where* things are
    (captions state positions).
    """

    def __init__(self, embedding_dim=1024, widths=(32, 64, 128, 256), **kwargs):
        super().__init__(**kwargs)
        self.blocks = [layers.Conv2D(width, 4, strides=2, padding="same") for width in widths]
        self.norms = [layers.GroupNormalization(groups=8) for _ in widths]
        self.flatten = layers.Flatten()
        self.project = layers.Dense(embedding_dim)

    def call(self, images, training=False):
        x = images
        for conv, norm in zip(self.blocks, self.norms):
            x = tf.nn.leaky_relu(norm(conv(x)), LEAK)
        return self.project(self.flatten(x))


def ds_sje_loss(image_features, text_features, class_ids, margin=1.0):
    """Symmetric structured joint embedding loss (DS-SJE, Reed et al. CVPR 2016).

    Compatibility F(v, t) = ⟨θ(v), φ(t)⟩. For each matching pair (i, i) and each
    other pair (i, j) of a *different class*, a hinge max(0, margin + F(v_i, t_j) − F(v_i, t_i)),
    in both directions (image → text and text → image), summed and divided by B²
    as in ``train_sje_hybrid.lua``. Returns one value per example (for replica-correct averaging).

    ``image_features`` θ(v) (B, E), ``text_features`` φ(t) (B, E), ``class_ids`` (B,) int. "Same class" is
    :func:`t2igan.layers.same_class`: an example of unknown class (−1) shares a class with no other example
    (so every other example is a negative for it), and an example is never its own negative. Example i's
    value is (Σ_j image → text hinge of image i + Σ_j text → image hinge of caption i) / B:

        ℓ_i = (1/B) · Σ_{j: class_j ≠ class_i} [max(0, margin + F(v_i, t_j) − F(v_i, t_i))
                                               + max(0, margin + F(v_j, t_i) − F(v_i, t_i))]
    """
    # BEGIN TASK ds_sje (ds_sje_loss)
    scores = tf.matmul(image_features, text_features, transpose_b=True)  # (B_img, B_txt)
    matching = tf.linalg.diag_part(scores)
    different = tf.cast(~same_class(class_ids), scores.dtype)  # unknown class (−1): every other example
    image_to_text = tf.nn.relu(margin + scores - matching[:, None]) * different
    text_to_image = tf.nn.relu(margin + scores - matching[None, :]) * different
    batch = tf.cast(tf.shape(scores)[0], scores.dtype)
    return (tf.reduce_sum(image_to_text, axis=1) + tf.reduce_sum(text_to_image, axis=0)) / batch
    # END TASK ds_sje


class JointEmbedding(keras.Model):
    """Pretraining model for φ(t): text and image encoders trained with DS-SJE (``chapter1-pretrain``).

    ``wrong_pairs=True`` appends each batch's (wrong image, wrong caption) pairs to it — with the
    pipeline's ``hard_negatives``, near misses that only one attribute separates from their partners.
    """

    def __init__(self, text_encoder, image_encoder, wrong_pairs=False, **kwargs):
        super().__init__(**kwargs)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.wrong_pairs = wrong_pairs
        self.loss_tracker = keras.metrics.Mean(name="sje_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="retrieval_top1")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _scores(self, batch, training):
        image_features = self.image_encoder(batch["image"], training=training)
        text_features = self.text_encoder(batch["caption_ids"], training=training)
        return image_features, text_features

    @staticmethod
    def retrieval_accuracy(image_features, text_features, class_ids):
        """Caption → image top-1 within the batch; an image of the caption's class counts as a hit (of unknown
        class: only its own image). Caption i retrieves the image j of the highest F(v_j, t_i); returns (B,) float32,
        1 where that image is of caption i's class (:func:`t2igan.layers.same_class`), else 0."""
        # BEGIN TASK ds_sje (JointEmbedding.retrieval_accuracy)
        best = tf.argmax(tf.matmul(text_features, image_features, transpose_b=True), axis=1, output_type=tf.int32)
        return tf.cast(tf.gather(same_class(class_ids), best, axis=1, batch_dims=1), tf.float32)
        # END TASK ds_sje

    def train_step(self, batch):
        if self.wrong_pairs:
            batch = {key: tf.concat([batch[key], batch["wrong_" + key]], axis=0)
                     for key in ("image", "caption_ids", "class_id")}
        with tf.GradientTape() as tape:
            image_features, text_features = self._scores(batch, training=True)
            per_example = ds_sje_loss(image_features, text_features, batch["class_id"])
            loss = ConditionalGAN.average(per_example)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(per_example)
        self.accuracy_tracker.update_state(self.retrieval_accuracy(image_features, text_features, batch["class_id"]))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, batch):
        image_features, text_features = self._scores(batch, training=False)
        self.loss_tracker.update_state(ds_sje_loss(image_features, text_features, batch["class_id"]))
        self.accuracy_tracker.update_state(self.retrieval_accuracy(image_features, text_features, batch["class_id"]))
        return {m.name: m.result() for m in self.metrics}



# ---------------------------------------------------------------------------
# Pretraining and the stored embeddings of a run
# ---------------------------------------------------------------------------
def character_codec(config):
    from t2igan.text import CharacterCodec

    return CharacterCodec(doc_length=config["doc_length"])


def build_text_encoder(config) -> CharCnnRnn:
    encoder = CharCnnRnn(conv_widths=config["text_conv_widths"], rnn_width=config["text_rnn_width"],
                         embedding_dim=config["text_dim"])
    encoder(tf.zeros((1, config["doc_length"]), tf.int32))
    return encoder


def char_table(examples, codec):
    from t2igan.data.pipeline import caption_tables

    def encode(caption):
        ids, _ = codec.encode(caption)
        return ids, int(np.count_nonzero(ids)) or 1

    return caption_tables(examples, encode, codec.doc_length)


def is_complete(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, "complete.json"))


def stored_scale(folder: str) -> float:
    """The ``embedding_scale`` of a pretrained encoder (1 for encoders stored before it was recorded)."""
    with open(os.path.join(folder, "complete.json"), encoding="utf-8") as file:
        return float(json.load(file).get("embedding_scale", 1.0))


def load_embeddings(folder: str, split: str, normalise: bool = False) -> np.ndarray:
    """φ(t) of every caption of a split: (N, captions, D) float16 (× the stored scale if ``normalise``)."""
    values = np.load(os.path.join(folder, f"embeddings-{split}.npy"))
    return (values.astype(np.float32) * stored_scale(folder)).astype(np.float16) if normalise else values


def embed(text_encoder, table, batch_size=512) -> np.ndarray:
    """φ(t) of every caption: (N, C, D) float32 (unused caption slots stay 0)."""
    encode = tf.function(lambda ids: text_encoder(ids, training=False))
    flat = table.values.reshape(-1, table.values.shape[-1])
    out = np.concatenate([encode(flat[i : i + batch_size]).numpy() for i in range(0, len(flat), batch_size)])
    return out.reshape(table.values.shape[0], table.values.shape[1], -1)


def embedding_scale(train_embeddings, table) -> float:
    """The global factor that gives the training embeddings a root-mean-square of 1 per dimension.

    DS-SJE fixes only the *direction* of φ(t) (its hinge works on dot products with a free
    image-side scale); our encoders end up with tiny embeddings (RMS ≈ 0.03). A GAN that adds
    unit-variance noise to them (CA's ε in chapter 2) then barely sees the text. The factor is
    stored in ``complete.json``; a profile with ``normalise_text_embeddings`` multiplies every
    embedding by it (the same as choosing the first layer's initial scale), user captions too.
    """
    used = train_embeddings[table.counts[:, None] > np.arange(train_embeddings.shape[1])[None, :]]
    rms = float(np.sqrt(np.mean(np.square(used.astype(np.float64)))))
    return 1.0 / rms if rms > 0 else 1.0


def pretrain(strategy, folder: str, log_dir: str, config: dict, index, images, verbose=2) -> dict:
    """Train φ(t) with DS-SJE on the training split; embed every caption once (Reed precomputes them too).

    ``images(split)`` returns the uint8 image array of a split (the shared .npy cache).
    Returns the final metrics (also in ``folder/complete.json``).
    """
    from t2igan.data import negatives
    from t2igan.data.pipeline import make_dataset
    from t2igan.text import Vocabulary

    codec = character_codec(config)
    tables = {split: char_table(index.split(split), codec) for split in ("train", "test")}
    too_long = sum(len(c) > codec.doc_length for e in index.train for c in e.captions)
    if too_long:
        logging.warning("%d training captions are longer than %d characters; the encoder reads their start only.", too_long, codec.doc_length)
    class_ids = {split: np.array([e.class_id for e in index.split(split)], dtype=np.int32) for split in ("train", "test")}
    train_images, test_images = images("train"), images("test")
    batch_size = config["pretrain_batch_size"]
    steps = config["pretrain_steps_per_epoch"] or len(train_images) // batch_size
    hard = config.get("pretrain_hard_negatives", 0.0)
    dataset = make_dataset(train_images, class_ids["train"], tables["train"], global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           words_num=codec.doc_length, **negatives.dataset_options(index.train, hard))
    validation = make_dataset(test_images, class_ids["test"], tables["test"],
                              global_batch_size=min(batch_size, len(test_images)), image_size=config["image_size"],
                              augment=False, seed=12345, words_num=codec.doc_length, repeat=False)
    networks = {}

    def build():
        networks["text"] = text_encoder = build_text_encoder(config)
        image_encoder = ImageEncoder(config["text_dim"], config["image_encoder_widths"])
        joint = JointEmbedding(text_encoder, image_encoder, wrong_pairs=hard > 0)
        # Build eagerly inside the scope: lazy building inside a replica fails under tf.distribute.
        size = config["image_size"]
        image_encoder(tf.zeros((1, size, size, 3)))
        return joint

    def rmsprop():
        return keras.optimizers.RMSprop(keras.optimizers.schedules.ExponentialDecay(
            config["pretrain_learning_rate"], steps, config["pretrain_learning_rate_decay"], staircase=True))

    logging.info("Pretraining the char-CNN-RNN text encoder (DS-SJE): %d epochs × %d steps.", config["pretrain_epochs"], steps)
    _, history, _ = pretrain_encoders(strategy, build, rmsprop, dataset, validation, epochs=config["pretrain_epochs"],
                                      steps_per_epoch=steps, log_dir=os.path.join(log_dir, "pretrain"), verbose=verbose,
                                      jit_compile=config["pretrain_jit_compile"])
    text_encoder = networks["text"]
    os.makedirs(folder, exist_ok=True)
    text_encoder.save_weights(os.path.join(folder, "encoder.weights.h5"))
    Vocabulary.from_captions(c for e in index.train for c in e.captions).save(os.path.join(folder, "vocabulary.json"))
    embeddings = {split: embed(text_encoder, table) for split, table in tables.items()}
    scale = embedding_scale(embeddings["train"], tables["train"])
    for split, values in embeddings.items():
        np.save(os.path.join(folder, f"embeddings-{split}.npy"), values.astype(np.float16))
    report = {key: float(values[-1]) for key, values in history.history.items()}
    report["embedding_scale"] = scale
    report["data_fingerprint"] = caption_fingerprint(index)
    report["config"] = {key: config[key] for key in ("doc_length", "text_conv_widths", "text_rnn_width", "text_dim")}
    with open(os.path.join(folder, "complete.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)  # written last: its presence means the encoder is usable
    return {k: v for k, v in report.items() if k not in ("data_fingerprint", "config")}


def encode_user_caption(folder: str, config: dict, caption: str | None) -> np.ndarray:
    """φ(t) of a caption typed by a user, with the checks users need (× the stored scale when the
    profile sets ``normalise_text_embeddings``, as in training)."""
    from t2igan.errors import UserError
    from t2igan.text import Vocabulary, tokenize

    if caption is None or not caption.strip():
        raise UserError('The caption is empty. Pass one with TEXT="a small red circle in the top left".')
    codec = character_codec(config)
    if len(caption) > codec.doc_length:
        raise UserError(f"The caption has {len(caption)} characters; this model reads at most {codec.doc_length} "
                        f"(doc_length). Shorten it.")
    vocabulary = Vocabulary.load(os.path.join(folder, "vocabulary.json"))
    words = tokenize(caption)
    unknown = [w for w in words if w not in vocabulary.index]
    if not words or len(unknown) == len(words):
        raise UserError(f"None of the words of {caption!r} occur in the training captions; the model cannot draw it. "
                        f"Known words include: {', '.join(vocabulary.words[1:21])} …")
    if unknown:
        print(f"Words never seen in training (the encoder still reads their characters): {', '.join(unknown)}")
    encoder = build_text_encoder(config)
    encoder.load_weights(os.path.join(folder, "encoder.weights.h5"))
    scale = stored_scale(folder) if config.get("normalise_text_embeddings") else 1.0
    ids, _ = codec.encode(caption)
    return scale * encoder(ids[None], training=False).numpy()[0]


# ---------------------------------------------------------------------------
# The run's text encoder (chapters 1 and 2): pretrain when absent, the stored embeddings per split
# ---------------------------------------------------------------------------
def pretrain_for_run(strategy, run, config: dict, index, data_root: str) -> None:
    """(Re)train the run's φ(t) with DS-SJE into ``run.text_encoder`` and store every caption's embedding."""
    from t2igan.cli import fit_verbosity
    from t2igan.training.harness import image_array

    report = pretrain(strategy, run.text_encoder, run.logs, config, index,
                      lambda split: image_array(index, config, split, data_root), verbose=fit_verbosity())
    run.update_metrics("pretrain", report)
    print(f"Text encoder: held-out caption→image top-1 {report.get('val_retrieval_top1', float('nan')):.3f}; "
          f"saved in {run.text_encoder}")


def run_embeddings(run, config: dict, index, data_root: str, strategy=None) -> dict:
    """Reed's precomputed caption embeddings of the run, as ``TextTable`` s per split; pretrains φ(t) first
    when absent (training only: ``strategy`` given)."""
    from t2igan.data.pipeline import TextTable
    from t2igan.errors import UserError
    from t2igan.training.harness import chapter_number

    if not is_complete(run.text_encoder):
        if strategy is None:
            raise UserError(f"No pretrained text encoder in {run.text_encoder}. Train first: "
                            f"make chapter{chapter_number(run.chapter)}-train RUN_DIR={run.path}")
        logging.info("No pretrained text encoder in %s: pretraining it first.", run.text_encoder)
        pretrain_for_run(strategy, run, config, index, data_root)
    check_fingerprint(run.text_encoder, index)
    normalise = bool(config.get("normalise_text_embeddings"))
    tables = {}
    for split in ("train", "test"):
        values = load_embeddings(run.text_encoder, split, normalise)
        counts = np.array([max(1, min(len(e.captions), values.shape[1])) for e in index.split(split)], np.int32)
        tables[split] = TextTable(values, counts)
    return tables
