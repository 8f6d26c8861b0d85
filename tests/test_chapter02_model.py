"""Chapter 2 (StackGAN-v1, StackGAN++) networks and losses: parameter counts, conditioning augmentation and
its KL, the joint conditional/unconditional D loss, colour consistency. Kept out of chapter 2 student copies
(they pin the lines of its graded tasks)."""

import numpy as np
import pytest
import tensorflow as tf

from chapters.ch2_stackgan import model
from chapters.ch2_stackgan import profiles
from chapters.ch2_stackgan import stages  # noqa: E402


def trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.trainable_variables)


def non_trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.non_trainable_variables)


def test_stackgan_plus_plus_paper_parameter_counts_match_the_official_code(monkeypatch):
    """Reference sheet §5.2–5.3 (measured on the official PyTorch classes): G 21,239,696; D64 5,723,906;
    D128 18,834,178; D256 71,269,122. Keras also lists the BatchNorm moving statistics, which PyTorch keeps
    as buffers: they are the non-trainable counts (G 71,104; D 2,816 / 5,888 / 12,032), excluded here."""
    for module in (stages, model):  # counting needs no orthogonal init (its QR decompositions take ~20 s)
        monkeypatch.setattr(module, "orthogonal", tf.keras.initializers.Zeros)
    paper = profiles.PROFILES["paper"]
    generator = model.TreeGenerator(paper["text_dim"], paper["noise_dim"], paper["condition_dim"],
                                    paper["generator_width"], paper["stages"], paper["base_size"], paper["residual_blocks"])
    images, mu, logvar = generator([tf.zeros((1, 100)), tf.zeros((1, 1024))])
    assert [tuple(x.shape) for x in images] == [(1, 64, 64, 3), (1, 128, 128, 3), (1, 256, 256, 3)]
    assert trainable(generator) == 21_239_696 and non_trainable(generator) == 71_104
    for size, (count, statistics) in {64: (5_723_906, 2_816), 128: (18_834_178, 5_888), 256: (71_269_122, 12_032)}.items():
        discriminator = stages.StageDiscriminator(size, paper["discriminator_width"], paper["condition_dim"])
        conditional, unconditional = discriminator([tf.zeros((2, size, size, 3)), tf.zeros((2, 128))])
        assert conditional.shape == (2,) and unconditional.shape == (2,)
        assert trainable(discriminator) == count and non_trainable(discriminator) == statistics, size


def test_stackgan_v1_paper_parameter_counts_match_the_reference():
    """Reference sheet §4.3–4.4 (counted from the TF 0.12 code): stage I G 14,264,192 / D 4,029,824;
    stage II G 26,290,080 / D 48,603,520 (BN moving statistics excluded)."""
    stage_one = model.StageOneGenerator(1024, 100, 128, 128, 64)
    (coarse,), _, _ = stage_one([tf.zeros((1, 100)), tf.zeros((1, 1024))])
    d_one = model.stage_one_discriminator(1024, 128, 64, 64)
    d_one([tf.zeros((2, 64, 64, 3)), tf.zeros((2, 1024))])
    stage_two = model.StageTwoGenerator(1024, 128, 128, 64, 256, 4)
    (fine,), _, _ = stage_two([coarse, tf.zeros((1, 1024))])
    d_two = model.StageTwoDiscriminator(1024, 128, 64, 256)
    d_two([tf.zeros((2, 256, 256, 3)), tf.zeros((2, 1024))])
    assert coarse.shape == (1, 64, 64, 3) and fine.shape == (1, 256, 256, 3)
    assert [trainable(n) for n in (stage_one, d_one, stage_two, d_two)] == [14_264_192, 4_029_824, 26_290_080, 48_603_520]
    assert [non_trainable(n) for n in (stage_one, d_one, stage_two, d_two)] == [39_168, 4_352, 11_712, 13_568]


def test_conditioning_augmentation_and_kl():
    rng = np.random.default_rng(0)
    text = tf.constant(rng.standard_normal((3, 12)), tf.float32)
    epsilon = tf.constant(rng.standard_normal((3, 4)), tf.float32)
    ca = stages.ConditioningAugmentation(4, "v2")
    c, mu, logvar = ca(text, noise=epsilon)
    h = ca.fc(text).numpy()  # Linear(D → 4c) → GLU → [μ, logvar]
    gated = h[:, :8] / (1 + np.exp(-h[:, 8:]))
    np.testing.assert_allclose(mu.numpy(), gated[:, :4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvar.numpy(), gated[:, 4:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.numpy(), gated[:, :4] + np.exp(0.5 * gated[:, 4:]) * epsilon.numpy(), rtol=1e-5, atol=1e-6)
    # KL(N(μ, σ²) ‖ N(0, 1)) averaged over dimensions; zero exactly at μ = 0, σ = 1.
    mu_, logvar_ = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    expected = np.mean(0.5 * (np.exp(logvar_) + mu_**2 - 1 - logvar_), axis=1)
    np.testing.assert_allclose(stages.kl_loss(tf.constant(mu_), tf.constant(logvar_)).numpy(), expected, rtol=1e-5)
    assert float(tf.reduce_max(tf.abs(stages.kl_loss(tf.zeros((2, 4)), tf.zeros((2, 4)))))) == 0.0
    # v1: LeakyReLU then [μ, log σ]; logvar returned as 2·log σ.
    ca_v1 = stages.ConditioningAugmentation(4, "v1")
    _, mu1, logvar1 = ca_v1(text, noise=epsilon)
    h1 = ca_v1.fc(text).numpy()
    h1 = np.where(h1 > 0, h1, 0.2 * h1)
    np.testing.assert_allclose(mu1.numpy(), h1[:, :4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvar1.numpy(), 2 * h1[:, 4:], rtol=1e-5, atol=1e-6)


class FixedStage(tf.keras.Model):
    """A stage D whose logits are known: conditional = mean(x) + mean(μ), unconditional = 2·mean(x)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs, training=False):
        images, condition = inputs
        mean = tf.reduce_mean(images, axis=[1, 2, 3])
        return self.scale * (mean + tf.reduce_mean(condition, axis=1)), self.scale * 2.0 * mean


def test_stackgan_plus_plus_discriminator_loss_follows_the_official_terms():
    """L_D = real (cond 1, uncond 1) + wrong (cond 0, uncond **1**) + fake (cond 0, uncond 0), plain sum."""
    gan = model.StackGanPlusPlus.__new__(model.StackGanPlusPlus)
    gan.uncond_weight = 1.0
    d = FixedStage()
    real, wrong, fake = (np.full((2, 8, 8, 3), v, np.float32) for v in (0.3, -0.2, 0.1))
    mu = np.full((2, 4), 0.05, np.float32)
    per_example, *_ = model.StackGanPlusPlus.discriminator_loss(gan, d, real, wrong, fake, mu)
    softplus = lambda x: np.log1p(np.exp(x))  # BCE(l, 1) = softplus(−l); BCE(l, 0) = softplus(l)
    expected = (softplus(-0.35) + softplus(-0.6) + softplus(-0.15) + softplus(0.4) + softplus(0.15) + softplus(0.2))
    np.testing.assert_allclose(per_example.numpy(), [expected] * 2, rtol=1e-5)
    gan.uncond_weight = 0.0  # without the unconditional loss: real + ½(wrong + fake)
    per_example, *_ = model.StackGanPlusPlus.discriminator_loss(gan, d, real, wrong, fake, mu)
    np.testing.assert_allclose(per_example.numpy(), [softplus(-0.35) + 0.5 * (softplus(-0.15) + softplus(0.15))] * 2, rtol=1e-5)


def test_colour_consistency_is_zero_for_equal_statistics_and_positive_otherwise():
    gan = model.StackGanPlusPlus.__new__(model.StackGanPlusPlus)
    gan.colour_weight = 50.0
    rng = np.random.default_rng(1)
    small = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    same = tf.image.resize(small, [16, 16], "nearest")  # same pixels, repeated: same mean and covariance
    assert float(tf.reduce_max(gan.colour_consistency([small, same]))) < 1e-5
    assert float(tf.reduce_min(gan.colour_consistency([small, same + 0.5]))) > 1.0


def triangle_downsample_matrix(source, factor):
    """NumPy from the formula: an antialiased bilinear downsample by an integer factor is a triangle filter
    stretched by that factor (2: [1, 3, 3, 1] / 8), centred on each output pixel, renormalised at the borders."""
    offsets = np.arange(2 * factor) - factor + 0.5  # input pixel centres around the output centre
    weights = 1.0 - np.abs(offsets) / factor
    matrix = np.zeros((source // factor, source))
    for row in range(source // factor):
        for offset, weight in zip(range(row * factor - factor // 2, row * factor + factor + factor // 2), weights):
            if 0 <= offset < source:
                matrix[row, offset] = weight
    return matrix / matrix.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("source,target", [(64, 32), (64, 16), (32, 8)])
def test_stage_resize_is_the_antialiased_triangle_filter_and_compiles_with_xla(source, target):
    """The real image at each stage's size: the formula, TensorFlow's antialiased resize, and the same under XLA
    (which has no kernel for that resize's own op, so ``--jit_compile`` once failed in chapters 2 and 3)."""
    images = np.random.default_rng(0).uniform(-1, 1, (2, source, source, 3)).astype(np.float32)
    matrix = triangle_downsample_matrix(source, source // target)
    expected = np.einsum("ih,bhwc,jw->bijc", matrix, images, matrix)
    eager = model.antialiased_resize(tf.constant(images), target).numpy()
    compiled = tf.function(lambda x: model.antialiased_resize(x, target), jit_compile=True)(tf.constant(images)).numpy()
    reference = tf.image.resize(images, [target, target], "bilinear", antialias=True).numpy()
    np.testing.assert_allclose(eager, expected, atol=1e-6)
    np.testing.assert_allclose(compiled, expected, atol=1e-6)
    np.testing.assert_allclose(reference, expected, atol=1e-6)
