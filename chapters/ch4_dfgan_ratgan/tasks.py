"""Chapter 4 assignments: the DF-GAN fusion block, the MA-GP, the hinge loss with mismatched text, and
RAT-GAN's recurrent controller — with the grader's checks and the typical mistakes it must catch.

Every expected value is computed here from the paper's equation (NumPy, or a float64 TensorFlow
transcription where a gradient is needed), never by calling the reference code, so grading the
reference in ``make test`` also catches a bug planted in the reference. Kept out of student copies.

    make assignment CHAPTER=4 OUT=hw4 [TASKS=affine_fusion,magp]
    make grade CHAPTER=4 STUDENT=hw4
"""

from __future__ import annotations

import types

import numpy as np

from t2igan.assignments import (Check, CheckFailed, Mutation, Task, assert_close, assert_shape, numerical_gradient,
                                two_replicas)
from t2igan.assignments.cli import main

MODULE = "chapters.ch4_dfgan_ratgan.model"
HIDDEN = ("tests/test_chapter04_model.py", "tests/test_chapter04_official.py")  # both compute what the tasks ask


# ------------------------------------------------------------------ shared helpers
def _random_affine(module, channels=5, hidden=6, condition_dim=7, seed=0):
    """An Affine with every weight random (its init would make γ ≡ 1, β ≡ 0 and hide mistakes)."""
    import tensorflow as tf

    layer = module.Affine(channels, hidden, condition_dim)
    layer.build((None, 3, 3, channels))
    layer.gamma_hidden.build((None, condition_dim))
    layer.beta_hidden.build((None, condition_dim))
    layer.gamma_out.build((None, hidden))
    layer.beta_out.build((None, hidden))
    rng = np.random.default_rng(seed)
    for variable in [*layer.gamma_hidden.weights, *layer.gamma_out.weights, *layer.beta_hidden.weights,
                     *layer.beta_out.weights]:
        variable.assign(rng.normal(0, 0.6, variable.shape).astype(np.float32))
    return layer, tf


def _dense64(layer, x):
    import tensorflow as tf

    kernel, bias = (tf.constant(w.numpy(), tf.float64) for w in layer.weights)
    return tf.matmul(x, kernel) + bias


def _affine64(layer, x, condition):
    """Eq. (DF-GAN Affine): γ(c)·x + β(c), γ and β each Linear → ReLU → Linear, in float64."""
    import tensorflow as tf

    gamma = _dense64(layer.gamma_out, tf.nn.relu(_dense64(layer.gamma_hidden, condition)))
    beta = _dense64(layer.beta_out, tf.nn.relu(_dense64(layer.beta_hidden, condition)))
    return gamma[:, None, None, :] * x + beta[:, None, None, :], gamma, beta


def _conv64(conv, x):
    import tensorflow as tf

    kernel = tf.constant(conv.kernel.numpy(), tf.float64)
    out = tf.nn.conv2d(x, kernel, 1, "SAME")
    return out + tf.constant(conv.bias.numpy(), tf.float64) if conv.use_bias else out


def _lrelu64(x):
    import tensorflow as tf

    return tf.where(x > 0, x, 0.2 * x)


# ------------------------------------------------------------------ task 1: Affine and the fusion block
def check_affine_forward(module):
    import tensorflow as tf

    layer, _ = _random_affine(module)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 3, 5)).astype(np.float32)
    condition = rng.normal(size=(2, 7)).astype(np.float32)
    out = layer(tf.constant(x), tf.constant(condition))
    expected, _, _ = _affine64(layer, tf.constant(x, tf.float64), tf.constant(condition, tf.float64))
    assert_close("Affine(x, c)", out, expected, 1e-4)


def check_affine_modulation(module):
    import tensorflow as tf

    layer, _ = _random_affine(module, seed=2)
    rng = np.random.default_rng(3)
    x, condition = rng.normal(size=(2, 3, 3, 5)), rng.normal(size=(2, 7))
    result = layer(tf.constant(x, tf.float32), tf.constant(condition, tf.float32), return_modulation=True)
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise CheckFailed("Affine(x, c, return_modulation=True) must return (out, γ, β).")
    _, gamma, beta = _affine64(layer, tf.constant(x), tf.constant(condition))
    assert_close("γ (return_modulation)", result[1], gamma, 1e-4)
    assert_close("β (return_modulation)", result[2], beta, 1e-4)


def check_affine_gradients(module):
    import tensorflow as tf

    layer, _ = _random_affine(module, seed=4)
    rng = np.random.default_rng(5)
    x, condition = rng.normal(size=(2, 3, 3, 5)), rng.normal(size=(2, 7))
    upstream = rng.normal(size=(2, 3, 3, 5))
    x32, c32 = tf.Variable(x, dtype=tf.float32), tf.Variable(condition, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x32, c32) * upstream)
    got = tape.gradient(loss, [x32, c32])
    x64, c64 = tf.Variable(x), tf.Variable(condition)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_affine64(layer, x64, c64)[0] * upstream)
    want = tape.gradient(loss, [x64, c64])
    assert_close("∂L/∂x through Affine", got[0], want[0], 1e-3, 1e-5)
    assert_close("∂L/∂c through Affine", got[1], want[1], 1e-3, 1e-5)


def _random_block(module, fin, fout, gated, seed):
    import tensorflow as tf

    block = module.FusionBlock(fin, fout, condition_dim=4, hidden=3, gated=gated)
    x = tf.zeros((1, 4, 4, fin))
    block(x, [tf.zeros((1, 4))] * 4)
    rng = np.random.default_rng(seed)
    for variable in block.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    return block


def _fusion64(block, x, conditions):
    """out = shortcut(x) + g·conv2(LReLU(A4(LReLU(A3(conv1(LReLU(A2(LReLU(A1(x))))))))))."""
    h = x
    for k, (affine, condition) in enumerate(zip(block.affines, conditions)):
        h = _lrelu64(_affine64(affine, h, condition)[0])
        if k == 1:
            h = _conv64(block.conv1, h)
    residual = _conv64(block.conv2, h)
    if block.gate is not None:
        residual = float(block.gate.numpy()) * residual
    return (x if block.shortcut is None else _conv64(block.shortcut, x)) + residual


def _block_case(module, fin, fout, gated, seed):
    import tensorflow as tf

    block = _random_block(module, fin, fout, gated, seed)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(2, 4, 4, fin))
    conditions = [rng.normal(size=(2, 4)) for _ in range(4)]  # four different conditions: order matters
    out, statistics = block(tf.constant(x, tf.float32), [tf.constant(c, tf.float32) for c in conditions])
    expected = _fusion64(block, tf.constant(x), [tf.constant(c) for c in conditions])
    return block, out, statistics, expected, x, conditions


def check_fusion_forward(module):
    for fin, fout, gated, seed in ((3, 5, False, 10), (4, 4, True, 11)):
        _, out, _, expected, _, _ = _block_case(module, fin, fout, gated, seed)
        assert_close(f"FusionBlock({fin} → {fout}{', gated' if gated else ''}) output", out, expected, 1e-3, 1e-5)


def check_fusion_statistics(module):
    import tensorflow as tf

    block, _, statistics, _, x, conditions = _block_case(module, 3, 5, False, 12)
    if len(statistics) != 4:
        raise CheckFailed(f"FusionBlock returns {len(statistics)} modulation statistics, expected 4 (one per affine).")
    h = tf.constant(x)
    for k, (affine, condition) in enumerate(zip(block.affines, conditions)):
        out, gamma, beta = _affine64(affine, h, tf.constant(condition))
        expected = np.array([np.mean(gamma), np.std(gamma), np.mean(beta), np.std(beta)])
        assert_close(f"statistics of affine {k + 1} [mean γ, std γ, mean β, std β]", statistics[k], expected, 1e-3, 1e-5)
        h = _lrelu64(out)
        if k == 1:
            h = _conv64(block.conv1, h)


def check_fusion_tf_function(module):
    import tensorflow as tf

    block, out, _, _, x, conditions = _block_case(module, 3, 5, True, 13)
    compiled = tf.function(lambda x, c: block(x, c)[0])
    graph_out = compiled(tf.constant(x, tf.float32), [tf.constant(c, tf.float32) for c in conditions])
    assert_close("FusionBlock under tf.function vs eager", graph_out, out, 1e-5, 1e-6)


AFFINE_FUSION = Task(
    name="affine_fusion",
    title="DF-GAN's Affine and the fusion block",
    module=MODULE,
    week="1-week",
    stubs={
        "Affine.call": """Compute γ = gamma_out(ReLU(gamma_hidden(c))) and β = beta_out(ReLU(beta_hidden(c))), each (B, C),
and return out = γ·x + β with γ and β broadcast over the height and width of x (B, H, W, C).
Cast the condition to x's dtype first (mixed precision). With return_modulation=True return (out, γ, β).""",
        "FusionBlock.call": """h = x; for k = 0..3: h, γ, β = affines[k](h, conditions[k], return_modulation=True); h = LReLU_0.2(h)
(use lrelu); append modulation_statistics(γ, β); after k = 1 apply conv1. Then residual = conv2(h),
times the scalar gate when self.gate is not None (cast to x.dtype). Return
(shortcut(x) + residual, statistics), where shortcut(x) is x when self.shortcut is None.""",
    },
    checks=(
        Check("Affine forward against γ(c)·x + β(c)", 3, check_affine_forward,
              "γ scales and β shifts every channel; both are Linear → ReLU → Linear of the condition."),
        Check("Affine returns (out, γ, β) with return_modulation", 1, check_affine_modulation,
              "return the γ and β (B, C) that you applied."),
        Check("Affine gradients w.r.t. x and c", 2, check_affine_gradients,
              "the gradient must flow to the input and to the condition (no stop_gradient, no numpy)."),
        Check("FusionBlock forward (plain and gated)", 4, check_fusion_forward,
              "order: Affine → LReLU → Affine → LReLU → conv1 → Affine → LReLU → Affine → LReLU → conv2; "
              "affine k uses conditions[k]; the gate scales the residual only."),
        Check("FusionBlock modulation statistics", 1, check_fusion_statistics,
              "one modulation_statistics(γ, β) per affine, in order."),
        Check("FusionBlock under tf.function", 1, check_fusion_tf_function,
              "no Python-side state or numpy inside call."),
    ),
    mutations=(
        Mutation("β dropped", "* x + beta[:, None, None, :]", "* x"),
        Mutation("no ReLU in the γ MLP", "self.gamma_out(tf.nn.relu(self.gamma_hidden(condition)))",
                 "self.gamma_out(self.gamma_hidden(condition))"),
        Mutation("γ from the β MLP", "gamma = self.gamma_out(tf.nn.relu(self.gamma_hidden(condition)))",
                 "gamma = self.gamma_out(tf.nn.relu(self.beta_hidden(condition)))"),
        Mutation("(out, β, γ) returned", "(out, gamma, beta) if return_modulation", "(out, beta, gamma) if return_modulation"),
        Mutation("LReLU removed from the block", "            h = lrelu(h)\n", ""),
        Mutation("conv1 after the first affine", "if k == 1:", "if k == 0:"),
        Mutation("gate ignored", "residual = tf.cast(self.gate, x.dtype) * residual", "residual = residual"),
        Mutation("no shortcut", "return (x if self.shortcut is None else self.shortcut(x)) + residual",
                 "return residual"),
        Mutation("conditions in reverse order", "zip(self.affines, conditions)", "zip(self.affines, conditions[::-1])"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 2: the MA-GP
def _magp_numpy(gx, gs, weight, power):
    squared = (gx.reshape(len(gx), -1) ** 2).sum(-1) + (gs.reshape(len(gs), -1) ** 2).sum(-1)
    return weight * squared ** (power / 2)


def check_magp_value(module):
    import tensorflow as tf

    rng = np.random.default_rng(20)
    gx, gs = rng.normal(0, 0.3, (3, 4, 4, 2)), rng.normal(0, 0.3, (3, 6))
    for weight, power in ((2.0, 6.0), (1.5, 2.0)):
        got = module.magp(tf.constant(gx, tf.float32), tf.constant(gs, tf.float32), weight, power)
        assert_close(f"magp (weight {weight}, power {power})", got, _magp_numpy(gx, gs, weight, power), 1e-4)


def check_magp_mixed_precision(module):
    """Under mixed precision D's gradients arrive in float16; the penalty must be summed in float32."""
    import tensorflow as tf

    rng = np.random.default_rng(21)
    gx, gs = rng.normal(0, 0.3, (2, 4, 4, 2)), rng.normal(0, 0.3, (2, 6))
    got = module.magp(tf.constant(gx, tf.float16), tf.constant(gs, tf.float16), 2.0, 6.0)
    if got.dtype != tf.float32:
        raise CheckFailed(f"magp of float16 gradients returns {got.dtype.name}, expected float32.")
    expected = _magp_numpy(gx.astype(np.float16).astype(np.float64), gs.astype(np.float16).astype(np.float64), 2.0, 6.0)
    assert_close("magp of float16 gradients", got, expected, 1e-4)


class _TinyDiscriminator:
    """D with a closed form: features = tanh(a·x) (per channel a), logit = Σ features · (s·b)."""

    def __init__(self, a, b):
        import tensorflow as tf

        self.a, self.b = tf.Variable(a, dtype=tf.float32), tf.Variable(b, dtype=tf.float32)
        self.trainable_variables = [self.a, self.b]

    def features(self, images, training=False):
        import tensorflow as tf

        return tf.tanh(images * self.a)

    def logits(self, features, sentence, training=False):
        import tensorflow as tf

        return tf.reduce_sum(features, [1, 2, 3]) * tf.reduce_sum(sentence * self.b, -1)


def _tiny_penalty_numpy(a, b, x, s, weight, power):
    t = np.tanh(x * a)
    projection = (s * b).sum(-1)  # (B,)
    gradient_x = (1 - t ** 2) * a * projection[:, None, None, None]
    gradient_s = t.sum((1, 2, 3))[:, None] * b[None, :]
    logits = t.sum((1, 2, 3)) * projection
    return _magp_numpy(gradient_x, gradient_s, weight, power), logits


def _tiny_case(seed=30):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, 2), rng.normal(0, 0.5, 3), rng.normal(0, 0.7, (2, 3, 3, 2)), rng.normal(0, 0.7, (2, 3)))


def check_penalty_value(module):
    import tensorflow as tf

    a, b, x, s = _tiny_case()
    d = _TinyDiscriminator(a, b)
    penalty, logits = module.matching_aware_penalty(d, tf.constant(x, tf.float32), tf.constant(s, tf.float32), 2.0, 6.0)
    expected_penalty, expected_logits = _tiny_penalty_numpy(a, b, x, s, 2.0, 6.0)
    assert_close("D(x, s) returned with the penalty", logits, expected_logits, 1e-4)
    assert_close("MA-GP at (x, s)", penalty, expected_penalty, 1e-3)


def check_penalty_features(module):
    import tensorflow as tf

    a, b, x, s = _tiny_case(31)
    d = _TinyDiscriminator(a, b)
    result = module.matching_aware_penalty(d, tf.constant(x, tf.float32), tf.constant(s, tf.float32), 2.0, 6.0,
                                           return_features=True)
    if len(result) != 3:
        raise CheckFailed("matching_aware_penalty(..., return_features=True) must return (penalty, logits, features).")
    assert_close("features returned", result[2], np.tanh(x * a), 1e-5)


def check_penalty_double_backprop(module):
    """∂ mean(MA-GP) / ∂(D's weights), against central differences of the closed form (float64)."""
    import tensorflow as tf

    a, b, x, s = _tiny_case(32)
    d = _TinyDiscriminator(a, b)
    with tf.GradientTape() as tape:
        penalty, _ = module.matching_aware_penalty(d, tf.constant(x, tf.float32), tf.constant(s, tf.float32), 2.0, 2.0)
        loss = tf.reduce_mean(penalty)
    got = tape.gradient(loss, d.trainable_variables)
    numeric = (numerical_gradient(lambda value: _tiny_penalty_numpy(value, b, x, s, 2.0, 2.0)[0].mean(), a),
               numerical_gradient(lambda value: _tiny_penalty_numpy(a, value, x, s, 2.0, 2.0)[0].mean(), b))
    for k, name in enumerate(("a", "b")):
        assert_close(f"∂ MA-GP / ∂{name} (double back-propagation)", got[k], numeric[k], 1e-3, 1e-6)


MAGP = Task(
    name="magp",
    title="DF-GAN's matching-aware gradient penalty",
    module=MODULE,
    week="1-week",
    stubs={
        "magp": """Per example: weight · ‖g‖^power, where g = [flatten(gradient_images), flatten(gradient_sentence)] is one
vector per example (the norm of the concatenation, as the official code). Compute it as
weight · (Σ g²)^(power / 2), in float32 whatever the gradients' dtype (cast them first). Return (B,).""",
        "matching_aware_penalty": """Under an inner tf.GradientTape that watches images and sentence, compute
features = discriminator.features(images, training=True), logits = discriminator.logits(features, sentence,
training=True) and their sum; take the gradient of the sum w.r.t. [images, sentence] and return
(magp(∇x, ∇s, weight, power), logits), plus features when return_features. The caller's outer tape
differentiates this gradient again: do not stop it.""",
    },
    checks=(
        Check("magp value against weight·(Σg²)^(p/2)", 3, check_magp_value,
              "one norm over the concatenated image and sentence gradients, raised to the power p."),
        Check("magp of float16 gradients, in float32", 1, check_magp_mixed_precision,
              "cast both gradients to float32 before squaring (mixed precision gives float16 gradients)."),
        Check("penalty and logits at the real pairs", 3, check_penalty_value,
              "differentiate the sum of the logits w.r.t. both the images and the sentence."),
        Check("return_features returns the trunk features", 1, check_penalty_features,
              "return (penalty, logits, features) when return_features is set."),
        Check("double back-propagation to D's weights", 3, check_penalty_double_backprop,
              "the penalty must stay differentiable w.r.t. D's weights: no stop_gradient on the inner gradient."),
    ),
    mutations=(
        Mutation("norms of ∇x and ∇s added separately",
                 "return weight * tf.pow(squared, power / 2.0)",
                 "return weight * tf.pow(tf.reduce_sum(tf.square(tf.reshape(tf.cast(gradient_images, tf.float32), "
                 "[batch, -1])), -1), power / 2.0) + weight * tf.pow(tf.reduce_sum(tf.square(tf.reshape(tf.cast("
                 "gradient_sentence, tf.float32), [batch, -1])), -1), power / 2.0)"),
        Mutation("exponent not halved", "tf.pow(squared, power / 2.0)", "tf.pow(squared, power)"),
        Mutation("no float32 cast of the image gradient", "tf.cast(gradient_images, tf.float32)", "gradient_images"),
        Mutation("sentence gradient left out", "penalty = magp(gradient_images, gradient_sentence, weight, power)",
                 "penalty = magp(gradient_images, tf.zeros_like(gradient_sentence), weight, power)"),
        Mutation("inner gradient stopped", "penalty = magp(gradient_images, gradient_sentence, weight, power)",
                 "penalty = magp(tf.stop_gradient(gradient_images), tf.stop_gradient(gradient_sentence), weight, power)"),
        Mutation("weight ignored", "return weight * tf.pow", "return tf.pow"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 3: hinge loss with mismatched text
def _hinge_numpy(real, fake, mismatch):
    terms = np.maximum(0, 1 - real), np.maximum(0, 1 + fake), np.maximum(0, 1 + mismatch)
    return terms[0].mean() + 0.5 * (terms[1].mean() + terms[2].mean()), terms


LOGITS = dict(real=np.array([-1.5, 0.2, 0.9, 1.7, 3.0, -0.3]), fake=np.array([-2.0, -0.7, 0.1, 1.2, -1.4, 0.5]),
              mismatch=np.array([0.4, -1.6, -0.2, 2.1, -0.9, 0.05]))


def check_hinge_value(module):
    import tensorflow as tf

    loss, terms = module.discriminator_hinge_loss(*(tf.constant(LOGITS[k], tf.float32) for k in ("real", "fake", "mismatch")))
    expected, expected_terms = _hinge_numpy(LOGITS["real"], LOGITS["fake"], LOGITS["mismatch"])
    assert_close("L_D", loss, expected, 1e-5)
    for name, got, want in zip(("relu(1 − D(x, s))", "relu(1 + D(x̂, s))", "relu(1 + D(x', s))"), terms, expected_terms):
        assert_close(f"per-example term {name}", got, want, 1e-5)


def check_hinge_gradients(module):
    import tensorflow as tf

    variables = [tf.Variable(LOGITS[k], dtype=tf.float32) for k in ("real", "fake", "mismatch")]
    with tf.GradientTape() as tape:
        loss, _ = module.discriminator_hinge_loss(*variables)
    got = tape.gradient(loss, variables)
    b = len(LOGITS["real"])
    expected = (-1.0 * (LOGITS["real"] < 1) / b, 0.5 * (LOGITS["fake"] > -1) / b, 0.5 * (LOGITS["mismatch"] > -1) / b)
    for name, g, e in zip(("∂L_D/∂D(x, s)", "∂L_D/∂D(x̂, s)", "∂L_D/∂D(x', s)"), got, expected):
        assert_close(name, g, e.astype(np.float64), 1e-5, 1e-7)


def check_hinge_two_replicas(module):
    """Two replicas, each with half the batch and the global-batch average: their losses must sum to L_D."""
    import tensorflow as tf

    from t2igan.training.gan import ConditionalGAN

    halves = [[tf.constant(LOGITS[k][h * 3:(h + 1) * 3], tf.float32) for k in ("real", "fake", "mismatch")]
              for h in range(2)]
    results = two_replicas(lambda r, f, m: module.discriminator_hinge_loss(r, f, m, ConditionalGAN.average)[0], halves)
    expected, _ = _hinge_numpy(LOGITS["real"], LOGITS["fake"], LOGITS["mismatch"])
    assert_close("sum over 2 replicas of L_D", float(results[0]) + float(results[1]), expected, 1e-5)


class _RecordingDiscriminator:
    """Stands in for D: logits(features, s) = Σ features · Σ s per pair, and it records the pairs."""

    def __init__(self):
        self.calls = []

    def logits(self, features, sentence, training=False):
        import tensorflow as tf

        self.calls.append((features.numpy(), sentence.numpy()))
        return tf.reduce_sum(features, [1, 2, 3]) * tf.reduce_sum(sentence, -1)

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        images, sentence = inputs
        return tf.reduce_sum(images, [1, 2, 3]) * 0.1 + tf.reduce_sum(sentence, -1)


def check_mismatched_pairs(module):
    import tensorflow as tf

    rng = np.random.default_rng(40)
    features, sentence = rng.normal(size=(4, 2, 2, 3)), rng.normal(size=(4, 5))
    for mode, pairs in (("roll", (np.roll(features, -1, 0), sentence)), ("shift", (features[:-1], sentence[1:]))):
        fake_self = types.SimpleNamespace(mismatch=mode, discriminator=_RecordingDiscriminator())
        logits = module.OneStageGan.mismatched_logits(fake_self, tf.constant(features, tf.float32),
                                                      tf.constant(sentence, tf.float32))
        expected = pairs[0].sum((1, 2, 3)) * pairs[1].sum(-1)
        assert_close(f"mismatched logits ({mode!r}: {'image i+1 with caption i' if mode == 'roll' else 'image i with caption i+1'})",
                     logits, expected, 1e-4)


def check_generator_loss(module):
    import tensorflow as tf

    rng = np.random.default_rng(41)
    fake, sentence = rng.normal(size=(3, 2, 2, 3)), rng.normal(size=(3, 4))
    d = _RecordingDiscriminator()
    fake_self = types.SimpleNamespace(discriminator=d)
    loss, logs = module.OneStageGan.generator_loss(fake_self, tf.constant(fake, tf.float32),
                                                   tf.constant(sentence, tf.float32), {})
    if not isinstance(logs, dict):
        raise CheckFailed("generator_loss must return (per-example loss, dict of logs).")
    assert_shape("generator loss", loss, (3,))
    expected = -(fake.sum((1, 2, 3)) * 0.1 + sentence.sum(-1))
    assert_close("L_G per example, −D(x̂, s)", loss, expected, 1e-4)


HINGE = Task(
    name="hinge_loss",
    title="Hinge loss with mismatched text",
    module=MODULE,
    week="1-week",
    stubs={
        "discriminator_hinge_loss": """real = relu(1 − real_logits), fake = relu(1 + fake_logits), mismatch = relu(1 + mismatch_logits), each
per example; L_D = average(real) + ½·(average(fake) + average(mismatch)). Use the given average (the
global-batch mean under tf.distribute), not tf.reduce_mean. Return (L_D, (real, fake, mismatch)).""",
        "OneStageGan.mismatched_logits": """Return self.discriminator.logits(features', sentence', training=True) of mismatched pairs:
self.mismatch == "roll": features rolled by one along the batch so that image i+1 meets caption i
(tf.roll(..., shift=-1, axis=0)) with all B captions; "shift": image i with caption i+1 (features[:-1],
sentence[1:]), B − 1 pairs.""",
        "OneStageGan.generator_loss": """Return (−D(x̂, s) per example (B,), {}): self.discriminator([fake, sentence], training=True) negated.""",
    },
    checks=(
        Check("L_D and its three hinge terms", 3, check_hinge_value,
              "real pairs are pushed above +1, fake and mismatched pairs below −1; the last two weigh ½ each."),
        Check("∂L_D w.r.t. the three logits", 2, check_hinge_gradients,
              "a hinge term has gradient only where its margin is violated."),
        Check("L_D under 2 replicas (global-batch average)", 2, check_hinge_two_replicas,
              "average each term with the given average function, not tf.reduce_mean: under N replicas each "
              "replica's loss must be its share of the global mean."),
        Check("mismatched pairs (roll and shift)", 2, check_mismatched_pairs,
              "roll: tf.roll(features, shift=-1, axis=0) with every caption; shift: features[:-1] with sentence[1:]."),
        Check("generator loss −D(x̂, s)", 2, check_generator_loss,
              "G maximises D's score of its images: the loss is the negated logit, per example."),
    ),
    mutations=(
        Mutation("real hinge sign flipped", "tf.nn.relu(1.0 - real_logits)", "tf.nn.relu(1.0 + real_logits)"),
        Mutation("fake hinge sign flipped", "tf.nn.relu(1.0 + fake_logits)", "tf.nn.relu(1.0 - fake_logits)"),
        Mutation("no ½ on fake and mismatch", "average(real) + 0.5 * (", "average(real) + ("),
        Mutation("mismatch term dropped", "0.5 * (average(fake) + average(mismatch))", "0.5 * average(fake)"),
        Mutation("tf.reduce_mean instead of the global average",
                 "return average(real) + 0.5 * (average(fake) + average(mismatch))",
                 "return tf.reduce_mean(real) + 0.5 * (tf.reduce_mean(fake) + tf.reduce_mean(mismatch))"),
        Mutation("roll in the other direction", "tf.roll(real_features, shift=-1, axis=0)",
                 "tf.roll(real_features, shift=1, axis=0)"),
        Mutation("mismatched pairs not mismatched", "tf.roll(real_features, shift=-1, axis=0)", "real_features"),
        Mutation("shift pairs image i with caption i", "real_features[:-1], sentence[1:]", "real_features[:-1], sentence[:-1]"),
        Mutation("generator loss sign flipped", "return -self.discriminator([fake, sentence], training=True), {}",
                 "return self.discriminator([fake, sentence], training=True), {}"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 4: RAT-GAN's recurrent controller
def _lstm_numpy(cell, x, h, c):
    """Keras LSTMCell (gates i, f, c, o; sigmoid/tanh) from its weights: returns (h', c')."""
    kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in cell.weights)
    z = x @ kernel + h @ recurrent + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


class _RecordingBlock:
    """Stands in for a FusionBlock: records (x, the four conditions) and returns a fixed (B, H, W, fout)."""

    def __init__(self, fout, seed):
        self.fout, self.seed, self.calls = fout, seed, []

    def __call__(self, x, conditions):
        import tensorflow as tf

        self.calls.append((x.numpy(), [np.asarray(c) for c in conditions]))
        shape = (x.shape[0], x.shape[1], x.shape[2], self.fout)
        self.output = np.random.default_rng(self.seed).normal(size=shape).astype(np.float32)
        return tf.constant(self.output), [tf.zeros(4)] * len(conditions)


def _controller_case(module, seed):
    import tensorflow as tf

    generator = module.RatGanGenerator(noise_dim=5, sentence_dim=6, base_width=2, image_size=16, controller_units=4)
    generator([tf.zeros((2, 5)), tf.zeros((2, 6))])
    rng = np.random.default_rng(seed)
    for variable in generator.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    recorders = [_RecordingBlock(fout, 50 + k) for k, fout in enumerate(generator.widths[1:])]
    generator.blocks = recorders
    return generator, recorders


def _expected_trace(generator, z, s):
    """Every block's four conditions: one LSTM step per affine from (h0(z), c0(z)), carried across blocks."""
    h = z @ generator.h0.kernel.numpy() + generator.h0.bias.numpy()
    c = z @ generator.c0.kernel.numpy() + generator.c0.bias.numpy()
    trace = []
    for _ in generator.blocks:
        block = []
        for _ in range(4):
            h, c = _lstm_numpy(generator.controller, s, h, c)
            block.append(h)
        trace.append(block)
    return trace


def _run_controller(module, seed):
    import tensorflow as tf

    generator, recorders = _controller_case(module, seed)
    rng = np.random.default_rng(seed + 1)
    z, s = rng.normal(size=(2, 5)), rng.normal(size=(2, 6))
    images = generator([tf.constant(z, tf.float32), tf.constant(s, tf.float32)])
    return generator, recorders, z, s, images


def check_controller_trace(module):
    generator, recorders, z, s, _ = _run_controller(module, 60)
    for k, recorder in enumerate(recorders):
        if len(recorder.calls) != 1:
            raise CheckFailed(f"block {k} was called {len(recorder.calls)} times in one forward, expected once.")
    for k, (recorder, expected) in enumerate(zip(recorders, _expected_trace(generator, z, s))):
        conditions = recorder.calls[0][1]
        if len(conditions) != 4:
            raise CheckFailed(f"block {k} received {len(conditions)} conditions, expected 4 (one per affine).")
        for j in range(4):
            assert_close(f"block {k}, affine {j + 1}: controller hidden state h_{4 * k + j + 1}", conditions[j],
                         expected[j], 1e-3, 1e-6)


def check_controller_fresh_state(module):
    """A second forward with other noise starts again from (h0(z'), c0(z')): nothing carries between calls."""
    import tensorflow as tf

    generator, recorders, _, _, _ = _run_controller(module, 61)
    rng = np.random.default_rng(99)
    z, s = rng.normal(size=(2, 5)), rng.normal(size=(2, 6))
    for recorder in recorders:
        recorder.calls.clear()
    generator([tf.constant(z, tf.float32), tf.constant(s, tf.float32)])
    expected = _expected_trace(generator, z, s)
    assert_close("second forward, block 0, affine 1 (from h0(z'), c0(z'))", recorders[0].calls[0][1][0],
                 expected[0][0], 1e-3, 1e-6)
    assert_close("second forward, last block, affine 4", recorders[-1].calls[0][1][3], expected[-1][3], 1e-3, 1e-6)


def check_controller_feature_path(module):
    """fc(z) viewed as (C, 4, 4) enters block 0; each later block gets the previous output up-sampled ×2."""
    generator, recorders, z, _, images = _run_controller(module, 62)
    fc = z @ generator.fc.kernel.numpy() + generator.fc.bias.numpy()
    start = fc.reshape(len(z), generator.widths[0], 4, 4).transpose(0, 2, 3, 1)
    assert_close("block 0 input: fc(z) viewed (C, 4, 4) as NHWC", recorders[0].calls[0][0], start, 1e-4, 1e-6)
    for k in range(1, len(recorders)):
        previous = recorders[k - 1].output
        upsampled = previous.repeat(2, axis=1).repeat(2, axis=2)
        assert_close(f"block {k} input: block {k - 1}'s output up-sampled ×2 (nearest)", recorders[k].calls[0][0],
                     upsampled, 1e-5, 1e-6)
    assert_shape("images", images, (2, 16, 16, 3))


RAT_CONTROLLER = Task(
    name="rat_controller",
    title="RAT-GAN's recurrent affine controller",
    module=MODULE,
    week="2-week",
    stubs={
        "RatGanGenerator.call": """x (B, 4, 4, widths[0]) is the fc output. state = [h0(z), c0(z)] (self.h0, self.c0), new at every forward.
For each block i (self.blocks): up-sample x by self.up when i > 0; step the shared LSTM cell 4 times,
hidden, state = self.controller(sentence, state), collecting the 4 hidden states (one per affine; the
state carries on into the next block); x, block_statistics = block(x, hidden_states); collect the
statistics in a list named statistics. Leave x and statistics for the lines after this region.""",
    },
    checks=(
        Check("each block's four conditions are the LSTM's hidden states h_1 … h_4n", 5, check_controller_trace,
              "one controller step per affine, four per block, and the (h, c) state carries from block to block."),
        Check("the state starts again from (h0(z), c0(z)) at every forward", 2, check_controller_fresh_state,
              "initialise the state from z inside call, not once in __init__."),
        Check("the feature path: fc view, up-sampling between blocks", 2, check_controller_feature_path,
              "no up-sampling before block 0 (it works at 4×4); every later block gets the previous output ×2."),
    ),
    mutations=(
        Mutation("state re-initialised in every block", "            hidden_states = []\n",
                 "            hidden_states = []\n            state = [self.h0(z), self.c0(z)]\n"),
        Mutation("one controller step per block", "            for _ in range(4):  # one controller step per affine of this block\n"
                 "                hidden, state = self.controller(sentence, state)\n                hidden_states.append(hidden)\n",
                 "            hidden, state = self.controller(sentence, state)\n            hidden_states = [hidden] * 4\n"),
        Mutation("c0 from the h0 layer", "[self.h0(z), self.c0(z)]", "[self.h0(z), self.h0(z)]"),
        Mutation("up-sampling before block 0 too", "            if i > 0:\n                x = self.up(x)\n",
                 "            x = self.up(x)\n"),
    ),
    hidden_files=HIDDEN,
    time_limit_s=120.0,
)

TASKS = [AFFINE_FUSION, MAGP, HINGE, RAT_CONTROLLER]

if __name__ == "__main__":
    main(TASKS, chapter=4, tasks_file=__file__)
