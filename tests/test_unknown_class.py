"""One meaning of "unknown class" (class_id −1: COCO, a custom data set without classes.txt): each such
example is its own class, in every matching loss and in the pipeline's mismatched pairs, as the official
AttnGAN gives every COCO image its own id. Before, DAMSM, DS-SJE and the VLM treated −1 as one shared
class, masked every negative pair and trained on a loss of exactly 0."""

import os

import keras
import numpy as np
import tensorflow as tf

from chapters.ch1_gan_int_cls.char_cnn_rnn import JointEmbedding, ds_sje_loss
from chapters.ch3_attngan.damsm import matching_cross_entropy, sentence_loss
from chapters.ch5_vlmgan.model import negative_captions
from t2igan.layers import same_class

UNKNOWN = np.array([-1, -1, -1, -1], np.int32)


def test_same_class_treats_unknown_as_its_own_class():
    pairs = same_class(np.array([3, 3, -1, -1, 5], np.int32)).numpy()
    expected = np.eye(5, dtype=bool)
    expected[0, 1] = expected[1, 0] = True
    np.testing.assert_array_equal(pairs, expected)


def test_damsm_cross_entropy_of_unknown_classes_is_that_of_no_classes():
    scores = tf.constant(np.random.default_rng(0).normal(size=(4, 4)), tf.float32)
    unknown = [t.numpy() for t in matching_cross_entropy(scores, tf.constant(UNKNOWN))]
    no_classes = [t.numpy() for t in matching_cross_entropy(scores, None)]
    np.testing.assert_allclose(unknown, no_classes, rtol=1e-6)
    assert min(v.min() for v in unknown) > 0
    # one shared known class masks every negative: exactly the zero loss the unknown class used to give
    one_class = [t.numpy() for t in matching_cross_entropy(scores, tf.constant([7, 7, 7, 7]))]
    assert max(abs(v).max() for v in one_class) < 1e-6


def test_ds_sje_hinges_against_every_other_example_of_unknown_class():
    rng = np.random.default_rng(1)
    images, texts = (tf.constant(rng.normal(size=(4, 3)), tf.float32) for _ in range(2))
    unknown = ds_sje_loss(images, texts, tf.constant(UNKNOWN)).numpy()
    distinct = ds_sje_loss(images, texts, tf.constant([0, 1, 2, 3])).numpy()
    np.testing.assert_allclose(unknown, distinct, rtol=1e-6)
    assert unknown.sum() > 0
    accuracy = JointEmbedding.retrieval_accuracy(images, texts, tf.constant(UNKNOWN)).numpy()
    np.testing.assert_array_equal(accuracy, JointEmbedding.retrieval_accuracy(images, texts, tf.constant([0, 1, 2, 3])))


def test_vlm_negative_captions_avoid_only_the_example_itself_when_classes_are_unknown():
    chosen = negative_captions(tf.zeros((4, 4)), tf.constant(UNKNOWN), hard=False).numpy()
    assert all(c != i for i, c in enumerate(chosen))


def coco_mini_index(shared_data):
    from t2igan.data.loaders import load_dataset

    return load_dataset("coco", data_dir=os.path.join(shared_data, "coco-mini"))


def test_on_coco_mini_the_damsm_and_ds_sje_losses_are_positive_and_decrease(shared_data):
    """COCO has no classes (every class_id −1): the losses must be positive and training must lower them."""
    index = coco_mini_index(shared_data)
    classes = np.array([e.class_id for e in index.train], np.int32)
    assert (classes == -1).all()
    batch = tf.constant(classes[:8])
    rng = np.random.default_rng(0)
    image_features = tf.Variable(rng.normal(size=(8, 16)).astype(np.float32))
    text_features = tf.Variable(rng.normal(size=(8, 16)).astype(np.float32))
    optimizer = keras.optimizers.SGD(0.05)

    def losses():
        s0, s1 = sentence_loss(image_features, text_features, batch)
        return float(tf.reduce_mean(s0 + s1)), float(tf.reduce_mean(ds_sje_loss(image_features, text_features, batch)))

    first = losses()
    assert first[0] > 0 and first[1] > 0
    for _ in range(30):
        with tf.GradientTape() as tape:
            s0, s1 = sentence_loss(image_features, text_features, batch)
            loss = tf.reduce_mean(s0 + s1) + tf.reduce_mean(ds_sje_loss(image_features, text_features, batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, [image_features, text_features]),
                                      [image_features, text_features]))
    last = losses()
    assert last[0] < 0.8 * first[0] and last[1] < 0.8 * first[1], (first, last)


def test_a_split_of_one_class_is_named_in_a_warning(caplog):
    from t2igan.data.records import DatasetIndex, Example
    from t2igan.training.harness import warn_single_class

    examples = [Example(key=f"k{i}", image_path="x.png", captions=["a"], class_id=4) for i in range(3)]
    index = DatasetIndex(name="mine", root=".", train=examples, test=examples[:1])
    with caplog.at_level("WARNING"):
        warn_single_class(index)
    assert "Every train example of mine is of class 4" in caplog.text

