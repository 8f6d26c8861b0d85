"""Chapter 1 (GAN-INT-CLS) networks and losses: parameter counts against the official code, the DS-SJE loss by
hand, the GAN-CLS loss weights. Kept out of chapter 1 student copies (they pin the lines of its graded tasks)."""

import numpy as np
import pytest
import tensorflow as tf

from chapters.ch1_gan_int_cls import model
from chapters.ch1_gan_int_cls import profiles


def trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.trainable_variables)


def non_trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.non_trainable_variables)


def test_paper_parameter_counts_match_the_official_code():
    """Reference sheet §3.6: G 18,905,472 / D 4,030,080 without the conv biases Reed zeroes
    before every step (18,909,699 / 4,032,321 with them); BN running stats excluded
    (Keras lists them as non-trainable: G 8,448, D 4,608). Text encoder: 4,045,184."""
    paper = profiles.PROFILES["paper"]
    for conv_bias, (g_count, d_count) in {False: (18_905_472, 4_030_080), True: (18_909_699, 4_032_321)}.items():
        generator = model.Generator(paper["text_dim"], paper["noise_dim"], paper["projection_dim"],
                                    paper["generator_width"], paper["image_size"], conv_bias)
        discriminator = model.Discriminator(paper["text_dim"], paper["projection_dim"], paper["discriminator_width"],
                                            paper["image_size"], conv_bias)
        generator([tf.zeros((1, 100)), tf.zeros((1, 1024))])
        discriminator([tf.zeros((2, 64, 64, 3)), tf.zeros((2, 1024))])
        assert trainable(generator) == g_count and trainable(discriminator) == d_count
        assert non_trainable(generator) == 8_448 and non_trainable(discriminator) == 4_608
    encoder = model.CharCnnRnn(conv_widths=paper["text_conv_widths"], rnn_width=paper["text_rnn_width"],
                               embedding_dim=paper["text_dim"])
    assert encoder(tf.zeros((1, paper["doc_length"]), tf.int32)).shape == (1, 1024)
    assert trainable(encoder) == 4_045_184


def test_ds_sje_loss_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    images, texts = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    classes = np.array([0, 1, 1, 2])
    expected = np.zeros(4)
    for i in range(4):
        for j in range(4):
            if classes[i] == classes[j]:
                continue
            expected[i] += max(0.0, 1 + images[i] @ texts[j] - images[i] @ texts[i])  # image i vs wrong text j
            expected[j] += max(0.0, 1 + images[i] @ texts[j] - images[j] @ texts[j])  # text j vs wrong image i
    got = model.ds_sje_loss(tf.constant(images), tf.constant(texts), tf.constant(classes)).numpy()
    np.testing.assert_allclose(got, expected / 4, rtol=1e-6)


def test_discriminator_loss_weights_follow_the_official_code():
    """L_D = BCE(real,1) + 0.5·BCE(wrong,0) + 0.5·BCE(fake,0); checked through a D that outputs known logits."""

    class FixedDiscriminator(tf.keras.Model):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones")  # stays 1: the optimizers' rate is 0

        def call(self, inputs, training=False):
            images, _ = inputs
            return self.scale * tf.reduce_mean(images, axis=[1, 2, 3])  # the logit is the image's mean value

    generator = model.Generator(8, 4, 4, 4, 32)
    generator([tf.zeros((1, 4)), tf.zeros((1, 8))])
    discriminator = FixedDiscriminator()
    discriminator([tf.zeros((1, 32, 32, 3)), tf.zeros((1, 8))])
    gan = model.GanIntCls(generator, discriminator)
    gan.compile(tf.keras.optimizers.SGD(0.0), tf.keras.optimizers.SGD(0.0))
    real, wrong = np.full((2, 32, 32, 3), 0.3, np.float32), np.full((2, 32, 32, 3), -0.2, np.float32)
    batch = {"image": real, "wrong_image": wrong, "text_embedding": np.zeros((2, 8), np.float32),
             "wrong_text_embedding": np.ones((2, 8), np.float32), "noise": np.zeros((2, 3, 4), np.float32)}
    logs = gan.train_step(batch)
    fake_logit = float(tf.reduce_mean(generator([tf.zeros((2, 4)), tf.zeros((2, 8))], training=True)))
    softplus = lambda x: np.log1p(np.exp(x))
    expected = softplus(-0.3) + 0.5 * softplus(-0.2) + 0.5 * softplus(fake_logit)
    assert float(logs["d_loss"]) == pytest.approx(expected, rel=1e-4)
