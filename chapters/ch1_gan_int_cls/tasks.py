"""Chapter 1 assignments: GAN-CLS's matching-aware discriminator loss, GAN-INT's interpolated captions (in
the generator's loss and in the sampling walk), the DS-SJE joint-embedding loss and Reed's char-CNN-RNN
encoder φ(t) — with the grader's checks and the typical mistakes it must catch.

Every expected value is computed here from the paper's equation (NumPy, or a float64 TensorFlow
transcription where a gradient is needed), never by calling the reference code, so grading the
reference in ``make test`` also catches a bug planted in the reference. Kept out of student copies.

    make assignment CHAPTER=1 OUT=hw1 [TASKS=gan_cls_loss,gan_int]
    make grade CHAPTER=1 STUDENT=hw1
"""

from __future__ import annotations

import types

import numpy as np

from t2igan.assignments import (Check, CheckFailed, Mutation, Task, assert_close, assert_shape, numerical_gradient,
                                two_replicas)
from t2igan.assignments.cli import main

MODEL = "chapters.ch1_gan_int_cls.model"
ENCODER = "chapters.ch1_gan_int_cls.char_cnn_rnn"
SAMPLE = "chapters.ch1_gan_int_cls.sample"
HIDDEN = ("tests/test_chapter01_model.py",)  # its DS-SJE loop and D-loss weights are golden tests of these lines


# ------------------------------------------------------------------ shared helpers
def _softplus(x):
    return np.logaddexp(0.0, x)


def _bce_numpy(logits, label):
    """BCE(sigmoid(l), label) = softplus(l) − label·l: label 1 → −log s, label 0 → −log(1 − s)."""
    return _softplus(logits) - label * logits


class _ClosedFormDiscriminator:
    """Stands in for D: logit(x, t) = mean_hw(x)·a + t·b + c, with random a (C,), b (D,), c; records each call's
    (images, text) and batch size."""

    def __init__(self, channels=3, text_dim=4, seed=0):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        self.a = tf.Variable(rng.normal(0, 1.0, channels), dtype=tf.float32)
        self.b = tf.Variable(rng.normal(0, 0.8, text_dim), dtype=tf.float32)
        self.c = tf.Variable(rng.normal(0, 0.3), dtype=tf.float32)
        self.trainable_variables = [self.a, self.b, self.c]
        self.calls = []

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        images, text = inputs
        if tf.executing_eagerly():
            self.calls.append((np.asarray(images), np.asarray(text)))
        else:
            self.calls.append((None, None))
        return tf.reduce_sum(tf.reduce_mean(images, [1, 2]) * self.a, -1) + tf.reduce_sum(text * self.b, -1) + self.c

    def numpy_logits(self, images, text):
        return images.mean((1, 2)) @ self.a.numpy() + text @ self.b.numpy() + float(self.c.numpy())

    def logits64(self, images, text, variables):
        """The same D in float64 on float64 copies ``variables`` = (a, b, c)."""
        import tensorflow as tf

        a, b, c = variables
        return tf.reduce_sum(tf.reduce_mean(images, [1, 2]) * a, -1) + tf.reduce_sum(text * b, -1) + c


def _ensure_calls(calls, expected, what):
    if len(calls) != expected:
        raise CheckFailed(f"{what}: D was called {len(calls)} times, expected {expected}.")


# ------------------------------------------------------------------ task 1: GAN-CLS's discriminator loss
def _cls_case(seed=0, batch=4):
    rng = np.random.default_rng(seed)
    shape = (batch, 3, 3, 3)
    real, wrong, fake = (rng.normal(0, 1.0, shape) for _ in range(3))
    text = rng.normal(0, 1.0, (batch, 4))
    return real, wrong, fake, text


def _global_average():
    from t2igan.training.gan import ConditionalGAN

    return ConditionalGAN.average  # the mean over the global batch (a plain mean on one replica)


def _cls_self(discriminator, cls_weight, matching_aware):
    return types.SimpleNamespace(discriminator=discriminator, cls_weight=cls_weight, matching_aware=matching_aware,
                                 average=_global_average())


def _run_cls(module, seed, cls_weight=0.3, matching_aware=True):
    import tensorflow as tf

    d = _ClosedFormDiscriminator(seed=seed)
    real, wrong, fake, text = _cls_case(seed + 1)
    result = module.GanIntCls.discriminator_loss(_cls_self(d, cls_weight, matching_aware), *(
        tf.constant(v, tf.float32) for v in (real, wrong, fake, text)))
    if not isinstance(result, (tuple, list)) or len(result) != 3 or len(result[2]) != 3:
        raise CheckFailed("discriminator_loss must return (L_D, per-example L_D, (real_logits, wrong_logits, "
                          "fake_logits)).")
    logits = [d.numpy_logits(images, text) for images in (real, wrong, fake)]
    return d, result, logits, (real, wrong, fake, text)


def check_cls_value(module):
    """w_cls = 0.3 (not ½): the weights of the wrong and the fake term must not be interchangeable."""
    _, (mean, loss, _), (real, wrong, fake), _ = _run_cls(module, 10)
    assert_shape("L_D per example", loss, (4,))
    expected = _bce_numpy(real, 1) + 0.3 * _bce_numpy(wrong, 0) + 0.7 * _bce_numpy(fake, 0)
    assert_close("L_D = −[log s_r + w_cls·log(1 − s_w) + (1 − w_cls)·log(1 − s_f)], w_cls = 0.3", loss, expected, 1e-4)
    assert_close("L_D, the batch mean of the per-example values", mean, expected.mean(), 1e-4)


def check_cls_half_weights(module):
    """Reed's Algorithm 1: L_D = log s_r + ½(log(1 − s_w) + log(1 − s_f)) at w_cls = ½."""
    _, (_, loss, _), (real, wrong, fake), _ = _run_cls(module, 11, cls_weight=0.5)
    expected = _bce_numpy(real, 1) + 0.5 * (_bce_numpy(wrong, 0) + _bce_numpy(fake, 0))
    assert_close("L_D at w_cls = ½ (Algorithm 1)", loss, expected, 1e-4)


def check_cls_logits(module):
    _, (_, _, logits), expected, _ = _run_cls(module, 12)
    for name, got, want in zip(("real_logits D(x, t)", "wrong_logits D(x̂, t)", "fake_logits D(G(z, t), t)"),
                               logits, expected):
        assert_close(f"returned {name}", got, want, 1e-4)


def check_cls_three_passes(module):
    d, _, _, (real, wrong, fake, text) = _run_cls(module, 13)
    _ensure_calls(d.calls, 3, "the D step (three pairs, three separate passes of B rows)")
    expected = {"real x": real, "fake G(z, t)": fake, "wrong x̂": wrong}
    seen = []
    for images, caption in d.calls:
        if images.shape[0] != len(real):
            raise CheckFailed(f"D was called on {images.shape[0]} rows, expected {len(real)} per pass "
                              "(one pass per kind of pair, not one concatenated batch).")
        assert_close("the caption paired with every image (the right caption t)", caption, text, 1e-6)
        match = [name for name, value in expected.items() if np.allclose(images, value, atol=1e-6)]
        seen += match
    if sorted(seen) != sorted(expected):
        raise CheckFailed(f"D's three passes saw the images {seen}, expected each of {sorted(expected)} once.")


def check_cls_plain(module):
    """matching_aware=False (w_cls = 0, as __init__ sets it): no wrong pass; the wrong logits are the real ones."""
    d, (_, loss, logits), (real, _, fake), _ = _run_cls(module, 14, cls_weight=0.0, matching_aware=False)
    assert_close("L_D of a plain conditional GAN", loss, _bce_numpy(real, 1) + _bce_numpy(fake, 0), 1e-4)
    _ensure_calls(d.calls, 2, "without matching_aware (real and fake pairs only)")
    assert_close("wrong_logits (the real logits, for the logs)", logits[1], real, 1e-4)


def check_cls_gradients(module):
    """∂L_D / ∂(D's weights) against a float64 transcription; no gradient reaches G's image."""
    import tensorflow as tf

    d = _ClosedFormDiscriminator(seed=15)
    real, wrong, fake, text = _cls_case(16)
    fake_variable = tf.Variable(fake, dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        loss, _, _ = module.GanIntCls.discriminator_loss(_cls_self(d, 0.3, True), tf.constant(real, tf.float32),
                                                         tf.constant(wrong, tf.float32), fake_variable,
                                                         tf.constant(text, tf.float32))
    got = tape.gradient(loss, d.trainable_variables)
    to_fake = tape.gradient(loss, fake_variable)
    variables = [tf.Variable(v.numpy().astype(np.float64)) for v in d.trainable_variables]
    r64, w64, f64, t64 = (tf.constant(v, tf.float64) for v in (real, wrong, fake, text))
    with tf.GradientTape() as tape64:
        logits = [d.logits64(images, t64, variables) for images in (r64, w64, f64)]
        loss64 = tf.reduce_mean(tf.nn.softplus(-logits[0]) + 0.3 * tf.nn.softplus(logits[1])
                                + 0.7 * tf.nn.softplus(logits[2]))
    want = tape64.gradient(loss64, variables)
    for name, g, w in zip(("a", "b", "c"), got, want):
        assert_close(f"∂L_D/∂{name} (D's weights)", g, w, 1e-4, 1e-7)
    if to_fake is not None and np.abs(to_fake.numpy()).max() > 0:
        raise CheckFailed("a gradient reaches G's image through D's loss (max |∂L_D/∂G(z, t)| = "
                          f"{np.abs(to_fake.numpy()).max():.3g}); D's step must not train G.")


def check_cls_tf_function(module):
    import tensorflow as tf

    d = _ClosedFormDiscriminator(seed=17)
    inputs = [tf.constant(v, tf.float32) for v in _cls_case(18)]
    eager = module.GanIntCls.discriminator_loss(_cls_self(d, 0.3, True), *inputs)[1]
    graph = tf.function(lambda *x: module.GanIntCls.discriminator_loss(_cls_self(d, 0.3, True), *x)[1])(*inputs)
    assert_close("L_D under tf.function vs eager", graph, eager, 1e-5, 1e-6)


def check_cls_two_replicas(module):
    """Two replicas with half the batch each: their L_D must add up to the mean over the whole batch."""
    import tensorflow as tf

    d = _ClosedFormDiscriminator(seed=19)
    real, wrong, fake, text = _cls_case(20)
    halves = [[tf.constant(v[h * 2:(h + 1) * 2], tf.float32) for v in (real, wrong, fake, text)] for h in range(2)]
    results = two_replicas(lambda *x: module.GanIntCls.discriminator_loss(_cls_self(d, 0.3, True), *x)[0], halves)
    logits = [d.numpy_logits(images, text) for images in (real, wrong, fake)]
    expected = (_bce_numpy(logits[0], 1) + 0.3 * _bce_numpy(logits[1], 0) + 0.7 * _bce_numpy(logits[2], 0)).mean()
    assert_close("sum over 2 replicas of L_D", float(results[0]) + float(results[1]), expected, 1e-4)


GAN_CLS_LOSS = Task(
    name="gan_cls_loss",
    title="GAN-CLS: the matching-aware discriminator loss",
    module=MODEL,
    week="1-week",
    stubs={
        "GanIntCls.discriminator_loss": """Three D passes, each self.discriminator([images, text], training=True) on B rows, in this order:
real_logits of (real_images, text); fake_logits of (fake_images, text), with fake_images wrapped in
tf.stop_gradient (D's step trains D only); then, if self.matching_aware, wrong_logits of (wrong_images, text).
Per example, with w = self.cls_weight and bce_with_logits(logits, label) (label 1: −log s, 0: −log(1 − s)):
  L_D = BCE(real_logits, 1) + (1 − w)·BCE(fake_logits, 0) + w·BCE(wrong_logits, 0)
(the wrong term only with matching_aware; without it wrong_logits = real_logits, for the logs).
Return (self.average(L_D), L_D (B,), (real_logits, wrong_logits, fake_logits)): self.average is the mean over
the global batch (correct under tf.distribute), not tf.reduce_mean.""",
    },
    checks=(
        Check("L_D per example at w_cls = 0.3", 3, check_cls_value,
              "three terms: the real pair is labelled 1, the wrong and the fake pair 0; the wrong pair weighs w_cls, "
              "the fake pair 1 − w_cls."),
        Check("L_D at w_cls = ½ (Reed's Algorithm 1)", 1, check_cls_half_weights,
              "log s_r + ½(log(1 − s_w) + log(1 − s_f)): each term once, the last two with weight ½."),
        Check("the returned logits (real, wrong, fake)", 1, check_cls_logits,
              "return the three logits in the order (real, wrong, fake)."),
        Check("three separate D passes with the right caption", 1, check_cls_three_passes,
              "one D call per kind of pair (real x, wrong x̂, fake G(z, t)), each with the batch's own captions; "
              "do not concatenate them into one batch (BatchNorm)."),
        Check("plain conditional GAN (matching_aware=False)", 1, check_cls_plain,
              "without matching_aware skip the wrong pass and its term; return the real logits as wrong_logits."),
        Check("gradients: D's weights, and none into G", 2, check_cls_gradients,
              "stop the gradient at G's image (tf.stop_gradient(fake)); nothing else is stopped."),
        Check("L_D under tf.function", 1, check_cls_tf_function, "no numpy or Python-side values inside the loss."),
        Check("L_D under 2 replicas (global-batch average)", 1, check_cls_two_replicas,
              "average with self.average, not tf.reduce_mean: under N replicas each replica's loss must be its share "
              "of the global mean."),
    ),
    mutations=(
        Mutation("no stop_gradient on G's image", "[tf.stop_gradient(fake_images), text]", "[fake_images, text]"),
        Mutation("stop_gradient on the real logits", "bce_with_logits(real_logits, 1.0)",
                 "bce_with_logits(tf.stop_gradient(real_logits), 1.0)"),
        Mutation("wrong-text term dropped", "            per_example += self.cls_weight * bce_with_logits(wrong_logits, 0.0)\n",
                 ""),
        Mutation("w_cls and 1 − w_cls swapped",
                 "(1.0 - self.cls_weight) * bce_with_logits(fake_logits, 0.0)\n"
                 "        if self.matching_aware:  # GAN-CLS: a real image with the wrong caption is \"fake\" too\n"
                 "            wrong_logits = self.discriminator([wrong_images, text], training=True)\n"
                 "            per_example += self.cls_weight * bce_with_logits(wrong_logits, 0.0)",
                 "self.cls_weight * bce_with_logits(fake_logits, 0.0)\n"
                 "        if self.matching_aware:\n"
                 "            wrong_logits = self.discriminator([wrong_images, text], training=True)\n"
                 "            per_example += (1.0 - self.cls_weight) * bce_with_logits(wrong_logits, 0.0)"),
        Mutation("fake term without its ½ weight", "(1.0 - self.cls_weight) * bce_with_logits(fake_logits, 0.0)",
                 "bce_with_logits(fake_logits, 0.0)"),
        Mutation("fake pair labelled real: log s_f for log(1 − s_f)", "bce_with_logits(fake_logits, 0.0)",
                 "bce_with_logits(fake_logits, 1.0)"),
        Mutation("real pair with log(1 − s_r)", "bce_with_logits(real_logits, 1.0)", "bce_with_logits(real_logits, 0.0)"),
        Mutation("the wrong pair is the real pair again", "self.discriminator([wrong_images, text], training=True)",
                 "self.discriminator([real_images, text], training=True)"),
        Mutation("tf.reduce_mean instead of the global average", "return self.average(per_example), per_example, (",
                 "return tf.reduce_mean(per_example), per_example, ("),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 2: GAN-INT in the generator's loss
class _ClosedFormGenerator:
    """Stands in for G: images = tanh(z·A + t·B) viewed (B, 2, 2, 3); records each call's (z, t)."""

    def __init__(self, noise_dim=3, text_dim=4, seed=0):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        self.A = tf.Variable(rng.normal(0, 0.7, (noise_dim, 12)), dtype=tf.float32)
        self.B = tf.Variable(rng.normal(0, 0.7, (text_dim, 12)), dtype=tf.float32)
        self.trainable_variables = [self.A, self.B]
        self.calls = []

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        noise, text = inputs
        if tf.executing_eagerly():
            self.calls.append((np.asarray(noise), np.asarray(text)))
        return tf.reshape(tf.tanh(noise @ self.A + text @ self.B), [-1, 2, 2, 3])

    def numpy_images(self, noise, text):
        return np.tanh(noise @ self.A.numpy() + text @ self.B.numpy()).reshape(-1, 2, 2, 3)


BETA, INTERP_WEIGHT = 0.3, 0.6  # β ≠ ½ (t₁ and t₂ must not be interchangeable), w = ½·0.6 = 0.3


def _int_case(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))


def _int_self(seed, interpolation=True):
    g, d = _ClosedFormGenerator(seed=seed), _ClosedFormDiscriminator(text_dim=4, seed=seed + 1)
    return types.SimpleNamespace(generator=g, discriminator=d, interpolation=interpolation, interp_beta=BETA,
                                 interp_weight=INTERP_WEIGHT, average=_global_average())


def _int_expected(fake_self, noise, noise2, text, partner, interpolation=True):
    g, d = fake_self.generator, fake_self.discriminator
    real_text = _bce_numpy(d.numpy_logits(g.numpy_images(noise, text), text), 1)
    if not interpolation:
        return real_text
    interpolated = BETA * text + (1 - BETA) * partner
    term = _bce_numpy(d.numpy_logits(g.numpy_images(noise2, interpolated), interpolated), 1)
    weight = 0.5 * INTERP_WEIGHT
    return (real_text + weight * term) / (1 + weight)


def _run_int(module, fake_self, case, mean=False):
    """The per-example L_G (or, with ``mean``, L_G itself)."""
    import tensorflow as tf

    result = module.GanIntCls.generator_loss(fake_self, *(tf.constant(v, tf.float32) for v in case))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed("generator_loss must return (L_G, per-example L_G).")
    return result[0] if mean else result[1]


def check_int_value(module):
    fake_self = _int_self(20)
    case = _int_case(21)
    loss = _run_int(module, fake_self, case)
    assert_shape("L_G per example", loss, (3,))
    expected = _int_expected(fake_self, *case)
    assert_close("L_G = [BCE(D(G(z, t₁), t₁), 1) + w·BCE(D(G(z', t_int), t_int), 1)] / (1 + w), β = 0.3, w = 0.3",
                 loss, expected, 1e-4)
    assert_close("L_G, the batch mean of the per-example values", _run_int(module, _int_self(20), case, mean=True),
                 expected.mean(), 1e-4)


def check_int_plain(module):
    fake_self = _int_self(22, interpolation=False)
    case = _int_case(23)
    assert_close("L_G without interpolation, BCE(D(G(z, t), t), 1)", _run_int(module, fake_self, case),
                 _int_expected(fake_self, *case, interpolation=False), 1e-4)


def check_int_passes(module):
    """Two G passes and two D passes of B rows: (z, t₁), then (z', β·t₁ + (1 − β)·t₂)."""
    fake_self = _int_self(24)
    noise, noise2, text, partner = _int_case(25)
    _run_int(module, fake_self, (noise, noise2, text, partner))
    calls = fake_self.generator.calls
    if len(calls) != 2 or any(len(z) != len(text) for z, _ in calls):
        raise CheckFailed(f"G was called {len(calls)} times with {[len(z) for z, _ in calls]} rows; expected two "
                          f"separate passes of {len(text)} rows (real-text rows, then interpolated rows).")
    _ensure_calls(fake_self.discriminator.calls, 2, "the G step (real-text rows, then interpolated rows)")
    interpolated = BETA * text + (1 - BETA) * partner
    assert_close("G's first pass: the noise z", calls[0][0], noise, 1e-6)
    assert_close("G's first pass: the captions t₁", calls[0][1], text, 1e-6)
    assert_close("G's second pass: the fresh noise z'", calls[1][0], noise2, 1e-6)
    assert_close("G's second pass: t_int = β·t₁ + (1 − β)·t₂", calls[1][1], interpolated, 1e-5)
    assert_close("D's first pass: the captions t₁", fake_self.discriminator.calls[0][1], text, 1e-6)
    assert_close("D's second pass: the caption of the interpolated pair (t_int)",
                 fake_self.discriminator.calls[1][1], interpolated, 1e-5)


def check_int_gradients(module):
    """∂L_G / ∂(G's weights) against a float64 transcription of the equation."""
    import tensorflow as tf

    fake_self = _int_self(26)
    noise, noise2, text, partner = _int_case(27)
    g, d = fake_self.generator, fake_self.discriminator
    with tf.GradientTape() as tape:
        loss = _run_int(module, fake_self, (noise, noise2, text, partner), mean=True)
    got = tape.gradient(loss, g.trainable_variables)
    A, B = (tf.Variable(v.numpy().astype(np.float64)) for v in g.trainable_variables)
    d64 = [tf.constant(v.numpy().astype(np.float64)) for v in d.trainable_variables]
    z, z2, t1, t2 = (tf.constant(v, tf.float64) for v in (noise, noise2, text, partner))

    def g64(z, t):
        return tf.reshape(tf.tanh(z @ A + t @ B), [-1, 2, 2, 3])

    with tf.GradientTape() as tape64:
        interpolated = BETA * t1 + (1 - BETA) * t2
        real_text = tf.nn.softplus(-d.logits64(g64(z, t1), t1, d64))
        term = tf.nn.softplus(-d.logits64(g64(z2, interpolated), interpolated, d64))
        weight = 0.5 * INTERP_WEIGHT
        loss64 = tf.reduce_mean((real_text + weight * term) / (1 + weight))
    want = tape64.gradient(loss64, [A, B])
    for name, gr, w in zip(("A (noise weights)", "B (text weights)"), got, want):
        assert_close(f"∂L_G/∂{name} of G", gr, w, 1e-4, 1e-7)


def check_int_tf_function(module):
    import tensorflow as tf

    fake_self = _int_self(28)
    case = [tf.constant(v, tf.float32) for v in _int_case(29)]
    eager = module.GanIntCls.generator_loss(fake_self, *case)[1]
    graph = tf.function(lambda *x: module.GanIntCls.generator_loss(fake_self, *x)[1])(*case)
    assert_close("L_G under tf.function vs eager", graph, eager, 1e-5, 1e-6)


def check_int_two_replicas(module):
    """Two replicas with half the batch each: their L_G must add up to the mean over the whole batch."""
    import tensorflow as tf

    fake_self = _int_self(30)
    case = [np.concatenate([v, v[:1] + 0.5]) for v in _int_case(31)]  # 4 rows
    halves = [[tf.constant(v[h * 2:(h + 1) * 2], tf.float32) for v in case] for h in range(2)]
    results = two_replicas(lambda *x: module.GanIntCls.generator_loss(fake_self, *x)[0], halves)
    assert_close("sum over 2 replicas of L_G", float(results[0]) + float(results[1]),
                 _int_expected(fake_self, *case).mean(), 1e-4)


GAN_INT = Task(
    name="gan_int",
    title="GAN-INT: the generator's loss on interpolated captions",
    module=MODEL,
    week="1-week",
    stubs={
        "GanIntCls.generator_loss": """generated = self.generator([noise, text], training=True); per example
  L = bce_with_logits(self.discriminator([generated, text], training=True), 1.0)   (−log s: non-saturating).
If self.interpolation: t_int = β·text + (1 − β)·partner_text with β = self.interp_beta; a second G pass on
(interpolation_noise, t_int) and a second D pass on (that image, t_int), each of B rows; with
w = 0.5·self.interp_weight,   L = (L + w·BCE(interpolated_logits, 1)) / (1 + w).
Return (self.average(L), L (B,)): self.average is the global-batch mean, not tf.reduce_mean.""",
    },
    checks=(
        Check("L_G per example with GAN-INT (β = 0.3)", 3, check_int_value,
              "t_int = β·t₁ + (1 − β)·t₂ (weights summing to 1, β on the batch's own caption); both terms are "
              "−log D(G(·), ·); weight ½·interp_weight on the interpolated term, then divide by 1 + w."),
        Check("L_G without interpolation", 1, check_int_plain, "with interpolation off, only BCE(D(G(z, t), t), 1)."),
        Check("two G passes and two D passes: (z, t₁), (z', t_int)", 2, check_int_passes,
              "the interpolated rows use the second noise and t_int in both G and D; keep the two kinds of rows in "
              "separate calls."),
        Check("gradients reach G's weights", 2, check_int_gradients,
              "L_G trains G: do not stop the gradient of either generated batch."),
        Check("L_G under tf.function", 1, check_int_tf_function, "no numpy or Python-side values inside the loss."),
        Check("L_G under 2 replicas (global-batch average)", 1, check_int_two_replicas,
              "average with self.average, not tf.reduce_mean (each replica's loss is its share of the global mean)."),
    ),
    mutations=(
        Mutation("interpolation weights β, β (not summing to 1)", "(1.0 - self.interp_beta) * partner_text",
                 "self.interp_beta * partner_text"),
        Mutation("β on the partner caption", "self.interp_beta * text + (1.0 - self.interp_beta) * partner_text",
                 "(1.0 - self.interp_beta) * text + self.interp_beta * partner_text"),
        Mutation("D judges the interpolated image with t₁", "self.discriminator([generated_interpolated, interpolated]",
                 "self.discriminator([generated_interpolated, text]"),
        Mutation("the same noise for the interpolated rows", "self.generator([interpolation_noise, interpolated]",
                 "self.generator([noise, interpolated]"),
        Mutation("no ½ on the interpolation weight", "weight = 0.5 * self.interp_weight", "weight = self.interp_weight"),
        Mutation("not divided by 1 + w", "weight * bce_with_logits(interpolated_logits, 1.0)) / (1.0 + weight)",
                 "weight * bce_with_logits(interpolated_logits, 1.0))"),
        Mutation("saturating log(1 − s) on the interpolated rows", "weight * bce_with_logits(interpolated_logits, 1.0)",
                 "weight * -bce_with_logits(interpolated_logits, 0.0)"),
        Mutation("interpolated images detached", "self.discriminator([generated_interpolated, interpolated]",
                 "self.discriminator([tf.stop_gradient(generated_interpolated), interpolated]"),
        Mutation("tf.reduce_mean instead of the global average", "return self.average(per_example), per_example\n",
                 "return tf.reduce_mean(per_example), per_example\n"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 3: GAN-INT's walk at sampling time
class _RecordingGenerate:
    """Stands in for ``generate(noise, text)``: images (N, 2, 2, 3) linear in (z, t); records every call."""

    def __init__(self, noise_dim, text_dim, seed=0):
        rng = np.random.default_rng(seed)
        self.P, self.Q = rng.normal(size=(noise_dim, 12)), rng.normal(size=(text_dim, 12))
        self.calls = []

    def __call__(self, noise, text):
        noise, text = np.asarray(noise, np.float64), np.asarray(text, np.float64)
        self.calls.append((noise, text))
        return self.images(noise, text)

    def images(self, noise, text):
        return (noise @ self.P + text @ self.Q).reshape(-1, 2, 2, 3)


def _walk_case(module, n, steps, seed):
    rng = np.random.default_rng(seed)
    first, second = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    noise = rng.normal(size=(n, 4)).astype(np.float32)
    generate = _RecordingGenerate(4, 5, seed + 1)
    grid = module.interpolation_grid(generate, first, second, noise, steps)
    weights = np.linspace(0.0, 1.0, steps)
    expected = np.stack([np.stack([generate.images(z[None], ((1 - b) * first + b * second)[None])[0] for b in weights])
                         for z in noise])
    return grid, expected, generate, (first, second, noise, weights)


def check_walk_grid(module):
    grid, expected, _, _ = _walk_case(module, 3, 8, 30)
    assert_shape("the grid", grid, (3, 8, 2, 2, 3))
    assert_close("grid[k, j] = G(z_k, (1 − β_j)·t1 + β_j·t2)", grid, expected, 1e-5, 1e-6)


def check_walk_endpoints(module):
    _, _, generate, (first, second, noise, _) = _walk_case(module, 2, 8, 31)
    if len(generate.calls) != 1:
        raise CheckFailed("generate must be called once, with all n · steps rows.")
    noise_rows, text_rows = generate.calls[0]
    assert_shape("generate's text rows", text_rows, (16, 5))
    assert_close("text of row 0 (z_0, β = 0): exactly t1", text_rows[0], first, 1e-6)
    assert_close("text of row 7 (z_0, β = 1): exactly t2", text_rows[7], second, 1e-6)
    assert_close("noise of rows 0 … 7: z_0 along the whole first row", noise_rows[:8], np.repeat(noise[:1], 8, 0), 1e-6)


def check_walk_steps(module):
    grid, expected, _, _ = _walk_case(module, 3, 5, 32)
    assert_shape("the grid with steps = 5", grid, (3, 5, 2, 2, 3))
    assert_close("grid with steps = 5", grid, expected, 1e-5, 1e-6)


INTERPOLATION_WALK = Task(
    name="interpolation_walk",
    title="GAN-INT at sampling time: the walk between two captions",
    module=SAMPLE,
    week="1-week",
    stubs={
        "interpolation_grid": """text (steps, D): row j is (1 − β_j)·first + β_j·second for β_j in interpolation_weights(steps).
Call generate once with n·steps rows: row k·steps + j is (noise[k], text[j]) (np.repeat the noise rows,
np.tile the text rows). Return the images as (n, steps, H, W, 3) (n = len(noise)).""",
    },
    checks=(
        Check("the grid G(z_k, (1 − β_j)·t1 + β_j·t2)", 3, check_walk_grid,
              "one noise vector per row, the caption moves from t1 (column 0) to t2 (last column); weights sum to 1."),
        Check("one generate call; column 0 is t1, the last column t2", 1, check_walk_endpoints,
              "β runs from 0 to 1: (1 − β) multiplies the first caption."),
        Check("any number of steps", 1, check_walk_steps, "use interpolation_weights(steps), not a fixed count."),
    ),
    mutations=(
        Mutation("weights not summing to 1", "(1 - b) * first + b * second", "(1 - b) * first + second"),
        Mutation("walk from t2 to t1", "(1 - b) * first + b * second", "b * first + (1 - b) * second"),
        Mutation("noise tiled instead of repeated", "np.repeat(noise, steps, axis=0)", "np.tile(noise, (steps, 1))"),
        Mutation("text repeated instead of tiled", "np.tile(text, (len(noise), 1))", "np.repeat(text, len(noise), axis=0)"),
        Mutation("grid read column-major", "images.reshape(len(noise), steps, *images.shape[1:])",
                 "images.reshape(steps, len(noise), *images.shape[1:]).swapaxes(0, 1)"),
        Mutation("a fixed 8 steps", "interpolation_weights(steps)", "interpolation_weights(8)"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 4: DS-SJE
def _same_class_numpy(classes):
    """same_class's rule: equal known classes, or the example itself; −1 is a class of its own."""
    classes = np.asarray(classes)
    known = classes != -1
    same = (classes[:, None] == classes[None, :]) & known[:, None] & known[None, :]
    return same | np.eye(len(classes), dtype=bool)


def _ds_sje_numpy(images, texts, classes, margin):
    """ℓ_i = (1/B)·Σ_{j of another class} [max(0, m + F(v_i, t_j) − F(v_i, t_i)) + max(0, m + F(v_j, t_i) − F(v_i, t_i))]."""
    same = _same_class_numpy(classes)
    batch = len(images)
    loss = np.zeros(batch)
    for i in range(batch):
        for j in range(batch):
            if same[i, j]:
                continue
            loss[i] += max(0.0, margin + images[i] @ texts[j] - images[i] @ texts[i])  # image i vs caption j
            loss[i] += max(0.0, margin + images[j] @ texts[i] - images[i] @ texts[i])  # caption i vs image j
    return loss / batch


SJE_CLASSES = np.array([0, 1, 1, 2, 0], np.int32)
SJE_UNKNOWN = np.array([-1, -1, 3, 3, -1], np.int32)


def _sje_features(seed, batch=5, dim=3):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.7, (batch, dim)), rng.normal(0, 0.7, (batch, dim))


def check_sje_value(module):
    import tensorflow as tf

    images, texts = _sje_features(40)
    got = module.ds_sje_loss(tf.constant(images, tf.float32), tf.constant(texts, tf.float32), tf.constant(SJE_CLASSES),
                             margin=0.7)
    assert_shape("DS-SJE per example", got, (5,))
    assert_close("DS-SJE per example (classes 0 1 1 2 0, margin 0.7)", got,
                 _ds_sje_numpy(images, texts, SJE_CLASSES, 0.7), 1e-4, 1e-6)


def check_sje_unknown_class(module):
    import tensorflow as tf

    images, texts = _sje_features(41)
    got = module.ds_sje_loss(tf.constant(images, tf.float32), tf.constant(texts, tf.float32), tf.constant(SJE_UNKNOWN))
    assert_close("DS-SJE with unknown classes (−1 −1 3 3 −1: each −1 its own class)", got,
                 _ds_sje_numpy(images, texts, SJE_UNKNOWN, 1.0), 1e-4, 1e-6)


def check_sje_gradients(module):
    """∂ Σ ℓ_i / ∂θ(v), ∂φ(t) against central differences of the equation (float64)."""
    import tensorflow as tf

    images, texts = _sje_features(42)
    variables = [tf.Variable(images, dtype=tf.float32), tf.Variable(texts, dtype=tf.float32)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(module.ds_sje_loss(*variables, tf.constant(SJE_CLASSES), margin=0.7))
    got = tape.gradient(loss, variables)
    numeric = (numerical_gradient(lambda v: _ds_sje_numpy(v, texts, SJE_CLASSES, 0.7).sum(), images),
               numerical_gradient(lambda t: _ds_sje_numpy(images, t, SJE_CLASSES, 0.7).sum(), texts))
    for k, name in enumerate(("θ(v) (image features)", "φ(t) (text features)")):
        assert_close(f"∂DS-SJE/∂{name}", got[k], numeric[k], 1e-3, 1e-5)


def check_sje_tf_function(module):
    """Inside a tf.function of unknown batch size (the batch must be read with tf.shape)."""
    import tensorflow as tf

    images, texts = _sje_features(43)
    compiled = tf.function(lambda v, t, c: module.ds_sje_loss(v, t, c, margin=0.7), input_signature=[
        tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    got = compiled(tf.constant(images, tf.float32), tf.constant(texts, tf.float32), tf.constant(SJE_CLASSES))
    assert_close("DS-SJE under tf.function (batch size unknown when traced)", got,
                 _ds_sje_numpy(images, texts, SJE_CLASSES, 0.7), 1e-4, 1e-6)


def check_retrieval(module):
    import tensorflow as tf

    rng = np.random.default_rng(44)
    for classes in (SJE_CLASSES, SJE_UNKNOWN, np.array([5, 5, 5, 6, -1], np.int32)):
        images, texts = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
        best = np.argmax(texts @ images.T, axis=1)  # caption i → the image of highest F(v_j, t_i)
        expected = _same_class_numpy(classes)[np.arange(5), best].astype(np.float64)
        got = module.JointEmbedding.retrieval_accuracy(tf.constant(images, tf.float32), tf.constant(texts, tf.float32),
                                                       tf.constant(classes))
        assert_close(f"caption → image top-1 hits (classes {' '.join(map(str, classes))})", got, expected, 1e-6)


DS_SJE = Task(
    name="ds_sje",
    title="DS-SJE: the symmetric joint-embedding loss of the text encoder",
    module=ENCODER,
    week="1-week",
    stubs={
        "ds_sje_loss": """scores F = θ(v)·φ(t)ᵀ (B, B), F[i, j] = F(v_i, t_j); matching = its diagonal F(v_i, t_i).
different = 1 where same_class(class_ids) is False (a negative pair), 0 elsewhere (cast to F's dtype).
image → text: relu(margin + F[i, j] − F[i, i]) · different, summed over j (captions) for image i;
text → image: relu(margin + F[j, i] − F[i, i]) · different, summed over j (images) for caption i.
Return (image → text sum + text → image sum) / B, one value per example (B,); read B with tf.shape.""",
        "JointEmbedding.retrieval_accuracy": """best[i] = argmax_j F(v_j, t_i) (int32): the image caption i retrieves. Return (B,) float32: 1 where
same_class(class_ids)[i, best[i]], else 0 (tf.gather with batch_dims=1).""",
    },
    checks=(
        Check("DS-SJE per example against the equation", 3, check_sje_value,
              "both hinges max(0, m + F(wrong) − F(right)) count only pairs of different classes; the image → text "
              "sum runs over a row of F, the text → image sum over a column; divide by B."),
        Check("the unknown class (−1) is its own class", 2, check_sje_unknown_class,
              "use t2igan.layers.same_class: two examples of class −1 are a negative pair, two of class 3 are not."),
        Check("gradients w.r.t. both encoders' features", 2, check_sje_gradients,
              "no stop_gradient: the matching score F(v_i, t_i) is pushed up in both hinges."),
        Check("DS-SJE under tf.function with an unknown batch size", 1, check_sje_tf_function,
              "read the batch size with tf.shape (the static shape is None inside a traced function)."),
        Check("caption → image retrieval accuracy", 2, check_retrieval,
              "caption i retrieves the image of its row's highest score in text·imageᵀ; a hit is an image of the "
              "same class by same_class."),
    ),
    mutations=(
        Mutation("margin sign flipped", "tf.nn.relu(margin + scores - matching[:, None])",
                 "tf.nn.relu(-margin + scores - matching[:, None])"),
        Mutation("same-class pairs not masked (image → text)", "tf.nn.relu(margin + scores - matching[:, None]) * different",
                 "tf.nn.relu(margin + scores - matching[:, None])"),
        Mutation("only the matching pair masked", "different = tf.cast(~same_class(class_ids), scores.dtype)",
                 "different = 1.0 - tf.eye(tf.shape(scores)[0], dtype=scores.dtype)"),
        Mutation("unknown class treated as one class", "~same_class(class_ids)",
                 "tf.not_equal(class_ids[:, None], class_ids[None, :])"),
        Mutation("text → image against the wrong matching score", "scores - matching[None, :]) * different",
                 "scores - matching[:, None]) * different"),
        Mutation("text → image summed along the wrong axis", "tf.reduce_sum(text_to_image, axis=0)",
                 "tf.reduce_sum(text_to_image, axis=1)"),
        Mutation("divided by B² per example", "/ batch", "/ (batch * batch)"),
        Mutation("matching score stopped", "matching = tf.linalg.diag_part(scores)",
                 "matching = tf.stop_gradient(tf.linalg.diag_part(scores))"),
        Mutation("retrieval image → caption", "tf.matmul(text_features, image_features, transpose_b=True), axis=1",
                 "tf.matmul(text_features, image_features, transpose_b=True), axis=0"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 5: Reed's char-CNN-RNN encoder
CHARS, ALPHABET = 64, 70  # 64 characters: 61 → pool 20 → 17 → pool 5 → 2 GRU steps


def _random_encoder(module, seed):
    """A small CharCnnRnn with every layer built at the expected shapes and every weight random."""
    model = module.CharCnnRnn(alphabet_depth=ALPHABET, conv_widths=(6, 7, 8), rnn_width=5, embedding_dim=4)
    model.convs[0].build((None, CHARS, ALPHABET))
    model.convs[1].build((None, 20, 6))
    model.convs[2].build((None, 5, 7))
    model.rnn.build((None, 2, 8))
    model.project.build((None, 5))
    rng = np.random.default_rng(seed)
    for layer in (*model.convs, model.rnn, model.project):
        for variable in layer.weights:
            variable.assign(rng.normal(0, 0.4, variable.shape).astype(np.float32))
    return model


def _conv1d_numpy(conv, x):
    """Conv1D, 'valid', then ReLU: out[t] = Σ_k x[t + k]·W[k] + b."""
    kernel, bias = (w.numpy().astype(np.float64) for w in conv.weights)
    width = kernel.shape[0]
    steps = x.shape[1] - width + 1
    out = sum(np.einsum("bti,io->bto", x[:, k:k + steps], kernel[k]) for k in range(width)) + bias
    return np.maximum(out, 0.0)


def _max_pool_numpy(x, size=3):
    steps = x.shape[1] // size
    return x[:, :steps * size].reshape(x.shape[0], steps, size, x.shape[2]).max(axis=2)


def _gru_numpy(rnn, x):
    """Keras GRU with reset_after (gates z, r, h; h' = z·h + (1 − z)·h̃), every hidden state (B, T, U)."""
    kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in rnn.weights)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h = np.zeros((x.shape[0], recurrent.shape[0]))
    states = []
    for step in range(x.shape[1]):
        x_z, x_r, x_h = np.split(x[:, step] @ kernel + bias[0], 3, axis=-1)
        h_z, h_r, h_h = np.split(h @ recurrent + bias[1], 3, axis=-1)
        z, r = sigmoid(x_z + h_z), sigmoid(x_r + h_r)
        h = z * h + (1 - z) * np.tanh(x_h + r * h_h)
        states.append(h)
    return np.stack(states, axis=1)


def _encoder_numpy(model, ids):
    """φ(t): one-hot (id 0 → zero row, id k → channel k − 1) → conv → pool → conv → pool → conv → GRU → mean → Linear."""
    x = np.zeros((*ids.shape, ALPHABET))
    rows, steps = np.nonzero(ids)
    x[rows, steps, ids[rows, steps] - 1] = 1.0
    x = _max_pool_numpy(_conv1d_numpy(model.convs[0], x))
    x = _max_pool_numpy(_conv1d_numpy(model.convs[1], x))
    x = _conv1d_numpy(model.convs[2], x)
    hidden = _gru_numpy(model.rnn, x).mean(axis=1)
    kernel, bias = (w.numpy().astype(np.float64) for w in model.project.weights)
    return hidden @ kernel + bias


def _caption_ids(seed, batch=3):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, ALPHABET + 1, (batch, CHARS))
    ids[:, 0], ids[:, 1] = 1, ALPHABET  # the first and the last symbol of the alphabet
    ids[0, 40:] = 0  # padding
    return ids.astype(np.int32)


def check_encoder_forward(module):
    import tensorflow as tf

    model = _random_encoder(module, 50)
    ids = _caption_ids(51)
    got = model(tf.constant(ids))
    assert_shape("φ(t)", got, (3, 4))
    assert_close("φ(t) against one-hot → 3 × (conv, ReLU) with 2 max-pools → GRU → mean → Linear", got,
                 _encoder_numpy(model, ids), 1e-4, 1e-6)


def check_encoder_padding_rows(module):
    """Id 0 (padding, or a character outside the alphabet) is an all-zero one-hot row."""
    import tensorflow as tf

    model = _random_encoder(module, 52)
    ids = np.zeros((2, CHARS), np.int32)
    ids[1, :3] = [ALPHABET, 1, 2]
    assert_close("φ(t) of an empty caption and of a 3-character one", model(tf.constant(ids)),
                 _encoder_numpy(model, ids), 1e-4, 1e-6)


def check_encoder_tf_function(module):
    import tensorflow as tf

    model = _random_encoder(module, 53)
    ids = tf.constant(_caption_ids(54))
    eager = model(ids)
    graph = tf.function(lambda x: model(x, training=False))(ids)
    assert_close("φ(t) under tf.function vs eager", graph, eager, 1e-5, 1e-6)


CHAR_CNN_RNN = Task(
    name="char_cnn_rnn",
    title="Reed's char-CNN-RNN text encoder φ(t)",
    module=ENCODER,
    week="1-week",
    stubs={
        "CharCnnRnn.call": """char_ids (B, L) int: 0 is padding / outside the alphabet, 1 … alphabet_depth the symbols.
x = one-hot (B, L, alphabet_depth) with id k → channel k − 1 and id 0 → an all-zero row
(tip: tf.one_hot with depth alphabet_depth + 1, then drop channel 0).
x = pools[0](convs[0](x)); x = pools[1](convs[1](x)); x = convs[2](x)   (the convs apply their ReLU);
hidden = self.rnn(x, training=training) (B, T, rnn_width), every step's state;
return self.project(the mean of hidden over the T steps)   → φ(t) (B, embedding_dim).""",
    },
    checks=(
        Check("φ(t) against the encoder's equations", 3, check_encoder_forward,
              "order: one-hot → conv → pool → conv → pool → conv → GRU → mean over time → Linear."),
        Check("id 0 is an all-zero one-hot row", 1, check_encoder_padding_rows,
              "id k is channel k − 1; id 0 has no channel (one_hot of depth alphabet_depth + 1 without its column 0)."),
        Check("φ(t) under tf.function", 1, check_encoder_tf_function, "no numpy or Python-side values inside call."),
    ),
    mutations=(
        Mutation("one-hot off by one", "tf.one_hot(char_ids, self.alphabet_depth + 1)[..., 1:]",
                 "tf.one_hot(char_ids, self.alphabet_depth)"),
        Mutation("max-pool before the first conv", "self.pools[0](self.convs[0](x))", "self.convs[0](self.pools[0](x))"),
        Mutation("second max-pool missing", "x = self.pools[1](self.convs[1](x))", "x = self.convs[1](x)"),
        Mutation("last GRU state instead of the mean", "tf.reduce_mean(hidden, axis=1)", "hidden[:, -1]"),
        Mutation("sum over time instead of the mean", "tf.reduce_mean(hidden, axis=1)", "tf.reduce_sum(hidden, axis=1)"),
    ),
    hidden_files=HIDDEN,
)

TASKS = [GAN_CLS_LOSS, GAN_INT, INTERPOLATION_WALK, DS_SJE, CHAR_CNN_RNN]

if __name__ == "__main__":
    main(TASKS, chapter=1, tasks_file=__file__)
