"""Chapter 3 (AttnGAN + DAMSM) networks and losses: parameter counts, DAMSM losses by hand, attention
masking (and the official mask bug), the text encoder's padding behaviour, one training step each."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from chapters.ch3_attngan import model
from chapters.ch2_stackgan import stages  # noqa: E402


def trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.trainable_variables)


def non_trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.non_trainable_variables)


def softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softplus(x):  # BCE(l, 1) = softplus(−l); BCE(l, 0) = softplus(l)
    return np.log1p(np.exp(x))


# ------------------------------------------------------------------ parameter counts
def test_damsm_encoders_have_the_official_parameter_counts():
    """Sheet §6.2–6.3 [measured]: text encoder 2,075,320 at vocabulary 5,450 (embedding 1,635,000 + LSTM
    440,320: PyTorch's two bias vectors per direction); image encoder trainable 721,152."""
    text = model.DamsmTextEncoder(5450)
    words, sentence = text(tf.ones((1, 18), tf.int32))
    assert words.shape == (1, 18, 256) and sentence.shape == (1, 256)
    assert trainable(text) == 2_075_320 and trainable(text.embedding) == 1_635_000
    assert sum(int(np.prod(v.shape)) for v in text.lstm_variables) == 440_320

    image = model.DamsmImageEncoder("inception", weights=None)
    regions, global_features = image(tf.zeros((1, 64, 64, 3)))  # resized to 299 inside
    assert regions.shape == (1, 17, 17, 256) and global_features.shape == (1, 256)
    assert trainable(image) == 721_152

    # The official BN quirk: the frozen Inception's BN uses and updates batch statistics in training mode,
    # yet only the projections are trainable.
    quirk = model.DamsmImageEncoder("inception", weights=None, backbone_batch_statistics=True)
    quirk(tf.zeros((1, 75, 75, 3)))
    assert trainable(quirk) == 721_152
    bn = next(l for l in quirk.backbone.layers if isinstance(l, keras.layers.BatchNormalization))
    before = bn.moving_mean.numpy().copy()
    quirk(tf.random.uniform((2, 75, 75, 3), -1, 1), training=True)
    assert not np.allclose(before, bn.moving_mean.numpy())


def test_generator_and_discriminators_have_the_official_parameter_counts(monkeypatch):
    """Sheet §6.6–6.7 [measured]: G birds 7,084,592 (ngf 32, R 2), COCO 13,811,456 (ngf 48, R 3);
    D64/D128/D256 birds 6,313,730 / 19,424,002 / 71,858,946. BN moving statistics (Keras non-trainable,
    PyTorch buffers) excluded: G birds +36,480; D +2,816 / +5,888 / +12,032 (sheet §8 item 11)."""
    # Counting needs no orthogonal initialisation, whose QR decompositions of D256's kernels take ~20 s.
    for module in (stages, model):
        monkeypatch.setattr(module, "orthogonal", keras.initializers.Zeros)
    inputs = [tf.zeros((1, 100)), tf.zeros((1, 256)), tf.zeros((1, 18, 256)), tf.ones((1, 18), tf.bool)]
    birds = model.AttnGanGenerator(100, 100, base_width=32, stages=3, base_size=64, residual_blocks=2)
    images, maps, mu, logvar = birds(inputs)
    assert [tuple(x.shape) for x in images] == [(1, 64, 64, 3), (1, 128, 128, 3), (1, 256, 256, 3)]
    assert [tuple(m.shape) for m in maps] == [(1, 18, 64, 64), (1, 18, 128, 128)]
    assert mu.shape == (1, 100) and logvar.shape == (1, 100)
    assert trainable(birds) == 7_084_592 and non_trainable(birds) == 36_480
    assert trainable(birds.ca) == 102_800 and trainable(birds.attentions[0]) == 8_192
    coco = model.AttnGanGenerator(100, 100, base_width=48, stages=3, base_size=64, residual_blocks=3)
    coco(inputs)
    assert trainable(coco) == 13_811_456

    discriminators = model.Discriminators([64, 128, 256], base_width=64, condition_dim=256)
    outputs = discriminators([[tf.zeros((1, s, s, 3)) for s in (64, 128, 256)], tf.zeros((1, 256))])
    assert all(c.shape == (1,) and u.shape == (1,) for c, u in outputs)
    counts = [(trainable(d), non_trainable(d)) for d in discriminators.stages]
    assert counts == [(6_313_730, 2_816), (19_424_002, 5_888), (71_858_946, 12_032)]


def test_generator_sizes_generalise_to_small_profiles():
    g = model.AttnGanGenerator(8, 8, base_width=8, stages=2, base_size=16, residual_blocks=1)
    images, maps, _, _ = g([tf.zeros((2, 8)), tf.zeros((2, 16)), tf.zeros((2, 5, 16)), tf.ones((2, 5), tf.bool)])
    assert [tuple(x.shape) for x in images] == [(2, 16, 16, 3), (2, 32, 32, 3)]
    assert [tuple(m.shape) for m in maps] == [(2, 5, 16, 16)] and g.start_width == 32


# ------------------------------------------------------------------ DAMSM losses by hand
def test_damsm_losses_match_a_hand_computation():
    """Sheet §6.4, written out in numpy: B = 3, T = 3 (caption 1 has 2 words), 2×2 regions, dimension 3,
    classes (1, 2, 1) so that the off-diagonal pairs (0, 2) and (2, 0) are not negatives."""
    rng = np.random.default_rng(3)
    words = rng.standard_normal((3, 3, 3))
    words[1, 2] = 0.0  # padded step: zeros, as the text encoder gives
    lengths = np.array([3, 2, 3])
    regions = rng.standard_normal((3, 2, 2, 3))
    global_features, sentence = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    class_ids = np.array([1, 2, 1])
    gamma1, gamma2, gamma3 = 4.0, 5.0, 10.0

    def cross_entropies(scores):
        scores = scores.copy()
        scores[0, 2] = scores[2, 0] = -np.inf  # same class, different example
        image_to_text = [np.log(np.sum(np.exp(scores[j]))) - scores[j, j] for j in range(3)]
        text_to_image = [np.log(np.sum(np.exp(scores[:, i]))) - scores[i, i] for i in range(3)]
        return np.array(image_to_text), np.array(text_to_image)

    score, paper = np.zeros((3, 3)), np.zeros((3, 3))
    for j in range(3):  # image
        v = regions[j].reshape(4, 3)
        for i in range(3):  # caption
            e = words[i, : lengths[i]]
            s_bar = softmax(v @ e.T, axis=1)  # over words
            alpha = softmax(gamma1 * s_bar, axis=0)  # over regions
            c = alpha.T @ v  # context per word
            cos = np.sum(e * c, axis=1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(c, axis=1))
            r = np.log(np.sum(np.exp(gamma2 * cos)))
            score[j, i], paper[j, i] = gamma3 * r, gamma3 * r / gamma2
    w0, w1 = model.words_loss(tf.constant(regions, tf.float32), tf.constant(words, tf.float32), lengths,
                              tf.constant(class_ids), gamma1, gamma2, gamma3)
    expected0, expected1 = cross_entropies(score)
    np.testing.assert_allclose(w0.numpy(), expected0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w1.numpy(), expected1, rtol=1e-4, atol=1e-5)
    p0, p1 = model.words_loss(regions.astype(np.float32), words.astype(np.float32), lengths, tf.constant(class_ids),
                              gamma1, gamma2, gamma3, paper_score=True)
    expected0, expected1 = cross_entropies(paper)
    np.testing.assert_allclose(p0.numpy(), expected0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p1.numpy(), expected1, rtol=1e-4, atol=1e-5)

    cosines = np.array([[g @ s / (np.linalg.norm(g) * np.linalg.norm(s)) for s in sentence] for g in global_features])
    s0, s1 = model.sentence_loss(tf.constant(global_features, tf.float32), tf.constant(sentence, tf.float32),
                                 tf.constant(class_ids), gamma3)
    expected0, expected1 = cross_entropies(gamma3 * cosines)
    np.testing.assert_allclose(s0.numpy(), expected0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s1.numpy(), expected1, rtol=1e-4, atol=1e-5)

    # Gradients stay finite despite the −∞ entries.
    r = tf.Variable(regions, dtype=tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(sum(model.words_loss(r, words.astype(np.float32), lengths, tf.constant(class_ids))))
    assert np.all(np.isfinite(tape.gradient(total, r).numpy()))


# ------------------------------------------------------------------ attention masking
def test_word_attention_masks_padded_words_and_can_reproduce_the_official_bug():
    """Batch 2, 2×2 pixels (queryL 4), 4 words; only sample 1 is padded (from word 2)."""
    rng = np.random.default_rng(0)
    h = tf.constant(rng.standard_normal((2, 2, 2, 3)), tf.float32)
    words = rng.standard_normal((2, 4, 5)).astype(np.float32)
    words[1, 2:] = 0.0
    mask = tf.constant([[True, True, True, True], [True, True, False, False]])
    correct = model.WordAttention(3)
    context, maps = correct(h, words, mask)
    assert context.shape == (2, 2, 2, 3) and maps.shape == (2, 4, 2, 2)
    maps = maps.numpy().reshape(2, 4, 4)  # (B, T, pixel)
    assert np.all(maps[1, 2:] == 0.0) and np.all(maps[0] > 0.0)
    np.testing.assert_allclose(maps.sum(axis=1), 1.0, rtol=1e-6)
    keys = words @ correct.project.kernel.numpy()  # context = Σ_t β_qt W e_t, β = softmax_t h_qᵀ W e_t
    queries = h.numpy().reshape(2, 4, 3)
    beta = softmax(np.where(mask.numpy()[:, None, :], queries @ keys.transpose(0, 2, 1), -np.inf), axis=-1)
    np.testing.assert_allclose(context.numpy().reshape(2, 4, 3), beta @ keys, rtol=1e-5, atol=1e-6)

    buggy = model.WordAttention(3, faithful_mask_bug=True)
    buggy(h, words, mask)
    buggy.set_weights(correct.get_weights())
    maps = buggy(h, words, mask)[1].numpy().reshape(2, 4, 4)
    # pixel q of sample b gets the mask of sample (4b + q) mod 2 = q mod 2:
    assert np.all(maps[0, 2:, 1::2] == 0.0)  # sample 0, odd pixels: its real words 2, 3 are masked
    assert np.all(maps[0, :, 0::2] > 0.0)  # sample 0, even pixels: its own mask
    assert np.all(maps[1, 2:, 0::2] > 0.0)  # sample 1, even pixels: padded words receive attention
    assert np.all(maps[1, 2:, 1::2] == 0.0)  # sample 1, odd pixels: its own mask


# ------------------------------------------------------------------ text encoder
def test_text_encoder_ignores_padding_and_matches_a_keras_bidirectional_lstm():
    encoder = model.DamsmTextEncoder(20, embedding_dim=12, hidden=5)
    short, _ = encoder(tf.constant([[5, 3, 7]]))
    padded_batch = tf.constant([[5, 3, 7, 0, 0], [4, 9, 2, 8, 6]])
    words, sentence = encoder(padded_batch)  # lengths from ids != 0
    words_given, sentence_given = encoder([padded_batch, tf.constant([3, 5])])
    alone_words, alone_sentence = encoder(tf.constant([[5, 3, 7]]))
    full_words, full_sentence = encoder(tf.constant([[4, 9, 2, 8, 6]]))
    np.testing.assert_allclose(words[0, :3], alone_words[0], rtol=1e-5, atol=1e-6)
    assert np.all(words.numpy()[0, 3:] == 0.0)
    np.testing.assert_allclose(sentence[0], alone_sentence[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(words[1], full_words[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sentence[1], full_sentence[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(words_given, words, rtol=1e-6)
    np.testing.assert_allclose(sentence_given, sentence, rtol=1e-6)

    # Same numbers as Keras' own bidirectional LSTM with bias = b_ih + b_hh (gate order i, f, c, o).
    reference = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True, return_state=True))
    x = encoder.embedding(tf.constant([[4, 9, 2, 8, 6]]))
    reference(x)
    pairs = [(encoder.forward_lstm, reference.forward_layer), (encoder.backward_lstm, reference.backward_layer)]
    for rnn, keras_layer in pairs:
        cell = rnn.cell
        keras_layer.set_weights([cell.kernel.numpy(), cell.recurrent_kernel.numpy(),
                                 cell.bias.numpy() + cell.recurrent_bias.numpy()])
    outputs, forward_h, _, backward_h, _ = reference(x)
    np.testing.assert_allclose(full_words, outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full_sentence, tf.concat([forward_h, backward_h], -1), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ D loss
def test_discriminator_loss_follows_the_official_weights():
    rc, ru, fc, fu, wc = (np.array([v], np.float32) for v in (0.3, -0.2, 0.1, 0.4, -0.5))
    expected = 0.5 * (softplus(0.2) + softplus(-0.3)) + (softplus(0.4) + softplus(0.1) + softplus(-0.5)) / 3
    np.testing.assert_allclose(model.discriminator_loss(rc, ru, fc, fu, wc).numpy(), [expected], rtol=1e-5)
    expected = softplus(-0.3) + 0.5 * (softplus(0.1) + softplus(-0.5))
    np.testing.assert_allclose(model.discriminator_loss(rc, ru, fc, fu, wc, unconditional=False).numpy(), [expected],
                               rtol=1e-5)


# ------------------------------------------------------------------ training steps
def tiny_batch(batch=4, length=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([6, 4, 3, 5][:batch], np.int32)
    ids = rng.integers(1, 20, (batch, length)).astype(np.int32)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return {"image": tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)), tf.float32),
            "caption_ids": tf.constant(ids), "caption_length": tf.constant(lengths),
            "class_id": tf.constant([0, 1, 0, 2][:batch], tf.int32)}


def snapshot(network):
    return [v.numpy().copy() for v in network.weights]


def changed(before, network):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, network.weights))


def test_attngan_train_step_updates_g_and_d_but_not_the_encoders():
    text = model.DamsmTextEncoder(20, embedding_dim=16, hidden=8)
    text(tf.ones((2, 6), tf.int32))
    image = model.DamsmImageEncoder("small", embedding_dim=16, widths=(8, 8, 16, 16))
    image(tf.zeros((2, 32, 32, 3)))

    def make_generator():
        g = model.AttnGanGenerator(noise_dim=8, condition_dim=8, base_width=8, stages=2, base_size=16,
                                   residual_blocks=1)
        g([tf.zeros((2, 8)), tf.zeros((2, 16)), tf.zeros((2, 6, 16)), tf.ones((2, 6), tf.bool)])
        return g

    generator = make_generator()
    discriminator = model.Discriminators(generator.sizes, base_width=8, condition_dim=16)
    discriminator([[tf.zeros((2, s, s, 3)) for s in generator.sizes], tf.zeros((2, 16))])
    gan = model.AttnGan(generator, discriminator, text, image, damsm_weight=5.0)
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    gan.build_optimizers()
    gan.enable_ema(make_generator)
    batch = dict(tiny_batch(), noise=tf.random.normal((4, 1, 16)))
    before = {name: snapshot(net) for name, net in
              [("g", generator), ("d", discriminator), ("text", text), ("image", image), ("ema", gan.ema_generator)]}
    logs = gan.train_step(batch)
    for name in ("d_loss", "g_loss", "kl", "damsm", "d_loss_16", "d_loss_32", "g_loss_32"):
        assert np.isfinite(float(logs[name])), name
    assert float(logs["damsm"]) > 0
    assert changed(before["g"], generator) and changed(before["d"], discriminator)
    assert changed(before["ema"], gan.ema_generator)
    assert not changed(before["text"], text) and not changed(before["image"], image)
    images, maps = gan.generate(tf.random.normal((4, 16)), batch["caption_ids"], batch["caption_length"],
                                all_stages=True, return_attention=True)
    assert [tuple(x.shape) for x in images] == [(4, 16, 16, 3), (4, 32, 32, 3)] and maps[0].shape == (4, 6, 16, 16)


def tiny_pretrainer(jit_compile=False):
    """A DAMSM pretrainer on tiny encoders, compiled with its optimizer's slots built: (pretrainer, text, image)."""
    text = model.DamsmTextEncoder(20, embedding_dim=16, hidden=8)
    text(tf.ones((2, 6), tf.int32))
    image = model.DamsmImageEncoder("small", embedding_dim=16, widths=(8, 8, 16, 16))
    image(tf.zeros((2, 32, 32, 3)))
    pretrainer = model.DamsmPretrainer(text, image)
    pretrainer.compile(optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5), jit_compile=jit_compile)
    pretrainer.build_optimizer()
    return pretrainer, text, image


@pytest.mark.parametrize("jit_compile", [False, True])
def test_cosine_is_the_formula_with_finite_gradients_at_a_zero_vector(jit_compile):
    """cos(a, b) = a·b / max(‖a‖‖b‖, ε), and its gradient, against NumPy. Padded words' features are zeros:
    there ‖a‖'s gradient is 0/0, which XLA made NaN, so an XLA-compiled DAMSM pretraining diverged at once."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4, 5)).astype(np.float32)
    a[1] = 0.0  # a padded word
    eps = 1e-8
    norm_a, norm_b = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    expected = (a * b).sum(-1) / np.maximum(norm_a * norm_b, eps)
    # d Σ cos / d a: b/(‖a‖‖b‖) − cos·a/‖a‖² where ‖a‖‖b‖ > ε; b/ε where the denominator is ε.
    with np.errstate(divide="ignore", invalid="ignore"):
        gradient = np.where((norm_a * norm_b > eps)[:, None],
                            b / (norm_a * norm_b)[:, None] - (expected / norm_a ** 2)[:, None] * a, b / eps)

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(a, b):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = model.cosine(a, b)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, a)

    value, got = value_and_gradient(tf.constant(a), tf.constant(b))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(got.numpy()))
    np.testing.assert_allclose(got.numpy(), gradient, rtol=1e-4, atol=1e-5)


def test_damsm_pretrainer_step_under_xla_keeps_every_weight_finite():
    """The whole pretraining step (padded captions, both encoders, the clip) compiled with XLA."""
    pretrainer, text, image = tiny_pretrainer(jit_compile=True)
    step = tf.function(pretrainer.train_step, jit_compile=True)
    logs = step(tiny_batch())
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert all(np.all(np.isfinite(v.numpy())) for v in text.weights + image.weights)


def test_damsm_pretrainer_step_trains_both_encoders_and_reports_retrieval():
    pretrainer, text, image = tiny_pretrainer()
    before_text, before_image = snapshot(text), snapshot(image)
    logs = pretrainer.train_step(tiny_batch())
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert 0.0 <= float(logs["retrieval_top1"]) <= 1.0
    assert changed(before_text, text) and changed(before_image, image)
    assert int(pretrainer.optimizer.iterations.numpy()) == 1
    pretrainer.reset_optimizer_state()
    assert int(pretrainer.optimizer.iterations.numpy()) == 0
    assert float(pretrainer.optimizer.learning_rate.numpy()) > 0
    logs = pretrainer.test_step(tiny_batch(seed=1))
    assert np.isfinite(float(logs["loss"]))
