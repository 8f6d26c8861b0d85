"""Chapter 5 (VLMGAN, a reconstruction) networks and losses: the three matching scores and the VVM terms
against numpy, the MSB (a numpy forward, masked pooling, parameter count), VLM pretraining, the plug-in on
chapter 3's AttnGAN and chapter 4's DF-GAN (reduces exactly to the baselines at λ = 0), VLMS."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from chapters.ch5_vlmgan import model
from chapters.ch3_attngan import model as attngan
from chapters.ch4_dfgan_ratgan import model as dfgan


def softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------ a hand-made example
# 2 images × 3 regions, 2 captions × 3 words, dimension 3; caption 1 has 2 words (word 2 padded: zeros).
REGIONS = np.array([[[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.0, 0.4, 1.0]],
                    [[0.5, -0.5, 0.2], [1.0, 1.0, 0.0], [-0.3, 0.2, 0.8]]])
WORDS = np.array([[[0.9, 0.1, 0.0], [0.0, 0.2, 1.0], [0.3, 0.9, 0.1]],
                  [[0.2, 1.0, 0.1], [1.0, -0.2, 0.4], [0.0, 0.0, 0.0]]])
LENGTHS = np.array([3, 2])
MASK = np.arange(3)[None, :] < LENGTHS[:, None]
GAMMA1, GAMMA2, GAMMA3 = 4.0, 5.0, 10.0


def numpy_local(form):
    """S_local[image j, caption i], written out (README §2 / chapter 3's DAMSM attention)."""
    scores = np.zeros((2, 2))
    for j in range(2):
        v = REGIONS[j]
        for i in range(2):
            e = WORDS[i, : LENGTHS[i]]
            if form == "walkthrough":
                alpha = softmax(GAMMA1 * (unit(v) @ unit(e).T), axis=0)  # (R, T): softmax over regions
            else:
                alpha = softmax(GAMMA1 * softmax(v @ e.T, axis=1), axis=0)  # words first, then regions
            context = alpha.T @ v  # c_t = Σ_r α_{t,r} ϕ_r
            scores[j, i] = np.log(np.sum(np.exp(GAMMA2 * cos(context, e)))) / GAMMA2
    return scores


@pytest.mark.parametrize("form", ["walkthrough", "damsm"])
def test_local_score_matches_numpy(form):
    matrix, matched = model.local_score(REGIONS.astype(np.float32), WORDS.astype(np.float32), MASK, GAMMA1, GAMMA2,
                                        form)
    expected = numpy_local(form)
    np.testing.assert_allclose(matrix.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(matched.numpy(), np.diag(expected), rtol=1e-5, atol=1e-6)
    _, direct = model.local_score(REGIONS.astype(np.float32), WORDS.astype(np.float32), MASK, GAMMA1, GAMMA2, form,
                                  pairwise=False)
    np.testing.assert_allclose(direct.numpy(), np.diag(expected), rtol=1e-5, atol=1e-6)
    # The padded word does not count, whatever it holds; regions may come as a (B, H, W, D) map.
    words = WORDS.copy()
    words[1, 2] = [5.0, -3.0, 2.0]
    matrix, _ = model.local_score(REGIONS.reshape(2, 3, 1, 3).astype(np.float32), words.astype(np.float32), MASK,
                                  GAMMA1, GAMMA2, form)
    np.testing.assert_allclose(matrix.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Gradients stay finite (the masked word is an exact zero vector).
    regions = tf.Variable(REGIONS, dtype=tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(model.local_score(regions, WORDS.astype(np.float32), MASK, form=form)[0])
    assert np.all(np.isfinite(tape.gradient(total, regions).numpy()))


def test_local_forms_differ_and_bad_forms_are_refused():
    assert not np.allclose(numpy_local("walkthrough"), numpy_local("damsm"))
    with pytest.raises(ValueError):
        model.local_score(REGIONS.astype(np.float32), WORDS.astype(np.float32), MASK, form="dot")


def test_global_score_is_the_cosine():
    image_global = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]])
    sentence = np.array([[2.0, 1.0, 1.0], [1.0, 0.0, -1.0]])
    matrix, matched = model.global_score(image_global.astype(np.float32), sentence.astype(np.float32))
    expected = np.array([[cos(g, s) for s in sentence] for g in image_global])  # (images, captions)
    np.testing.assert_allclose(matrix.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(matched.numpy(), np.diag(expected), rtol=1e-6)
    np.testing.assert_allclose(model.global_score(image_global, sentence, pairwise=False)[1].numpy(),
                               np.diag(expected), rtol=1e-6)


# ------------------------------------------------------------------ the Matching Score Block
def layer_norm(x, norm):
    mean, variance = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + norm.epsilon) * norm.gamma.numpy() + norm.beta.numpy()


def numpy_msb(msb, regions, image_global, words, sentence, valid_words):
    """One example through the MSB, written out: tokens, pre-LN encoder layers, final LN, per-token logit,
    masked mean over the valid tokens, sigmoid. Returns (score, pooled features)."""
    types = msb.type_embedding.numpy()
    tokens = np.concatenate([image_global[None] + types[0], regions + types[1] + msb.region_positions.numpy(),
                             sentence[None] + types[2], words + types[3] + msb.word_positions.numpy()[: len(words)]])
    valid = np.concatenate([np.ones(len(regions) + 2, bool), valid_words])
    x = tokens
    for block in msb.blocks:
        attention = block.attention
        h = layer_norm(x, block.norm1)
        q, k, v = (np.einsum("ld,dhk->lhk", h, dense.kernel.numpy()) + dense.bias.numpy()
                   for dense in (attention._query_dense, attention._key_dense, attention._value_dense))
        scores = np.einsum("qhk,shk->hqs", q, k) / np.sqrt(q.shape[-1])
        weights = softmax(np.where(valid[None, None, :], scores, -np.inf), axis=-1)  # padded words are no keys
        out = np.einsum("qhk,hkd->qd", np.einsum("hqs,shk->qhk", weights, v), attention._output_dense.kernel.numpy())
        x = x + out + attention._output_dense.bias.numpy()
        h = np.maximum(layer_norm(x, block.norm2) @ block.ffn_in.kernel.numpy() + block.ffn_in.bias.numpy(), 0.0)
        x = x + h @ block.ffn_out.kernel.numpy() + block.ffn_out.bias.numpy()
    x = layer_norm(x, msb.final_norm)
    per_token = (x @ msb.to_logit.kernel.numpy())[:, 0] + msb.to_logit.bias.numpy()[0]
    return 1.0 / (1.0 + np.exp(-per_token[valid].mean())), x[valid].mean(0)


def test_msb_matches_a_numpy_forward_and_ignores_padded_words():
    rng = np.random.default_rng(0)
    msb = model.MatchingScoreBlock(regions=3, words=3, width=4, depth=2, heads=2, ffn=6)
    regions, image_global = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4))
    words, sentence = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4))
    words[1, 2] = 0.0
    inputs = [x.astype(np.float32) for x in (regions, image_global, words, sentence)] + [MASK]
    msb(inputs)  # build
    for embedding in (msb.type_embedding, msb.region_positions, msb.word_positions):  # not all-zero: they matter
        embedding.assign(rng.normal(size=embedding.shape) * 0.5)
    score, pooled = msb(inputs, return_pooled=True)
    assert score.shape == (2,) and pooled.shape == (2, 4)
    for b in range(2):
        expected_score, expected_pooled = numpy_msb(msb, regions[b], image_global[b], words[b], sentence[b], MASK[b])
        np.testing.assert_allclose(score.numpy()[b], expected_score, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pooled.numpy()[b], expected_pooled, rtol=1e-4, atol=1e-5)
    # The logit is the masked mean of the per-token logits; sigmoid gives the score in (0, 1).
    tokens, valid = msb.encode(inputs)
    assert tokens.shape == (2, 2 + 3 + 3, 4) and valid.numpy().sum(1).tolist() == [8, 7]
    logit, _ = msb.logits(inputs)
    np.testing.assert_allclose(tf.sigmoid(logit).numpy(), score.numpy(), rtol=1e-6)
    # Padded words change nothing, whatever they hold (key mask + masked pooling).
    changed = words.copy()
    changed[1, 2] = rng.normal(size=4) * 10
    inputs_changed = inputs[:2] + [changed.astype(np.float32)] + inputs[3:]
    np.testing.assert_allclose(msb(inputs_changed).numpy(), score.numpy(), rtol=1e-6)
    unmasked = msb(inputs_changed[:4] + [np.ones((2, 3), bool)]).numpy()
    assert abs(unmasked[1] - score.numpy()[1]) > 1e-4
    with pytest.raises(ValueError):
        msb([regions[:, :2].astype(np.float32)] + inputs[1:])  # built for 3 regions
    with pytest.raises(ValueError):
        model.MatchingScoreBlock(regions=3, words=3, width=6, heads=4)


def test_msb_parameter_count_by_arithmetic():
    """U6: width 256, 2 layers, 4 heads, FFN 1024, R = 289, T = 18 → 1,659,905 (README §2; it
    includes the final LayerNorm of the pre-LN stack: 1,659,393 + 512)."""
    msb = model.MatchingScoreBlock(regions=289, words=18)
    score = msb([tf.zeros((1, 17, 17, 256)), tf.zeros((1, 256)), tf.zeros((1, 18, 256)), tf.zeros((1, 256)),
                 tf.ones((1, 18), tf.bool)])
    assert score.shape == (1,)
    assert msb.count_params() == model.msb_parameter_count() == 1_659_905
    per_layer = 2 * 512 + 4 * (256 * 256 + 256) + 2 * 256 * 1024 + 1024 + 256
    assert (4 + 289 + 18) * 256 + 2 * per_layer + 512 + 257 == 1_659_905
    tiny = model.MatchingScoreBlock(regions=16, words=6, width=8, depth=1, heads=2, ffn=16)
    tiny([tf.zeros((1, 4, 4, 8)), tf.zeros((1, 8)), tf.zeros((1, 6, 8)), tf.zeros((1, 8)), tf.ones((1, 6), tf.bool)])
    assert tiny.count_params() == model.msb_parameter_count(8, 1, 16, 16, 6)


# ------------------------------------------------------------------ VVM and VLM terms by hand
def test_vvm_and_vlm_terms_match_numpy():
    rng = np.random.default_rng(1)
    fake_regions, real_regions = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 4, 3))
    fake_global, real_global = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    fake_pooled, real_pooled = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    total, terms = model.vvm_loss(*(x.astype(np.float32) for x in (fake_regions, fake_global, real_regions,
                                                                     real_global, fake_pooled, real_pooled)), GAMMA1)
    expected_global = 1.0 - cos(fake_global, real_global)
    expected_local = np.zeros(2)
    for b in range(2):
        alpha = softmax(GAMMA1 * (unit(real_regions[b]) @ unit(fake_regions[b]).T), axis=1)  # over fake regions
        context = alpha @ fake_regions[b]  # c_r for each real region r
        expected_local[b] = 1.0 - np.mean(cos(real_regions[b], context))
    expected_general = np.mean((fake_pooled - real_pooled) ** 2, axis=1)
    np.testing.assert_allclose(terms["global"].numpy(), expected_global, rtol=1e-5)
    np.testing.assert_allclose(terms["local"].numpy(), expected_local, rtol=1e-5)
    np.testing.assert_allclose(terms["general"].numpy(), expected_general, rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), expected_global + expected_local + expected_general, rtol=1e-5)
    # Identical images: every VVM term is 0 … up to L_VL, whose soft attention spreads over other regions.
    _, same = model.vvm_loss(real_regions, real_global, real_regions, real_global, real_pooled, real_pooled)
    np.testing.assert_allclose(same["global"].numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(same["general"].numpy(), 0.0, atol=1e-12)
    # The real side gets no gradient.
    real = tf.Variable(real_global, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.vvm_loss(fake_regions, fake_global, real_regions, real, fake_pooled, real_pooled)[0])
    assert tape.gradient(loss, real) is None

    # L_VLM: DAMSM cross-entropies on γ3·S (classes all different here) and −log S_general.
    image_global, sentence = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    logits = np.array([0.3, -1.2])
    total, terms, scores = model.vlm_loss(REGIONS.astype(np.float32), image_global.astype(np.float32), logits,
                                          WORDS.astype(np.float32), sentence.astype(np.float32), MASK,
                                          tf.constant([0, 1]), GAMMA1, GAMMA2, GAMMA3)

    def both_directions(scores):
        rows = np.log(np.exp(scores).sum(1)) - np.diag(scores)  # image → caption
        columns = np.log(np.exp(scores).sum(0)) - np.diag(scores)  # caption → image
        return rows + columns

    global_matrix = np.array([[cos(g, s) for s in sentence] for g in image_global])
    np.testing.assert_allclose(terms["local"].numpy(), both_directions(GAMMA3 * numpy_local("walkthrough")), rtol=1e-4)
    np.testing.assert_allclose(terms["global"].numpy(), both_directions(GAMMA3 * global_matrix), rtol=1e-5)
    np.testing.assert_allclose(terms["general"].numpy(), -np.log(1 / (1 + np.exp(-logits))), rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), sum(terms[k].numpy() for k in ("local", "global", "general")),
                               rtol=1e-6)
    np.testing.assert_allclose(scores["local"].numpy(), np.diag(numpy_local("walkthrough")), rtol=1e-5)


# ------------------------------------------------------------------ encoders, pretraining
def tiny_damsm(dim=16, input_size=None):
    text = attngan.DamsmTextEncoder(20, embedding_dim=dim, hidden=dim // 2)
    text(tf.ones((2, 6), tf.int32))
    image = attngan.DamsmImageEncoder("small", embedding_dim=dim, widths=(4, 4, dim, dim), input_size=input_size)
    image(tf.zeros((2, 32, 32, 3)))
    return text, image


def tiny_vlm(text, image, dim=16):
    vlm_text, vlm_image = model.vlm_encoders_from_damsm(text, image)
    msb = model.MatchingScoreBlock(regions=16, words=6, width=dim, depth=1, heads=2, ffn=2 * dim)  # 32 px → 4×4
    msb([tf.zeros((2, 4, 4, dim)), tf.zeros((2, dim)), tf.zeros((2, 6, dim)), tf.zeros((2, dim)),
         tf.ones((2, 6), tf.bool)])
    return vlm_text, vlm_image, msb


def tiny_batch(size=32, noise_dim=16, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([6, 4, 3, 5], np.int32)
    ids = rng.integers(1, 20, (4, 6)).astype(np.int32)
    ids[np.arange(6)[None, :] >= lengths[:, None]] = 0
    return {"image": tf.constant(rng.uniform(-1, 1, (4, size, size, 3)), tf.float32),
            "caption_ids": tf.constant(ids), "caption_length": tf.constant(lengths),
            "class_id": tf.constant([0, 1, 0, 2], tf.int32),
            "noise": tf.constant(rng.normal(size=(4, 1, noise_dim)), tf.float32)}


def snapshot(network):
    return [v.numpy().copy() for v in network.weights]


def changed(before, network):
    return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, network.weights))


def test_vlm_encoders_are_a_separate_copy_of_the_damsm():
    text, image = tiny_damsm(8)
    vlm_text, vlm_image = model.vlm_encoders_from_damsm(text, image)
    assert vlm_text is not text and vlm_image is not image and vlm_image.kind == "small"
    batch = tiny_batch()
    for original, copy, inputs in [(text, vlm_text, [batch["caption_ids"], batch["caption_length"]]),
                                   (image, vlm_image, batch["image"])]:
        for a, b in zip(original(inputs), copy(inputs)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    vlm_image.project_global.bias.assign(vlm_image.project_global.bias + 1.0)
    assert not np.allclose(image.project_global.bias.numpy(), vlm_image.project_global.bias.numpy())
    with pytest.raises(ValueError):
        model.vlm_encoders_from_damsm(attngan.DamsmTextEncoder(20, 8, 4), image)  # not built


def test_negative_captions_come_from_other_classes():
    scores = tf.constant(np.random.default_rng(0).normal(size=(4, 4)), tf.float32)
    classes = tf.constant([0, 1, 0, 2])
    for _ in range(5):
        negative = model.negative_captions(scores, classes).numpy()
        assert all(classes.numpy()[n] != classes.numpy()[i] for i, n in enumerate(negative))
    hard = model.negative_captions(scores, classes, hard=True).numpy()
    allowed = classes.numpy()[:, None] != classes.numpy()[None, :]
    np.testing.assert_array_equal(hard, np.argmax(np.where(allowed, scores.numpy(), -np.inf), 1))
    one_class = model.negative_captions(scores, tf.constant([3, 3, 3, 3])).numpy()
    assert all(n != i for i, n in enumerate(one_class))  # then any other example


def test_vlm_pretrainer_step_trains_projections_and_msb_but_not_the_backbone():
    text, image = tiny_damsm(8)
    vlm_text, vlm_image, msb = tiny_vlm(text, image, dim=8)
    pretrainer = model.VlmPretrainer(vlm_text, vlm_image, msb)
    pretrainer.compile(optimizer=keras.optimizers.Adam(2e-3, beta_1=0.5))
    pretrainer.build_optimizer()
    before = {name: snapshot(net) for name, net in [("text", vlm_text), ("msb", msb), ("backbone", vlm_image.backbone),
                                                     ("regions", vlm_image.project_regions),
                                                     ("global", vlm_image.project_global), ("damsm", image)]}
    logs = pretrainer.train_step(tiny_batch())
    assert set(logs) == {"loss", "local_loss", "global_loss", "general_loss", "retrieval_top1", "msb_accuracy",
                         "msb_positive", "msb_negative"}
    assert all(np.isfinite(float(v)) for v in logs.values())
    np.testing.assert_allclose(float(logs["loss"]), float(logs["local_loss"]) + float(logs["global_loss"])
                               + float(logs["general_loss"]), rtol=1e-5)
    assert float(logs["general_loss"]) > 0 and 0.0 <= float(logs["msb_accuracy"]) <= 1.0
    for name, network in [("text", vlm_text), ("msb", msb), ("regions", vlm_image.project_regions),
                          ("global", vlm_image.project_global)]:
        assert changed(before[name], network), name
    assert not changed(before["backbone"], vlm_image.backbone) and not changed(before["damsm"], image)
    logs = pretrainer.test_step(tiny_batch(seed=1))
    assert np.isfinite(float(logs["loss"]))


# ------------------------------------------------------------------ the plug-in
def build_gan(variant, damsm, vlm=None, weights=None, **vlm_kwargs):
    """A tiny chapter-3 AttnGAN (16 → 32 px) or chapter-4 DF-GAN (16 px) on the DAMSM encoders ``damsm``; with
    ``vlm`` = (text, image, MSB) its VLMGAN version; ``weights`` = (G, D) weights to start from."""
    text, image = damsm
    if variant == "attngan":
        generator = attngan.AttnGanGenerator(noise_dim=8, condition_dim=8, base_width=8, stages=2, base_size=16,
                                             residual_blocks=1)
        generator([tf.zeros((2, 8)), tf.zeros((2, 16)), tf.zeros((2, 6, 16)), tf.ones((2, 6), tf.bool)])
        discriminator = attngan.Discriminators(generator.sizes, base_width=8, condition_dim=16)
        discriminator([[tf.zeros((2, s, s, 3)) for s in generator.sizes], tf.zeros((2, 16))])
        args, kind = (generator, discriminator, text, image), (model.VlmAttnGan if vlm else attngan.AttnGan)
    else:
        generator = dfgan.DfGanGenerator(noise_dim=8, sentence_dim=16, base_width=4, image_size=16)
        generator([tf.zeros((2, 8)), tf.zeros((2, 16))])
        discriminator = dfgan.DfGanDiscriminator(base_width=4, image_size=16, sentence_dim=16)
        discriminator([tf.zeros((2, 16, 16, 3)), tf.zeros((2, 16))])
        args, kind = (generator, discriminator, text), (model.VlmDfGan if vlm else dfgan.OneStageGan)
    if weights:
        generator.set_weights(weights[0])
        discriminator.set_weights(weights[1])
    extra = {}
    if vlm:
        extra = dict(vlm_text_encoder=vlm[0], vlm_image_encoder=vlm[1], msb=vlm[2], **vlm_kwargs)
    gan = kind(*args, **extra)
    gan.compile(keras.optimizers.Adam(1e-4, beta_1=0.5), keras.optimizers.Adam(4e-4, beta_1=0.5))
    gan.build_optimizers()
    return gan, generator, discriminator


def generated(gan, variant, batch):
    """The generator's final image for the batch, in training mode (as inside train_step)."""
    if variant == "attngan":
        words, sentence, mask = gan.encode_text(batch["caption_ids"], batch["caption_length"])
        z, epsilon = gan.split_noise(batch["noise"][:, 0])
        return gan.generator([z, sentence, words, mask, epsilon], training=True)[0][-1]
    return gan.generator([batch["noise"][:, 0], gan.encode_text(batch["caption_ids"], batch["caption_length"])],
                         training=True)


@pytest.mark.parametrize("variant", ["attngan", "dfgan"])
def test_plugin_step_and_exact_reduction_to_the_baseline(variant):
    batch = tiny_batch(size=32 if variant == "attngan" else 16, noise_dim=16 if variant == "attngan" else 8)
    damsm = tiny_damsm(input_size=32)  # the VLM copy expects 32 px: DF-GAN's 16 px images are resized up
    vlm = tiny_vlm(*damsm)
    baseline, g0, d0 = build_gan(variant, damsm)
    start = (g0.get_weights(), d0.get_weights())

    # λ1 = λ2 = 0: the same generator and discriminator updates as the baseline.
    off, g_off, d_off = build_gan(variant, damsm, vlm, start, vvm_weight=0.0, vlm_weight=0.0)
    baseline.train_step(batch)
    off.train_step(batch)
    assert any(not np.array_equal(a, b) for a, b in zip(start[0], g0.get_weights()))
    for a, b in zip(g0.get_weights() + d0.get_weights(), g_off.get_weights() + d_off.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    extra, logs = off.vlm_terms(generated(off, variant, batch), batch)
    assert logs == {} and np.all(extra.numpy() == 0.0)

    # λ > 0: finite logs for every VLM/VVM tag, the VLM untouched, G and D trained.
    on, g_on, d_on = build_gan(variant, damsm, vlm, start)
    assert on.vlm_weight == (5.0 if variant == "attngan" else 1.0) and on.vvm_weight == 1.0
    assert set(model.VLM_GROUPS) <= set(on.metric_groups) and on.metric_groups["scores_general_fake"] == "scores"
    frozen = {name: snapshot(net) for name, net in zip(("text", "image", "msb"), vlm)}
    before_g, before_d = snapshot(g_on), snapshot(d_on)
    logs = on.train_step(batch)
    for name in list(model.VLM_GROUPS) + ["g_loss", "d_loss"]:
        assert np.isfinite(float(logs[name])), name
    assert float(logs["vlm"]) > 0 and 0 < float(logs["scores_general_real"]) < 1
    assert all(not changed(frozen[name], net) for name, net in zip(("text", "image", "msb"), vlm))
    assert changed(before_g, g_on) and changed(before_d, d_on)

    # The extra loss is λ2·L_VLM + λ1·L_VVM, and its gradient reaches the generator.
    with tf.GradientTape() as tape:
        extra, logs = on.vlm_terms(generated(on, variant, batch), batch)
        loss = tf.reduce_mean(extra)
    np.testing.assert_allclose(extra.numpy(), on.vlm_weight * logs["vlm"].numpy() + logs["vvm"].numpy(), rtol=1e-5)
    components = sum(logs[f"vvm_{k}"].numpy() for k in ("global", "local", "general"))
    np.testing.assert_allclose(logs["vvm"].numpy(), components, rtol=1e-5)
    variables = g_on.trainable_variables
    gradients = tape.gradient(loss, variables)
    unreached = {id(v) for v, g in zip(variables, gradients) if g is None}
    # Only the last image counts (U13): AttnGAN's first-stage image head gets no gradient, nothing else misses one.
    assert unreached == ({id(v) for v in g_on.to_images[0].trainable_variables} if variant == "attngan" else set())
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients if g is not None)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients if g is not None) > 0


# ------------------------------------------------------------------ VLMS
def test_vlm_score_is_batch_independent_and_scores_shuffled_pairs():
    text, image = tiny_damsm(8)
    vlm_text, vlm_image, msb = tiny_vlm(text, image, dim=8)
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
    lengths = np.array([6, 4, 3, 5, 2, 6], np.int32)
    ids = rng.integers(1, 20, (6, 6)).astype(np.int32)
    ids[np.arange(6)[None, :] >= lengths[:, None]] = 0
    result = model.vlm_score(msb, vlm_text, vlm_image, images, ids, lengths, batch_size=4)  # batches of 4 and 2
    words, sentence = vlm_text([ids, lengths])
    regions, image_global = vlm_image(images)
    mask = np.arange(6)[None, :] < lengths[:, None]
    direct = msb([regions, image_global, words, sentence, mask]).numpy()
    np.testing.assert_allclose(result["vlms"], direct.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["s_global"], model.global_score(image_global, sentence)[1].numpy().mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(result["s_local"], model.local_score(regions, words, mask)[1].numpy().mean(), rtol=1e-5)
    assert result["pairs"] == 6 and 0 < result["vlms"] < 1 and -1 <= result["s_global"] <= 1

    order = model.mismatched_order(6, seed=3)
    assert sorted(order) == list(range(6)) and all(order != np.arange(6))
    shuffled = model.vlm_score(msb, vlm_text, vlm_image, images, ids, lengths, batch_size=4, shuffle_seed=3)
    words, sentence = vlm_text([ids[order], lengths[order]])
    reordered = msb([regions, image_global, words, sentence, mask[order]]).numpy()  # image i, caption order[i]
    np.testing.assert_allclose(shuffled["vlms"], reordered.mean(), rtol=1e-5)
    with pytest.raises(ValueError):
        model.vlm_score(msb, vlm_text, vlm_image, images, ids[:5], lengths[:5])
