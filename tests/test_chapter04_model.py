"""Chapter 4 (DF-GAN, RAT-GAN) networks and losses: parameter counts against the official classes, the
MA-GP by hand, identity/zero-gate initialisation, the soft-threshold attention bounds, one training step
of each variant."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from chapters.ch4_dfgan_ratgan import model


def trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.trainable_variables)


def inputs(batch=1, noise_dim=100, sentence_dim=256):
    return [tf.zeros((batch, noise_dim)), tf.zeros((batch, sentence_dim))]


# ------------------------------------------------------------------ parameter counts
def test_dfgan_has_the_official_parameter_counts():
    """Official DF-GAN classes, measured (nf 32, 256 px): NetG 9,744,131; NetD used 6,421,830 = built 6,619,206 minus the
    three never-used fin == fout shortcut convs (3 × 65,792 = 197,376, not built here); NetC 295,936."""
    g = model.DfGanGenerator(base_width=32, image_size=256)
    assert g(inputs()).shape == (1, 256, 256, 3)
    assert g.widths == [256, 256, 256, 256, 128, 64, 32] and len(g.blocks) == 6
    assert trainable(g) == 9_744_131 and trainable(g.fc) == 413_696

    d = model.DfGanDiscriminator(base_width=32, image_size=256)
    images = tf.zeros((1, 256, 256, 3))
    assert d.features(images).shape == (1, 4, 4, 256)
    assert d([images, tf.zeros((1, 256))]).shape == (1,)
    head, trunk = trainable(d.head), trainable(d) - trainable(d.head)
    assert head == 295_936 and trunk == 6_421_830 and trainable(d) == 6_717_766
    assert trunk + 3 * (256 * 256 + 256) == 6_619_206  # the official built NetD


def test_ratgan_has_the_official_used_parameter_counts():
    """Official RAT-GAN classes (paper version), measured: nf 64 NetG used 32,057,098 (built 38,091,658); paper-version NetD + head used
    85,261,062 (built 113,574,663 − never-called block5 27,264,001 − block4's unused shortcut 1,049,600),
    attention head 34,671,745; HEAD (plain head) 78,280,326 with head 1,476,608."""
    g = model.RatGanGenerator(base_width=64, image_size=256)
    assert g(inputs()).shape == (1, 256, 256, 3)
    assert len(g.blocks) == 7 and trainable(g) == 32_057_098
    assert trainable(g) + 6_034_560 == 38_091_658  # + the official dead affines and projections
    assert trainable(g.controller) == 525_312  # W, U, one bias

    images, sentence = tf.zeros((1, 256, 256, 3)), tf.zeros((1, 256))
    d = model.RatGanDiscriminator(base_width=64, image_size=256)
    features = d.features(images)
    assert features.shape == (1, 8, 8, 1024)
    logits, attention = d.logits(features, sentence, return_attention=True)
    assert logits.shape == (1,) and attention.shape == (1, 8, 8)
    assert trainable(d) == 85_261_062 and trainable(d.head) == 34_671_745
    assert 113_574_663 - 27_264_001 - (1024 * 1024 + 1024) == 85_261_062

    plain = model.RatGanDiscriminator(base_width=64, image_size=256, head="plain")
    assert plain.features(images).shape == (1, 4, 4, 1024)
    plain([images, sentence])
    assert trainable(plain) == 78_280_326 and trainable(plain.head) == 1_476_608


def test_small_profiles_have_the_official_width_rules():
    assert model.dfgan_widths(4, 32) == [32, 16, 8, 4]  # 3 blocks: 4 → 8 → 16 → 32 px
    assert model.RatGanGenerator(8, 16, base_width=4, image_size=16, controller_units=16).widths == [32, 16, 8, 4]
    discriminator = model.RatGanDiscriminator(base_width=4, image_size=32, sentence_dim=16, head="plain")
    assert [b.shortcut is None for b in discriminator.blocks] == [False, False, True]  # 4→8, 8→16, 16→16 (4×4)
    for bad in (100, 4):
        with pytest.raises(ValueError):
            model.DfGanGenerator(image_size=bad)
    with pytest.raises(ValueError):
        model.RatGanDiscriminator(image_size=8)


# ------------------------------------------------------------------ initialisation
def test_torch_conv_is_initialised_like_pytorch():
    from t2igan.layers import torch_conv
    conv = torch_conv(64, 3, fan_in=27)
    conv(tf.zeros((1, 4, 4, 3)))
    bound = 1 / math.sqrt(27)  # kaiming_uniform(a=√5) = U(±1/√fan_in) for the weight, same for the bias
    for weight in (conv.kernel.numpy(), conv.bias.numpy()):
        assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.8 * bound


def test_affine_is_the_identity_at_init():
    affine = model.Affine(6, 5, 7)
    x = tf.random.normal((3, 4, 4, 6))
    out, gamma, beta = affine(x, tf.random.normal((3, 7)), return_modulation=True)
    np.testing.assert_allclose(gamma.numpy(), 1.0)
    np.testing.assert_allclose(beta.numpy(), 0.0)
    np.testing.assert_allclose(out.numpy(), x.numpy())
    assert trainable(affine) == 2 * (7 * 5 + 5 + 5 * 6 + 6)


def test_ratgan_block_starts_as_its_shortcut_and_dfgan_statistics_start_at_identity():
    block = model.FusionBlock(8, 4, 16, hidden=16, gated=True)
    x = tf.random.normal((2, 4, 4, 8))
    hidden = [tf.random.normal((2, 16)) for _ in range(4)]
    out, statistics = block(x, hidden)
    np.testing.assert_allclose(out.numpy(), block.shortcut(x).numpy(), rtol=1e-6, atol=1e-6)
    assert float(block.gate) == 0.0 and len(statistics) == 4
    same = model.FusionBlock(4, 4, 16, hidden=16, gated=True)
    assert same.shortcut is None
    np.testing.assert_array_equal(same(x[..., :4], hidden)[0].numpy(), x[..., :4].numpy())
    ungated = model.FusionBlock(4, 4, 16)  # DF-GAN'22: no gate, the residual counts from the start
    assert ungated.gate is None and not np.allclose(ungated(x[..., :4], hidden)[0].numpy(), x[..., :4].numpy())

    g = model.DfGanGenerator(noise_dim=8, sentence_dim=16, base_width=4, image_size=16, condition_on_noise=False)
    _, statistics = g(inputs(2, 8, 16), return_modulation=True)
    np.testing.assert_allclose(np.stack([s.numpy() for s in statistics]), [[1.0, 0.0, 0.0, 0.0]] * 8, atol=1e-6)


def test_soft_threshold_attention_is_a_distribution_within_a_factor_e():
    head = model.AttentionHead(4, 8, sentence_dim=16)
    features, sentence = tf.random.normal((3, 8, 8, 8)) * 10, tf.random.normal((3, 16)) * 10
    logits, maps = head(features, sentence, return_attention=True)
    assert logits.shape == (3,) and maps.shape == (3, 8, 8)
    maps = maps.numpy().reshape(3, 64)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    e = math.e
    assert maps.min() >= 1 / (1 + 63 * e) - 1e-7 and maps.max() <= e / (e + 63) + 1e-7
    assert (maps.max(-1) / maps.min(-1) <= e + 1e-4).all()


# ------------------------------------------------------------------ MA-GP
class LinearDiscriminator:
    """o = Σ w·x + v·s: ∂o/∂x = w and ∂o/∂s = v for every sample."""

    def __init__(self, w, v):
        self.w, self.v = tf.Variable(w, dtype=tf.float32), tf.Variable(v, dtype=tf.float32)

    def features(self, images, training=False):
        return images

    def logits(self, features, sentence, training=False):
        return tf.reduce_sum(features * self.w, [1, 2, 3]) + tf.reduce_sum(sentence * self.v, -1)


def test_magp_matches_the_closed_form_and_its_double_backprop():
    rng = np.random.default_rng(0)
    w, v = rng.normal(size=(2, 2, 3)) * 0.3, rng.normal(size=(5,)) * 0.3
    d = LinearDiscriminator(w, v)
    images = tf.constant(rng.normal(size=(4, 2, 2, 3)), tf.float32)
    sentence = tf.constant(rng.normal(size=(4, 5)), tf.float32)
    squared = np.sum(w**2) + np.sum(v**2)
    with tf.GradientTape() as tape:
        penalty, logits = model.matching_aware_penalty(d, images, sentence, weight=2.0, power=6.0)
        loss = tf.reduce_mean(penalty)
    np.testing.assert_allclose(penalty.numpy(), [2 * squared**3] * 4, rtol=1e-5)
    np.testing.assert_allclose(logits.numpy(), d.logits(images, sentence).numpy(), rtol=1e-6)
    # d/dw 2·(‖w‖² + ‖v‖²)³ = 12·(‖w‖² + ‖v‖²)²·w: the outer tape differentiates through the gradient.
    grad_w, grad_v = tape.gradient(loss, [d.w, d.v])
    np.testing.assert_allclose(grad_w.numpy(), 12 * squared**2 * w, rtol=1e-4)
    np.testing.assert_allclose(grad_v.numpy(), 12 * squared**2 * v, rtol=1e-4)
    # The norm of the concatenated gradient, not the sum of two norms; no NaN at a zero gradient.
    zero = model.magp(tf.zeros((2, 3, 3, 3)), tf.zeros((2, 4)))
    np.testing.assert_array_equal(zero.numpy(), 0.0)


def test_magp_of_the_dfgan_discriminator_matches_an_independent_gradient():
    d = model.DfGanDiscriminator(base_width=4, image_size=16, sentence_dim=8)
    images, sentence = tf.random.normal((3, 16, 16, 3)), tf.random.normal((3, 8))
    d([images, sentence])
    for block in d.blocks:  # open the residual gates so the whole trunk matters
        block.gate.assign(0.7)
    penalty, logits = model.matching_aware_penalty(d, images, sentence, weight=2.0, power=6.0)
    x, s = tf.Variable(images), tf.Variable(sentence)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(d([x, s]))
    gx, gs = (g.numpy().astype(np.float64) for g in tape.gradient(total, [x, s]))
    norm = np.sqrt(np.sum(gx.reshape(3, -1) ** 2, -1) + np.sum(gs**2, -1))
    np.testing.assert_allclose(penalty.numpy(), 2.0 * norm**6, rtol=1e-4)
    np.testing.assert_allclose(logits.numpy(), d([images, sentence]).numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ training steps
class FakeTextEncoder(keras.Model):
    def __init__(self, dim=16, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(20, dim)

    def call(self, inputs, training=False):
        ids, lengths = inputs
        words = self.embedding(ids)
        mask = tf.sequence_mask(lengths, tf.shape(ids)[1], tf.float32)[..., None]
        return words, tf.reduce_sum(words * mask, 1) / tf.reduce_sum(mask, 1)


def tiny_batch(batch=4, size=16, noise_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([6, 4, 3, 5][:batch], np.int32)
    ids = rng.integers(1, 20, (batch, 6)).astype(np.int32)
    ids[np.arange(6)[None, :] >= lengths[:, None]] = 0
    return {"image": tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32),
            "caption_ids": tf.constant(ids), "caption_length": tf.constant(lengths),
            "class_id": tf.constant(np.arange(batch), tf.int32),
            "noise": tf.constant(rng.normal(size=(batch, 1, noise_dim)), tf.float32)}


def snapshot(network):
    return [v.numpy().copy() for v in network.weights]


def changed(before, network):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, network.weights))


VARIANTS = {"dfgan": dict(mismatch="roll", penalty_step="joint"),
            "ratgan": dict(mismatch="shift", penalty_step="separate"),
            "ratgan_plain": dict(mismatch="shift", penalty_step="separate")}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_stage_train_step(variant):
    text = FakeTextEncoder()
    text([tf.ones((2, 6), tf.int32), tf.constant([6, 3])])
    if variant == "dfgan":
        def make_generator():
            g = model.DfGanGenerator(noise_dim=8, sentence_dim=16, base_width=4, image_size=16)
            g(inputs(2, 8, 16))
            return g
        d = model.DfGanDiscriminator(base_width=4, image_size=16, sentence_dim=16)
    else:
        def make_generator():
            g = model.RatGanGenerator(noise_dim=8, sentence_dim=16, base_width=4, image_size=16,
                                      controller_units=16)
            g(inputs(2, 8, 16))
            return g
        d = model.RatGanDiscriminator(base_width=4, image_size=16, sentence_dim=16,
                                      head="plain" if variant == "ratgan_plain" else "attention")
    g = make_generator()
    d([tf.zeros((2, 16, 16, 3)), tf.zeros((2, 16))])
    gan = model.OneStageGan(g, d, text, ema_decay=0.0 if variant == "ratgan_plain" else 0.9, **VARIANTS[variant])
    gan.compile(keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9, epsilon=1e-8),
                keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.9, epsilon=1e-8))
    gan.build_optimizers()
    gan.enable_ema(make_generator)  # no-op at ema_decay 0
    before = {"g": snapshot(g), "d": snapshot(d), "text": snapshot(text), "ema": snapshot(gan.sampling_generator)}
    batch = tiny_batch()
    if variant == "dfgan":  # through the training loop every chapter uses (graph mode)
        from t2igan.training.loop import train

        history = train(gan, tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=2, verbose=0)
        logs = {k: v[-1] for k, v in history.history.items()}
    elif variant == "ratgan":  # a traced step (graph mode)
        step = tf.function(gan.train_step)
        step(batch)
        logs = step(tiny_batch(seed=1))
    else:  # eagerly, one step, to keep the file fast
        logs = gan.train_step(batch)
    steps = 1 if variant == "ratgan_plain" else 2
    assert set(model.OneStageGan.metric_groups) <= set(logs)
    for name in model.OneStageGan.metric_groups:
        assert np.isfinite(float(logs[name])), name
    assert changed(before["g"], g) and changed(before["d"], d) and changed(before["ema"], gan.sampling_generator)
    assert not changed(before["text"], text)
    d_steps_per_iteration = 1 if VARIANTS[variant]["penalty_step"] == "joint" else 2
    assert int(gan.discriminator_optimizer.iterations) == d_steps_per_iteration * steps
    assert int(gan.generator_optimizer.iterations) == steps
    # the hinge generator loss is −D(x̂, s) per example (DF-GAN Eq. 2): its sign pinned against D itself
    fake, sentence = tf.random.uniform((2, 16, 16, 3), -1.0, 1.0, seed=3), tf.random.normal((2, 16), seed=4)
    loss, _ = gan.generator_loss(fake, sentence, batch)
    np.testing.assert_allclose(loss.numpy(), -np.reshape(d([fake, sentence], training=True).numpy(), loss.shape),
                               rtol=1e-5, atol=1e-6)

    images, statistics = gan.generate(tf.random.normal((4, 8)), batch["caption_ids"], batch["caption_length"],
                                      return_modulation=True)
    assert images.shape == (4, 16, 16, 3) and statistics[0].shape == (4,)
    assert len(statistics) == 4 * len(g.blocks) == (8 if variant == "dfgan" else 12)
    if variant == "ratgan":
        maps = gan.discriminator_attention(batch["image"], batch["caption_ids"], batch["caption_length"])
        assert maps.shape == (4, 8, 8)
        np.testing.assert_allclose(tf.reduce_sum(maps, [1, 2]).numpy(), 1.0, rtol=1e-5)
    else:
        with pytest.raises(ValueError):
            gan.discriminator_attention(batch["image"], batch["caption_ids"], batch["caption_length"])
