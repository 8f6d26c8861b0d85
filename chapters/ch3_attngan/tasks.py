"""Chapter 3 assignments: the generator's word attention, the DAMSM matching losses and an attentional
generator stage — with the grader's checks and the typical mistakes they must catch.

Every expected value is computed here from the paper's equation (NumPy, or a float64 TensorFlow
transcription where a gradient is needed), never by calling the reference code, so grading the
reference in ``make test`` also catches a bug planted in the reference. Kept out of student copies.

    make assignment CHAPTER=3 OUT=hw3 [TASKS=word_attention,damsm_losses]
    make grade CHAPTER=3 STUDENT=hw3
"""

from __future__ import annotations

import numpy as np

from t2igan.assignments import Check, CheckFailed, Mutation, Task, assert_close, assert_shape
from t2igan.assignments.cli import main

MODEL = "chapters.ch3_attngan.model"
DAMSM = "chapters.ch3_attngan.damsm"
HIDDEN = ("tests/test_chapter03_model.py",)


# ------------------------------------------------------------------ shared helpers
def _softmax(x, axis):
    """Softmax that gives exact zeros at −∞ entries (masked words)."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _logsumexp(x, axis=-1):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


# ------------------------------------------------------------------ task 1: the generator's word attention
def _attention_layer(module, channels, word_dim, seed, faithful=False):
    """A WordAttention with a random projection U (D → C), built without calling it."""
    layer = module.WordAttention(channels, faithful_mask_bug=faithful)
    layer.project.build((None, word_dim))
    rng = np.random.default_rng(seed)
    layer.project.kernel.assign(rng.normal(0, 0.7, (word_dim, channels)).astype(np.float32))
    return layer


def _attention_inputs(seed, batch=2, height=2, width=3, channels=3, words_count=5, word_dim=4,
                      lengths=(5, 3)):
    """h (B, H, W, C) with H ≠ W, words (B, T, D) whose padded steps hold random values, mask (B, T)."""
    rng = np.random.default_rng(seed)
    h = rng.normal(0, 0.8, (batch, height, width, channels))
    words = rng.normal(0, 1.0, (batch, words_count, word_dim))
    mask = np.arange(words_count)[None, :] < np.array(lengths)[:, None]
    return h, words, mask


def _attention_numpy(kernel, h, words, mask, faithful=False):
    """Eq. 2: e' = U e; s'_qt = h_qᵀ e'_t; β_q = softmax_t over the real words; c_q = Σ_t β_qt e'_t."""
    batch, height, width, channels = h.shape
    pixels = height * width
    keys = words @ kernel  # (B, T, C)
    queries = h.reshape(batch, pixels, channels)
    scores = queries @ keys.transpose(0, 2, 1)  # (B, HW, T)
    if faithful:  # the official tiling: pixel q of sample b gets the mask of sample (b·HW + q) mod B
        source = (np.arange(batch)[:, None] * pixels + np.arange(pixels)[None, :]) % batch
        pixel_mask = mask[source]  # (B, HW, T)
    else:
        pixel_mask = np.broadcast_to(mask[:, None, :], scores.shape)
    beta = _softmax(np.where(pixel_mask, scores, -np.inf), axis=-1)
    context = (beta @ keys).reshape(batch, height, width, channels)
    maps = beta.transpose(0, 2, 1).reshape(batch, -1, height, width)
    return context, maps


def _run_attention(layer, h, words, mask):
    import tensorflow as tf

    return layer(tf.constant(h, tf.float32), tf.constant(words, tf.float32), tf.constant(mask))


def check_attention_context(module):
    layer = _attention_layer(module, 3, 4, seed=0)
    h, words, mask = _attention_inputs(1)
    context, _ = _run_attention(layer, h, words, mask)
    expected, _ = _attention_numpy(layer.project.kernel.numpy().astype(np.float64), h, words, mask)
    assert_close("context c (B, H, W, C)", context, expected, 1e-4, 1e-6)


def check_attention_maps(module):
    layer = _attention_layer(module, 3, 4, seed=2)
    h, words, mask = _attention_inputs(3)
    _, maps = _run_attention(layer, h, words, mask)
    _, expected = _attention_numpy(layer.project.kernel.numpy().astype(np.float64), h, words, mask)
    assert_close("attention maps β (B, T, H, W)", maps, expected, 1e-4, 1e-6)


def check_attention_masking(module):
    """Padding words, whatever their values, change nothing; they receive exactly zero attention."""
    layer = _attention_layer(module, 3, 4, seed=4)
    h, words, mask = _attention_inputs(5, lengths=(5, 2))
    context, maps = _run_attention(layer, h, words, mask)
    rng = np.random.default_rng(6)
    for name, padding in (("zeros", 0.0), ("large random values", rng.normal(0, 50.0, words.shape))):
        other = np.where(mask[..., None], words, padding)
        other_context, other_maps = _run_attention(layer, h, other, mask)
        assert_close(f"context with the padded words set to {name}", other_context, context, 1e-5, 1e-6)
        assert_close(f"maps with the padded words set to {name}", other_maps, maps, 1e-5, 1e-6)
    padded = maps.numpy()[1, 2:]
    if np.any(padded != 0.0):
        raise CheckFailed(f"padded words receive attention (largest β {float(np.abs(padded).max()):.3g}); "
                          "they must get exactly 0.")
    assert_close("Σ_t β_qt over the words (every pixel)", maps.numpy().sum(axis=1), np.ones((2, 2, 3)), 1e-5)


def check_attention_faithful_mask(module):
    """With faithful_mask_bug the mask computed above the region is (B, H·W, T): the region must use it."""
    layer = _attention_layer(module, 3, 4, seed=7, faithful=True)
    h, words, mask = _attention_inputs(8, lengths=(5, 2))
    context, maps = _run_attention(layer, h, words, mask)
    kernel = layer.project.kernel.numpy().astype(np.float64)
    expected_context, expected_maps = _attention_numpy(kernel, h, words, mask, faithful=True)
    assert_close("context with faithful_mask_bug (official per-pixel tiled mask)", context, expected_context, 1e-4, 1e-6)
    assert_close("maps with faithful_mask_bug", maps, expected_maps, 1e-4, 1e-6)


def check_attention_tf_function(module):
    """One traced graph with unknown batch, height, width and caption length serves two shapes."""
    import tensorflow as tf

    layer = _attention_layer(module, 3, 4, seed=9)
    compiled = tf.function(lambda h, w, m: layer(h, w, m), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, None, 4], tf.float32),
        tf.TensorSpec([None, None], tf.bool)])
    kernel = layer.project.kernel.numpy().astype(np.float64)
    for seed, shape in ((10, dict(batch=2, height=2, width=3, words_count=5, lengths=(5, 3))),
                        (11, dict(batch=3, height=4, width=1, words_count=3, lengths=(1, 3, 2)))):
        h, words, mask = _attention_inputs(seed, **shape)
        context, maps = compiled(tf.constant(h, tf.float32), tf.constant(words, tf.float32), tf.constant(mask))
        expected_context, expected_maps = _attention_numpy(kernel, h, words, mask)
        size = f"{shape['height']}×{shape['width']}, T = {shape['words_count']}"
        assert_close(f"context under tf.function ({size})", context, expected_context, 1e-4, 1e-6)
        assert_close(f"maps under tf.function ({size})", maps, expected_maps, 1e-4, 1e-6)


def _attention64(kernel, h, words, mask):
    """Eq. 2 in float64 TensorFlow (differentiable): the oracle for the gradients."""
    import tensorflow as tf

    batch, height, width, channels = h.shape
    keys = tf.matmul(words, kernel)
    queries = tf.reshape(h, [batch, height * width, channels])
    scores = tf.matmul(queries, keys, transpose_b=True)
    beta = tf.nn.softmax(tf.where(mask[:, None, :], scores, tf.constant(-np.inf, tf.float64)), axis=-1)
    context = tf.reshape(tf.matmul(beta, keys), h.shape)
    maps = tf.reshape(tf.transpose(beta, [0, 2, 1]), [batch, -1, height, width])
    return context, maps


def check_attention_gradients(module):
    import tensorflow as tf

    layer = _attention_layer(module, 3, 4, seed=12)
    h, words, mask = _attention_inputs(13)
    rng = np.random.default_rng(14)
    upstream_context, upstream_maps = rng.normal(size=h.shape), rng.normal(size=(2, 5, 2, 3))
    h32, words32 = tf.Variable(h, dtype=tf.float32), tf.Variable(words, dtype=tf.float32)
    with tf.GradientTape() as tape:
        context, maps = layer(h32, words32, tf.constant(mask))
        loss = tf.reduce_sum(context * upstream_context) + tf.reduce_sum(maps * upstream_maps)
    got = tape.gradient(loss, [h32, words32])
    kernel = tf.constant(layer.project.kernel.numpy(), tf.float64)
    h64, words64 = tf.Variable(h), tf.Variable(words)
    with tf.GradientTape() as tape:
        context, maps = _attention64(kernel, h64, words64, tf.constant(mask))
        loss = tf.reduce_sum(context * upstream_context) + tf.reduce_sum(maps * upstream_maps)
    want = tape.gradient(loss, [h64, words64])
    assert_close("∂L/∂h through the word attention", got[0], want[0], 1e-3, 1e-5)
    assert_close("∂L/∂e (the words) through the word attention", got[1], want[1], 1e-3, 1e-5)


WORD_ATTENTION = Task(
    name="word_attention",
    title="The generator's word attention F^attn (WordAttention)",
    module=MODEL,
    week="1-week",
    stubs={
        "WordAttention.call": """h (B, H, W, C) are the image features, words (B, T, D) the word features e. Above this region:
batch, height, width, pixels = H·W, and mask, True for real words, broadcastable to (B, H·W, T)
((B, 1, T), or (B, H·W, T) with faithful_mask_bug): use it as it is.
Eq. 2: project the words, e' = self.project(words cast to h's dtype) (B, T, C); score every pixel q
against every word, s'_qt = h_qᵀ e'_t (no temperature); β_q = softmax over the words of s'_q with the
padded words excluded (−∞ before the softmax, so they get exactly 0); context c_q = Σ_t β_qt e'_t.
Return (context (B, H, W, C) laid out like h, maps (B, T, H, W)): maps[b, t] is word t's β over the
pixels, shaped as the image.""",
    },
    checks=(
        Check("context c_q = Σ_t β_qt e'_t", 3, check_attention_context,
              "e' = U·e uses self.project; β is a softmax over the words (the last axis of the (B, HW, T) scores) "
              "and multiplies the projected words, not the raw ones."),
        Check("attention maps β (B, T, H, W)", 2, check_attention_maps,
              "transpose β (B, HW, T) to (B, T, HW) before reshaping it to (B, T, H, W)."),
        Check("padding words change nothing (masking invariance)", 2, check_attention_masking,
              "padded words must get −∞ scores before the softmax (not 0: exp(0) is not 0), so they receive "
              "exactly zero attention whatever their values."),
        Check("faithful_mask_bug: the given per-pixel mask is used", 1, check_attention_faithful_mask,
              "use the mask computed above the region; do not rebuild it from word_mask."),
        Check("under tf.function with unknown shapes", 2, check_attention_tf_function,
              "use the dynamic batch, height and width computed above (tf.shape), not Python ints of static shapes."),
        Check("gradients w.r.t. h and the words", 2, check_attention_gradients,
              "the gradient must reach both the image features and the words (no stop_gradient, no numpy)."),
    ),
    mutations=(
        Mutation("padding mask missing", "tf.where(mask, scores, tf.cast(NEGATIVE_INFINITY, scores.dtype))", "scores"),
        Mutation("padding mask inverted", "tf.where(mask, scores,", "tf.where(~mask, scores,"),
        Mutation("padded words scored 0 instead of −∞", "tf.cast(NEGATIVE_INFINITY, scores.dtype)",
                 "tf.zeros_like(scores)"),
        Mutation("softmax over the pixels", "scores.dtype)), axis=-1)", "scores.dtype)), axis=-2)"),
        Mutation("a 1/√C temperature", "scores = tf.matmul(queries, keys, transpose_b=True)",
                 "scores = tf.matmul(queries, keys, transpose_b=True) / math.sqrt(h.shape[-1])"),
        Mutation("context of the raw words", "context = tf.reshape(tf.matmul(attention, keys), tf.shape(h))",
                 "context = tf.reshape(tf.matmul(attention, tf.cast(words, h.dtype)[..., : h.shape[-1]]), tf.shape(h))"),
        Mutation("maps not transposed", "tf.reshape(tf.transpose(attention, [0, 2, 1]), [batch, -1, height, width])",
                 "tf.reshape(attention, [batch, -1, height, width])"),
        Mutation("mask rebuilt per sample (ignores the faithful mask)", "tf.where(mask, scores,",
                 "tf.where(word_mask[:, None, :], scores,"),
        Mutation("stop_gradient on the projected words", "keys = self.project(tf.cast(words, h.dtype))",
                 "keys = tf.stop_gradient(self.project(tf.cast(words, h.dtype)))"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 2: the DAMSM losses
GAMMAS = (3.0, 2.5, 6.0)  # γ1, γ2, γ3: not the defaults, so that a hard-coded γ shows


def _cosine_numpy(a, b, eps=1e-8):
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), eps)


def _same_class_numpy(class_ids):
    """t2igan.layers.same_class: equal known classes, and the diagonal; class −1 is its own class."""
    class_ids = np.asarray(class_ids)
    known = class_ids != -1
    return (class_ids[:, None] == class_ids[None, :]) & known[:, None] & known[None, :] | np.eye(len(class_ids), dtype=bool)


def _matching_numpy(scores, class_ids):
    """Eq. 11–13 both ways: (image j → its caption, caption i → its image), same-class pairs not negatives."""
    scores = np.array(scores, dtype=np.float64)
    if class_ids is not None:
        scores = np.where(_same_class_numpy(class_ids) & ~np.eye(len(scores), dtype=bool), -np.inf, scores)
    diagonal = np.diag(scores)
    return _logsumexp(scores, axis=1) - diagonal, _logsumexp(scores, axis=0) - diagonal


def _region_attention_numpy(e, v, gamma1):
    """Eq. 7–9 for one caption's real words e (n, D) and one image's regions v (R, D): (c (n, D), α (n, R))."""
    s_bar = _softmax(v @ e.T, axis=1)  # (R, n): normalised over the words
    alpha = _softmax(gamma1 * s_bar, axis=0)  # over the regions
    return alpha.T @ v, alpha.T


def _score_matrix_numpy(regions, words, lengths, gamma1, gamma2, paper=False):
    """R(Q_j, D_i) for image j (rows) and caption i (columns), Eq. 10."""
    batch = len(words)
    flat = regions.reshape(batch, -1, regions.shape[-1])
    score = np.zeros((batch, batch))
    for j in range(batch):
        for i in range(batch):
            e = words[i, : lengths[i]]
            c, _ = _region_attention_numpy(e, flat[j], gamma1)
            score[j, i] = _logsumexp(gamma2 * _cosine_numpy(e, c))
            if paper:
                score[j, i] /= gamma2
    return score


def _damsm_case(seed=20):
    """B = 4 images with 2×3 regions, captions of lengths (4, 2, 3, 1) whose padded words hold random values,
    D = 5; classes (3, −1, 3, −1): the pair (0, 2) is one class, the two unknowns are not."""
    rng = np.random.default_rng(seed)
    regions = rng.normal(0, 1.0, (4, 2, 3, 5))
    words = rng.normal(0, 1.0, (4, 4, 5))
    lengths = np.array([4, 2, 3, 1], np.int32)
    class_ids = np.array([3, -1, 3, -1], np.int32)
    return regions, words, lengths, class_ids


def check_cosine(module):
    import tensorflow as tf

    rng = np.random.default_rng(21)
    a, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)) * 3.0
    a[0, 0] = 0.0  # a zero vector: cos = 0 (the norm product is floored at eps)
    got = module.cosine(tf.constant(a, tf.float32), tf.constant(b, tf.float32))
    assert_close("cos(a, b) along the last axis", got, _cosine_numpy(a, b), 1e-5, 1e-7)
    got = module.cosine(tf.constant(a, tf.float32), tf.constant(b, tf.float32), axis=1)
    expected = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-8)
    assert_close("cos(a, b, axis=1)", got, expected, 1e-5, 1e-7)


def check_region_attention(module):
    import tensorflow as tf

    regions, words, lengths, _ = _damsm_case(22)
    flat = regions.reshape(4, 6, 5)
    gamma1 = GAMMAS[0]
    context, alpha = module.word_attention(tf.constant(words, tf.float32), tf.constant(flat, tf.float32),
                                           tf.constant(lengths), gamma1)
    assert_shape("c (B, T, D)", context, (4, 4, 5))
    assert_shape("α (B, T, R)", alpha, (4, 4, 6))
    for b in range(4):
        n = lengths[b]
        c, a = _region_attention_numpy(words[b, :n], flat[b], gamma1)
        assert_close(f"region context c_t of caption {b} (its {n} real words)", context.numpy()[b, :n], c, 1e-4, 1e-6)
        assert_close(f"α of caption {b} (its {n} real words)", alpha.numpy()[b, :n], a, 1e-4, 1e-6)


def check_matching_cross_entropy(module):
    import tensorflow as tf

    rng = np.random.default_rng(23)
    scores = rng.normal(0, 2.0, (5, 5))
    for class_ids, what in ((np.array([2, -1, 2, -1, 5], np.int32), "classes (2, −1, 2, −1, 5)"), (None, "no classes")):
        got = module.matching_cross_entropy(tf.constant(scores, tf.float32),
                                            None if class_ids is None else tf.constant(class_ids))
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed("matching_cross_entropy must return (image → caption, caption → image).")
        image_to_text, text_to_image = _matching_numpy(scores, class_ids)
        assert_close(f"image → caption cross-entropy, {what}", got[0], image_to_text, 1e-4, 1e-6)
        assert_close(f"caption → image cross-entropy, {what}", got[1], text_to_image, 1e-4, 1e-6)


def _words_loss_case(module, seed, paper=False):
    import tensorflow as tf

    regions, words, lengths, class_ids = _damsm_case(seed)
    got = module.words_loss(tf.constant(regions, tf.float32), tf.constant(words, tf.float32), tf.constant(lengths),
                            tf.constant(class_ids), *GAMMAS, paper_score=paper)
    score = _score_matrix_numpy(regions, words, lengths, GAMMAS[0], GAMMAS[1], paper)
    return got, _matching_numpy(GAMMAS[2] * score, class_ids)


def check_words_loss(module):
    got, (w0, w1) = _words_loss_case(module, 24)
    assert_close("w0 (image → caption), official R = log Σ_t exp(γ2·cos(e_t, c_t))", got[0], w0, 1e-4, 1e-6)
    assert_close("w1 (caption → image), official R", got[1], w1, 1e-4, 1e-6)


def check_words_loss_paper(module):
    got, (w0, w1) = _words_loss_case(module, 25, paper=True)
    assert_close("w0 with paper_score (R = (1/γ2)·log Σ_t exp(γ2·cos))", got[0], w0, 1e-4, 1e-6)
    assert_close("w1 with paper_score", got[1], w1, 1e-4, 1e-6)


def check_words_loss_masking(module):
    """Padded words, whatever their values (zeros, as the text encoder gives, or large), change nothing."""
    import tensorflow as tf

    regions, words, lengths, class_ids = _damsm_case(26)
    valid = (np.arange(4)[None, :] < lengths[:, None])[..., None]
    results = []
    for padding in (0.0, np.random.default_rng(27).normal(0, 30.0, words.shape)):
        results.append(module.words_loss(tf.constant(regions, tf.float32),
                                         tf.constant(np.where(valid, words, padding), tf.float32),
                                         tf.constant(lengths), tf.constant(class_ids), *GAMMAS))
    for k, name in ((0, "w0"), (1, "w1")):
        assert_close(f"{name} with the padded words at zero vs at large random values", results[1][k], results[0][k],
                     1e-4, 1e-6)


def check_sentence_loss(module):
    import tensorflow as tf

    rng = np.random.default_rng(28)
    image_global, sentence = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)) * 2.0
    class_ids = np.array([1, -1, 4, 1, -1], np.int32)
    got = module.sentence_loss(tf.constant(image_global, tf.float32), tf.constant(sentence, tf.float32),
                               tf.constant(class_ids), GAMMAS[2])
    scores = _cosine_numpy(image_global[:, None], sentence[None])  # (B_img, B_cap)
    s0, s1 = _matching_numpy(GAMMAS[2] * scores, class_ids)
    assert_close("s0 (image → caption), R = cos(v̄_j, ē_i)", got[0], s0, 1e-4, 1e-6)
    assert_close("s1 (caption → image)", got[1], s1, 1e-4, 1e-6)


def _words_loss64(regions, words, lengths, class_ids):
    """Eq. 7–13 in float64 TensorFlow, one (image, caption) pair at a time over the real words only."""
    import tensorflow as tf

    gamma1, gamma2, gamma3 = GAMMAS
    batch = len(lengths)
    flat = tf.reshape(regions, [batch, -1, regions.shape[-1]])
    rows = []
    for j in range(batch):
        row = []
        for i in range(batch):
            e, v = words[i, : lengths[i]], flat[j]
            s_bar = tf.nn.softmax(tf.matmul(v, e, transpose_b=True), axis=1)
            alpha = tf.nn.softmax(gamma1 * s_bar, axis=0)
            c = tf.matmul(alpha, v, transpose_a=True)
            cos = tf.reduce_sum(e * c, -1) / (tf.norm(e, axis=-1) * tf.norm(c, axis=-1))
            row.append(tf.reduce_logsumexp(gamma2 * cos))
        rows.append(tf.stack(row))
    scores = gamma3 * tf.stack(rows)
    masked = tf.constant(_same_class_numpy(class_ids) & ~np.eye(batch, dtype=bool))
    scores = tf.where(masked, tf.constant(-np.inf, tf.float64), scores)
    labels = tf.range(batch)
    return (tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scores),
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(scores)))


def check_words_loss_gradients(module):
    """∂(Σ u0·w0 + Σ u1·w1) w.r.t. the regions and the words; zero at the padded words."""
    import tensorflow as tf

    regions, words, lengths, class_ids = _damsm_case(29)
    rng = np.random.default_rng(30)
    u0, u1 = rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4)
    r32, w32 = tf.Variable(regions, dtype=tf.float32), tf.Variable(words, dtype=tf.float32)
    with tf.GradientTape() as tape:
        w0, w1 = module.words_loss(r32, w32, tf.constant(lengths), tf.constant(class_ids), *GAMMAS)
        loss = tf.reduce_sum(w0 * u0) + tf.reduce_sum(w1 * u1)
    got = tape.gradient(loss, [r32, w32])
    r64, w64 = tf.Variable(regions), tf.Variable(words)
    with tf.GradientTape() as tape:
        w0, w1 = _words_loss64(r64, w64, lengths, class_ids)
        loss = tf.reduce_sum(w0 * u0) + tf.reduce_sum(w1 * u1)
    want = tape.gradient(loss, [r64, w64])
    assert_close("∂L/∂v (the regions) through the word loss", got[0], want[0], 2e-3, 1e-5)
    assert_close("∂L/∂e (the words; zero at padding) through the word loss", got[1], want[1], 2e-3, 1e-5)


def check_damsm_tf_function(module):
    """words_loss and sentence_loss in one graph traced with an unknown batch size and caption length."""
    import tensorflow as tf

    compiled = tf.function(lambda r, w, n, k, g, s: (module.words_loss(r, w, n, k, *GAMMAS),
                                                    module.sentence_loss(g, s, k, GAMMAS[2])), input_signature=[
        tf.TensorSpec([None, 2, 3, 5], tf.float32), tf.TensorSpec([None, None, 5], tf.float32),
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, 5], tf.float32),
        tf.TensorSpec([None, 5], tf.float32)])
    regions, words, lengths, class_ids = _damsm_case(31)
    rng = np.random.default_rng(32)
    image_global, sentence = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    (w0, w1), (s0, s1) = compiled(*(tf.constant(x, tf.float32) for x in (regions, words)), tf.constant(lengths),
                                  tf.constant(class_ids), *(tf.constant(x, tf.float32) for x in (image_global, sentence)))
    expected_w = _matching_numpy(GAMMAS[2] * _score_matrix_numpy(regions, words, lengths, *GAMMAS[:2]), class_ids)
    expected_s = _matching_numpy(GAMMAS[2] * _cosine_numpy(image_global[:, None], sentence[None]), class_ids)
    for name, got, want in (("w0", w0, expected_w[0]), ("w1", w1, expected_w[1]), ("s0", s0, expected_s[0]),
                            ("s1", s1, expected_s[1])):
        assert_close(f"{name} under tf.function (unknown batch size)", got, want, 1e-4, 1e-6)


DAMSM_LOSSES = Task(
    name="damsm_losses",
    title="DAMSM: word-level and sentence-level matching losses",
    module=DAMSM,
    week="2-week",
    stubs={
        "attention_weights": """Eq. 7–8. Cast words (…, T, D) and regions (…, R, D) to float32 (leading dimensions broadcast).
s[r, t] = v_rᵀ e_t (…, R, T); s̄ = softmax over the words of s, the padded words (t ≥ lengths) excluded
(−∞ before the softmax; tf.sequence_mask); α = softmax over the regions of γ1·s̄.
Return (s unmasked, α), both (…, R, T).""",
        "word_attention": """Eq. 9. α from attention_weights; c_t = Σ_r α[r, t] v_r (regions cast to float32).
Return (c (…, T, D), α transposed to (…, T, R)).""",
        "cosine": """Return cos(a, b) along `axis` as PyTorch's cosine_similarity: Σ a·b / max(‖a‖·‖b‖, eps).""",
        "matching_cross_entropy": """scores (B_images, B_captions): the match of image j is caption j. With class_ids given, set the
other pairs of one class to −∞ (they are not negatives; use same_class, where class −1 is its own
class; never the diagonal). Return the per-example cross-entropies (B,) of each image choosing its
caption among the row, and of each caption choosing its image among the column:
(image → caption, caption → image).""",
        "words_loss": """regions (B, R, D) are float32 (flattened above); words (B, T, D): cast them to float32. For every image j and caption i at once (image axis first): c = word_attention of caption i's words
against image j's regions (γ1), or, faster where R < D, cos(e_t, c_t) from s and α of attention_weights without
forming c (e_t·c_t = Σ_r α s, ‖c_t‖² = α_tᵀ V Vᵀ α_t); R_ji = log Σ_t exp(γ2·cos(e_t, c_t)) over caption i's real words only
(Eq. 10 as the official code; tf.reduce_logsumexp); with paper_score, R_ji / γ2 (the paper's 1/γ2
power). Return matching_cross_entropy(γ3·R, class_ids): (w0, w1).""",
        "sentence_loss": """Cast both to float32; R_ji = cos(v̄_j, ē_i) for image j (rows) and caption i (columns), (B, B);
return matching_cross_entropy(γ3·R, class_ids): (s0, s1).""",
    },
    checks=(
        Check("cosine similarity", 1, check_cosine,
              "divide the dot product by the product of the two norms (floored at eps)."),
        Check("region context c_t and α (Eq. 7–9)", 3, check_region_attention,
              "first normalise s over the words (padded words at −∞), then a softmax over the regions of γ1·s̄."),
        Check("matching cross-entropy, both directions, same-class pairs masked", 3, check_matching_cross_entropy,
              "rows: each image picks its caption; columns: each caption picks its image. Same-class pairs other "
              "than the diagonal are −∞; an example of class −1 is of its own class only (same_class)."),
        Check("word loss w0, w1 (official score)", 3, check_words_loss,
              "R = log Σ_t exp(γ2·cos(e_t, c_t)) over the real words; the batch softmax is of γ3·R."),
        Check("word loss with the paper's 1/γ2", 1, check_words_loss_paper,
              "paper_score divides the log-sum-exp by γ2."),
        Check("word loss: padding words change nothing", 1, check_words_loss_masking,
              "mask the padded words both in the attention and in the log-sum-exp over the words."),
        Check("sentence loss s0, s1", 2, check_sentence_loss,
              "R = cos(v̄_j, ē_i) with images on the rows, scaled by γ3."),
        Check("word-loss gradients w.r.t. regions and words", 2, check_words_loss_gradients,
              "gradients must be finite despite the −∞ entries and zero at padded words (mask with tf.where)."),
        Check("both losses under tf.function (unknown batch)", 1, check_damsm_tf_function,
              "use tf.shape for the batch size, not len() or a Python int."),
    ),
    mutations=(
        Mutation("softmaxes over swapped axes", "tf.nn.softmax(gamma1 * tf.nn.softmax(scores, axis=-1), axis=-2)",
                 "tf.nn.softmax(gamma1 * tf.nn.softmax(scores, axis=-2), axis=-1)"),
        Mutation("γ1 applied as 1/γ1", "gamma1 * tf.nn.softmax(", "(1.0 / gamma1) * tf.nn.softmax("),
        Mutation("padding not masked in the attention", "scores = tf.where(valid, raw, NEGATIVE_INFINITY)",
                 "scores = raw"),
        Mutation("α normalised a second time before the context", "tf.matmul(attention, tf.cast(regions",
                 "tf.matmul(tf.nn.softmax(attention, axis=-2), tf.cast(regions"),
        Mutation("‖c_t‖² without the Gram matrix", "attention * tf.matmul(gram, attention)", "attention * attention"),
        Mutation("e_t·c_t from the attention alone", "tf.reduce_sum(attention * scores, axis=-2)",
                 "tf.reduce_sum(attention, axis=-2)"),
        Mutation("cosine without normalisation",
                 "tf.reduce_sum(a * b, axis) / tf.sqrt(tf.maximum(squared_norms, eps * eps))",
                 "tf.reduce_sum(a * b, axis)"),
        Mutation("γ2 missing", "similarity = gamma2 * dot", "similarity = dot"),
        Mutation("padding not masked in the log-sum-exp", "tf.where(valid, similarity, NEGATIVE_INFINITY)", "similarity"),
        Mutation("paper exponent 1/γ2 as γ2", "score = score / gamma2", "score = score * gamma2"),
        Mutation("γ3 missing in the word loss", "matching_cross_entropy(gamma3 * score, class_ids)",
                 "matching_cross_entropy(score, class_ids)"),
        Mutation("γ3 applied as 1/γ3 in the sentence loss", "matching_cross_entropy(gamma3 * scores, class_ids)",
                 "matching_cross_entropy(scores / gamma3, class_ids)"),
        Mutation("loss in one direction only", "labels, tf.transpose(scores))", "labels, scores)"),
        Mutation("same-class negatives not masked",
                 "scores = tf.where(same_class(class_ids) & ~tf.eye(batch, dtype=tf.bool), NEGATIVE_INFINITY, scores)",
                 "scores = scores"),
        Mutation("class −1 treated as one shared class", "same_class(class_ids) & ~tf.eye",
                 "tf.equal(class_ids[:, None], class_ids[None, :]) & ~tf.eye"),
        Mutation("images and captions swapped in the sentence scores",
                 "cosine(global_features[:, None], sentence[None])", "cosine(global_features[None], sentence[:, None])"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 3: an attentional generator stage
class _RecordingAttention:
    """Stands in for F^attn of one stage: records (h, mask) and returns context = tanh(a ⊙ h) and float16 maps
    mask[b, t]·mean_c h[b, y, x, c] (so that the cast to float32 shows)."""

    def __init__(self, scale):
        self.scale, self.calls = scale, []

    def __call__(self, h, words, mask):
        import tensorflow as tf

        self.calls.append((h.numpy(), mask.numpy(), mask.dtype))
        context = tf.tanh(h * tf.constant(self.scale, h.dtype))
        maps = tf.cast(mask, tf.float16)[:, :, None, None] * tf.cast(tf.reduce_mean(h, -1), tf.float16)[:, None]
        return context, maps


class _RecordingResidual:
    """Stands in for a residual block: records (x, training), returns x ⊙ s + t (per channel)."""

    def __init__(self, scale, shift):
        self.scale, self.shift, self.calls = scale, shift, []

    def __call__(self, x, training=None):
        import tensorflow as tf

        self.calls.append((x.numpy(), training))
        return x * tf.constant(self.scale, x.dtype) + tf.constant(self.shift, x.dtype)


class _RecordingUp:
    """Stands in for the up-block (2C → C, ×2): nearest ×2 of x[..., :C] + ½·x[..., C:]; records (x, training)."""

    def __init__(self, channels):
        self.channels, self.calls = channels, []

    def __call__(self, x, training=None):
        import tensorflow as tf

        self.calls.append((x.numpy(), training))
        y = x[..., : self.channels] + 0.5 * x[..., self.channels:]
        return tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2)


class _RecordingHead:
    """Stands in for a stage's to-image conv: records the stage's features."""

    def __init__(self):
        self.calls = []

    def __call__(self, features):
        import tensorflow as tf

        self.calls.append(features.numpy())
        return tf.tile(features[..., :1], [1, 1, 1, 3])


def _small_generator(module, seed, stages=3, residual_blocks=2):
    import tensorflow as tf

    generator = module.AttnGanGenerator(noise_dim=4, condition_dim=3, base_width=2, stages=stages, base_size=8,
                                        residual_blocks=residual_blocks)
    generator([tf.zeros((2, 4)), tf.zeros((2, 6)), tf.zeros((2, 5, 6)), tf.ones((2, 5), tf.bool)])
    rng = np.random.default_rng(seed)
    for variable in generator.trainable_variables:
        variable.assign(rng.normal(0, 0.4, variable.shape).astype(np.float32))
    return generator


def _generator_inputs(seed, lengths=(5, 3)):
    rng = np.random.default_rng(seed)
    z, sentence = rng.normal(size=(2, 4)), rng.normal(size=(2, 6))
    words, epsilon = rng.normal(size=(2, 5, 6)), rng.normal(size=(2, 3))
    mask = np.arange(5)[None, :] < np.array(lengths)[:, None]
    return z, sentence, words, mask, epsilon


def _as_tensors(z, sentence, words, mask, epsilon, mask_dtype=None):
    import tensorflow as tf

    mask = tf.constant(mask) if mask_dtype is None else tf.constant(mask.astype(mask_dtype))
    return [tf.constant(z, tf.float32), tf.constant(sentence, tf.float32), tf.constant(words, tf.float32), mask,
            tf.constant(epsilon, tf.float32)]


def check_stage_trace(module):
    """Stand-ins with closed forms for F^attn, the residual blocks and the up-blocks: every stage's inputs and
    outputs against the NumPy recurrence h_k = up(res(…res([h_{k−1}, F^attn(h_{k−1})])))."""
    generator = _small_generator(module, 40)
    channels = 2
    rng = np.random.default_rng(41)
    attentions = [_RecordingAttention(rng.normal(0, 1.0, channels)) for _ in range(2)]
    residuals = [[_RecordingResidual(rng.uniform(0.5, 1.5, 2 * channels), rng.normal(0, 0.3, 2 * channels))
                  for _ in range(2)] for _ in range(2)]
    ups = [_RecordingUp(channels) for _ in range(2)]
    heads = [_RecordingHead() for _ in range(3)]
    generator.attentions, generator.residuals, generator.next_ups, generator.to_images = attentions, residuals, ups, heads
    z, sentence, words, mask, epsilon = _generator_inputs(42)
    images, maps, _, _ = generator(_as_tensors(z, sentence, words, mask, epsilon, mask_dtype=np.int32), training=True)
    if len(heads[0].calls) != 1:
        raise CheckFailed("each stage's features must reach its to-image head once (features = [h₁, h₂, h₃]).")
    h = heads[0].calls[0]  # h₁, stage 1's output (computed before the region)
    for k in range(2):
        if len(attentions[k].calls) != 1:
            raise CheckFailed(f"the attention of stage {k + 2} was called {len(attentions[k].calls)} times, expected once.")
        got_h, got_mask, mask_dtype = attentions[k].calls[0]
        assert_close(f"stage {k + 2}: the attention's input h (the previous stage's output)", got_h, h, 1e-5, 1e-6)
        if mask_dtype.name != "bool" or not np.array_equal(got_mask, mask):
            raise CheckFailed(f"stage {k + 2}: the attention must receive the word mask as booleans (True for real "
                              f"words); it received {mask_dtype.name} {got_mask.astype(int).tolist()}.")
        x = np.concatenate([h, np.tanh(h * attentions[k].scale)], axis=-1)  # [h, context], h first
        for r, block in enumerate(residuals[k]):
            if len(block.calls) != 1:
                raise CheckFailed(f"stage {k + 2}: residual block {r + 1} was called {len(block.calls)} times, expected once.")
            assert_close(f"stage {k + 2}: input of residual block {r + 1}", block.calls[0][0], x, 1e-5, 1e-6)
            if block.calls[0][1] is not True:
                raise CheckFailed(f"stage {k + 2}: residual block {r + 1} got training={block.calls[0][1]!r}; pass the "
                                  "generator's training flag (BatchNorm must use batch statistics in training).")
            x = x * block.scale + block.shift
        if len(ups[k].calls) != 1:
            raise CheckFailed(f"stage {k + 2}: the up-block was called {len(ups[k].calls)} times, expected once.")
        assert_close(f"stage {k + 2}: input of the up-block", ups[k].calls[0][0], x, 1e-5, 1e-6)
        if ups[k].calls[0][1] is not True:
            raise CheckFailed(f"stage {k + 2}: the up-block got training={ups[k].calls[0][1]!r}; pass training.")
        y = x[..., :channels] + 0.5 * x[..., channels:]
        expected_map = mask[:, :, None, None] * np.mean(h, -1)[:, None]
        h = y.repeat(2, axis=1).repeat(2, axis=2)
        assert_close(f"stage {k + 2}: its features h_{k + 2} (the up-block's output)", heads[k + 1].calls[0], h, 1e-5, 1e-6)
        if maps[k].dtype.name != "float32":
            raise CheckFailed(f"attention maps of stage {k + 2} are {maps[k].dtype.name}; cast them to float32.")
        assert_close(f"stage {k + 2}: its attention maps", maps[k], expected_map, 2e-3, 1e-4)
    if len(maps) != 2 or len(images) != 3:
        raise CheckFailed(f"3 stages give 3 images and 2 attention maps, not {len(images)} and {len(maps)}.")


def check_stage_padding(module):
    """The real generator: the padded words' values change no image, and receive no attention."""
    import tensorflow as tf

    generator = _small_generator(module, 43)
    z, sentence, words, mask, epsilon = _generator_inputs(44, lengths=(5, 2))
    images, maps, _, _ = generator(_as_tensors(z, sentence, words, mask, epsilon), training=False)
    noisy = np.where(mask[..., None], words, np.random.default_rng(45).normal(0, 20.0, words.shape))
    other_images, other_maps, _, _ = generator(_as_tensors(z, sentence, noisy, mask, epsilon), training=False)
    for k in range(3):
        assert_close(f"stage {k + 1} image with other values at the padded words", other_images[k], images[k], 1e-4, 1e-5)
    for k in range(2):
        padded = tf.convert_to_tensor(maps[k]).numpy()[1, 2:]
        if np.any(padded != 0.0):
            raise CheckFailed(f"stage {k + 2}: padded words receive attention; pass the word mask to the attention.")


def check_stage_shapes_tf_function(module):
    """Shapes and dtypes per stage, and the same images eagerly and under tf.function."""
    import tensorflow as tf

    generator = _small_generator(module, 46)
    inputs = _as_tensors(*_generator_inputs(47))
    images, maps, _, _ = generator(inputs, training=False)
    for k, size in enumerate((8, 16, 32)):
        assert_shape(f"stage {k + 1} image", images[k], (2, size, size, 3))
    for k, size in enumerate((8, 16)):
        assert_shape(f"stage {k + 2} attention maps", maps[k], (2, 5, size, size))
        if maps[k].dtype != tf.float32:
            raise CheckFailed(f"stage {k + 2} attention maps are {maps[k].dtype.name}, expected float32.")
    compiled = tf.function(lambda x: generator(x, training=False))
    graph_images, graph_maps, _, _ = compiled(inputs)
    for k in range(3):
        assert_close(f"stage {k + 1} image under tf.function vs eager", graph_images[k], images[k], 1e-4, 1e-5)
    for k in range(2):
        assert_close(f"stage {k + 2} maps under tf.function vs eager", graph_maps[k], maps[k], 1e-4, 1e-5)


ATTENTION_STAGE = Task(
    name="attention_stage",
    title="AttnGAN's attentional generator stages",
    module=MODEL,
    week="1-week",
    stubs={
        "AttnGanGenerator.call": """Above this region: h (B, H, W, ngf) is stage 1's output, features = [h] and attention_maps = [].
Eq. 1, h_k = F_k([h_{k−1}, F^attn_k(e, h_{k−1})]): for each later stage, zip(self.attentions,
self.residuals, self.next_ups): context, maps = attention(h, words, word_mask as booleans) with h the
previous stage's output; h = [h, context] concatenated on the channels, h first (2·ngf); every residual
block of the stage in turn; then the stage's up-block (→ ngf, twice the size); pass training=training
to the blocks. Append the stage's h to features and its maps, cast to float32, to attention_maps.""",
    },
    checks=(
        Check("each stage: attention of the previous h, [h, c], residual blocks, up-block", 5, check_stage_trace,
              "stage k attends with h_{k−1} (not stage 1's h); concatenate [h, context] with h first; run every "
              "residual block, then the up-block; features collects the up-block's output."),
        Check("padding words change no image", 2, check_stage_padding,
              "give the attention the word mask (as booleans), so that padded words get no attention."),
        Check("shapes, dtypes and tf.function", 2, check_stage_shapes_tf_function,
              "one image per stage, one (B, T, H, W) float32 map per attention stage; no numpy inside call."),
    ),
    mutations=(
        Mutation("[context, h] instead of [h, context]", "tf.concat([h, context], axis=-1)",
                 "tf.concat([context, h], axis=-1)"),
        Mutation("every stage attends with stage 1's h", "attention(h, words,", "attention(features[0], words,"),
        Mutation("word mask not passed", "tf.cast(word_mask, tf.bool)", "tf.ones_like(word_mask, dtype=tf.bool)"),
        Mutation("only the first residual block", "            for block in residuals:\n"
                 "                h = block(h, training=training)\n",
                 "            h = residuals[0](h, training=training)\n"),
        Mutation("training flag not passed to the residual blocks", "h = block(h, training=training)", "h = block(h)"),
        Mutation("features collected before the up-block", "            h = up(h, training=training)\n"
                 "            features.append(h)\n", "            features.append(h)\n            h = up(h, training=training)\n"),
        Mutation("up-block before the residual blocks", "            for block in residuals:\n"
                 "                h = block(h, training=training)\n            h = up(h, training=training)\n",
                 "            h = up(h, training=training)\n            for block in residuals:\n"
                 "                h = block(h, training=training)\n"),
        Mutation("maps not cast to float32", "attention_maps.append(tf.cast(maps, tf.float32))",
                 "attention_maps.append(maps)"),
    ),
    hidden_files=HIDDEN,
)

TASKS = [WORD_ATTENTION, DAMSM_LOSSES, ATTENTION_STAGE]

if __name__ == "__main__":
    main(TASKS, chapter=3, tasks_file=__file__)
