"""Chapter 2 assignments: StackGAN's conditioning augmentation and its KL term, StackGAN++'s joint
conditional + unconditional stage losses, and its colour-consistency regulariser — with the grader's
checks and the typical mistakes it must catch.

Every expected value is computed here from the paper's equation as the official code implements it
(``hanzhanggit/StackGAN-v2`` ``code/model.py`` ``CA_NET``, ``code/trainer.py`` ``KL_loss``,
``compute_mean_covariance``, ``condGANTrainer.train_Dnet`` / ``train_Gnet``), in NumPy or in a float64
TensorFlow transcription where a gradient is needed, never by calling the reference code, so grading
the reference in ``make test`` also catches a bug planted in the reference. Kept out of student copies.

    make assignment CHAPTER=2 OUT=hw2 [TASKS=conditioning_augmentation,joint_stage_loss]
    make grade CHAPTER=2 STUDENT=hw2
"""

from __future__ import annotations

import types

import numpy as np

from t2igan.assignments import Check, CheckFailed, Mutation, Task, assert_close, assert_shape
from t2igan.assignments.cli import main

STAGES = "chapters.ch2_stackgan.stages"
# Both pin the same lines: the model test directly, the official one through PyTorch's CA_NET and G_NET (it
# computes c = μ + σ·ε and the whole tree), so both are kept out of student copies.
HIDDEN = ("tests/test_chapter02_model.py", "tests/test_chapter02_official.py")
MODEL = "chapters.ch2_stackgan.model"


def _softplus(x):
    return np.logaddexp(0.0, x)


def _bce(logits, label):
    """BCE with logits against a constant label: softplus(−l) for label 1, softplus(l) for label 0."""
    return _softplus(-logits) if label == 1 else _softplus(logits)


# ------------------------------------------------------------------ task 1: conditioning augmentation
def _random_ca(module, parameterisation, text_dim=6, condition_dim=4, seed=0):
    """A CA layer with every weight random (the v2 bias starts at zero and would hide mistakes)."""
    layer = module.ConditioningAugmentation(condition_dim, parameterisation)
    layer.fc.build((None, text_dim))
    rng = np.random.default_rng(seed)
    for variable in layer.fc.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
    return layer


def _ca_numpy(layer, text, noise):
    """(c, μ, log σ²): v2 Linear → GLU → [μ, log σ²]; v1 Linear → LeakyReLU(0.2) → [μ, log σ]; c = μ + σ·ε."""
    kernel, bias = (w.numpy().astype(np.float64) for w in layer.fc.weights)
    h = text @ kernel + bias
    d = layer.condition_dim
    if layer.parameterisation == "v2":
        gated = h[:, :2 * d] / (1 + np.exp(-h[:, 2 * d:]))
        mu, logvar = gated[:, :d], gated[:, d:]
    else:
        h = np.where(h > 0, h, 0.2 * h)
        mu, logvar = h[:, :d], 2.0 * h[:, d:]
    return mu + np.exp(0.5 * logvar) * noise, mu, logvar


def _ca_forward(module, parameterisation, seed):
    import tensorflow as tf

    layer = _random_ca(module, parameterisation, seed=seed)
    rng = np.random.default_rng(seed + 100)
    text, noise = rng.normal(size=(3, 6)), rng.normal(size=(3, 4))
    result = layer(tf.constant(text, tf.float32), noise=tf.constant(noise, tf.float32))
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise CheckFailed("ConditioningAugmentation must return (c, μ, log σ²).")
    for name, got, want in zip(("c", "μ", "log σ²"), result, _ca_numpy(layer, text, noise)):
        assert_shape(f"{name} ({parameterisation})", got, (3, 4))
        assert_close(f"{name} ({parameterisation}, ε given)", got, want, 1e-4, 1e-6)


def check_ca_v2(module):
    _ca_forward(module, "v2", 1)


def check_ca_v1(module):
    _ca_forward(module, "v1", 2)


def check_ca_sampling(module):
    """Without ``noise``: a fresh ε per call; (c − μ)/σ is N(0, 1) for v2, the truncated normal (|ε| ≤ 2) for v1."""
    import tensorflow as tf

    text = tf.constant(np.random.default_rng(3).normal(size=(4096, 6)), tf.float32)
    for parameterisation, std, bounded in (("v2", 1.0, False), ("v1", 0.87963, True)):
        layer = _random_ca(module, parameterisation, condition_dim=8, seed=4)
        c, mu, logvar = (x.numpy().astype(np.float64) for x in layer(text))
        again = layer(text)[0].numpy()
        if np.max(np.abs(again - c)) == 0:
            raise CheckFailed(f"{parameterisation}: two calls without noise gave the same c; draw a new ε at every call.")
        epsilon = (c - mu) / np.exp(0.5 * logvar)
        name = f"{parameterisation}: ε = (c − μ)/σ over {epsilon.size} draws"
        if abs(epsilon.mean()) > 0.03 or abs(epsilon.std() - std) > 0.03:
            raise CheckFailed(f"{name} has mean {epsilon.mean():.3f} and std {epsilon.std():.3f}, expected 0 and "
                              f"{std:.3f} ({'truncated normal' if bounded else 'standard normal'}).")
        largest = np.abs(epsilon).max()
        if bounded and largest > 2.0 + 1e-3:
            raise CheckFailed(f"{name} reaches |ε| = {largest:.2f}; StackGAN-v1 draws a truncated normal (|ε| ≤ 2).")
        if not bounded and largest < 3.0:
            raise CheckFailed(f"{name} never exceeds |ε| = {largest:.2f}; StackGAN++ draws ε from N(0, 1), "
                              f"not a truncated normal.")


def check_ca_gradients(module):
    """∂/∂(t, W, b) of Σ c·g1 + Σ μ·g2 + Σ log σ²·g3 (v2, ε given), against a float64 transcription."""
    import tensorflow as tf

    layer = _random_ca(module, "v2", seed=5)
    rng = np.random.default_rng(6)
    text, noise = rng.normal(size=(3, 6)), rng.normal(size=(3, 4))
    upstream = [rng.normal(size=(3, 4)) for _ in range(3)]
    text32 = tf.Variable(text, dtype=tf.float32)
    with tf.GradientTape() as tape:
        outputs = layer(text32, noise=tf.constant(noise, tf.float32))
        loss = sum(tf.reduce_sum(x * g) for x, g in zip(outputs, upstream))
    got = tape.gradient(loss, [text32, *layer.fc.weights])
    text64 = tf.Variable(text)
    kernel, bias = layer.fc.weights
    kernel64, bias64 = tf.Variable(kernel.numpy().astype(np.float64)), tf.Variable(bias.numpy().astype(np.float64))
    with tf.GradientTape() as tape:
        h = tf.matmul(text64, kernel64) + bias64
        a, b = tf.split(h, 2, axis=-1)
        mu, logvar = tf.split(a * tf.sigmoid(b), 2, axis=-1)
        outputs = (mu + tf.exp(0.5 * logvar) * noise, mu, logvar)
        loss = sum(tf.reduce_sum(x * g) for x, g in zip(outputs, upstream))
    want = tape.gradient(loss, [text64, kernel64, bias64])
    for name, g, w in zip(("∂L/∂t", "∂L/∂W (fc kernel)", "∂L/∂b (fc bias)"), got, want):
        assert_close(name, g, w, 1e-3, 1e-6)


def _kl_numpy(mu, logvar):
    return np.mean(-0.5 * (1.0 + logvar - mu ** 2 - np.exp(logvar)), axis=-1)


KL_CASE = dict(mu=np.array([[0.3, -1.2, 0.8, 0.0, 2.0], [-0.5, 0.1, 1.5, -2.2, 0.4], [0.0, 0.0, 0.0, 0.0, 0.0]]),
               logvar=np.array([[-1.5, 0.7, 0.2, -0.3, 1.1], [0.9, -2.0, -0.6, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]))


def check_kl_value(module):
    import tensorflow as tf

    mu, logvar = KL_CASE["mu"], KL_CASE["logvar"]
    got = module.kl_loss(tf.constant(mu, tf.float32), tf.constant(logvar, tf.float32))
    assert_shape("kl_loss (one value per example)", got, (3,))
    assert_close("KL(N(μ, σ²) ‖ N(0, I)), mean over dimensions", got, _kl_numpy(mu, logvar), 1e-5, 1e-7)


def check_kl_mixed_precision(module):
    """Under mixed precision μ and log σ² arrive in float16; the KL must be computed (and returned) in float32."""
    import tensorflow as tf

    mu, logvar = KL_CASE["mu"], KL_CASE["logvar"]
    got = module.kl_loss(tf.constant(mu, tf.float16), tf.constant(logvar, tf.float16))
    if got.dtype != tf.float32:
        raise CheckFailed(f"kl_loss of float16 inputs returns {got.dtype.name}, expected float32.")
    expected = _kl_numpy(mu.astype(np.float16).astype(np.float64), logvar.astype(np.float16).astype(np.float64))
    assert_close("kl_loss of float16 inputs", got, expected, 1e-4, 1e-6)


def check_kl_gradients(module):
    """∂(Σ_b w_b·KL_b)/∂μ = w·μ/d and ∂/∂log σ² = w·½(σ² − 1)/d (closed form)."""
    import tensorflow as tf

    mu, logvar = KL_CASE["mu"], KL_CASE["logvar"]
    weights = np.array([1.0, -0.6, 0.3])
    mu32, logvar32 = tf.Variable(mu, dtype=tf.float32), tf.Variable(logvar, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(module.kl_loss(mu32, logvar32) * weights)
    got = tape.gradient(loss, [mu32, logvar32])
    d = mu.shape[1]
    assert_close("∂KL/∂μ", got[0], weights[:, None] * mu / d, 1e-4, 1e-7)
    assert_close("∂KL/∂log σ²", got[1], weights[:, None] * 0.5 * (np.exp(logvar) - 1.0) / d, 1e-4, 1e-7)


CONDITIONING_AUGMENTATION = Task(
    name="conditioning_augmentation",
    title="Conditioning augmentation and its KL term",
    module=STAGES,
    week="1-week",
    hidden_files=HIDDEN,
    stubs={
        "ConditioningAugmentation.call": """h = self.fc(text_embedding) (B, 4·condition_dim for v2, 2·condition_dim for v1).
v2 (StackGAN++ CA_NET): h = glu(h), then its two halves are μ and log σ² (each (B, condition_dim)).
v1 (StackGAN-v1): h = LReLU_0.2(h) (tf.nn.leaky_relu(h, LEAK)) on the whole output, then its halves are
μ and log σ — return log σ² = 2·log σ, so that kl_loss serves both.
ε = noise when given; otherwise a fresh draw of μ's shape and dtype at every call: N(0, 1) for v2,
tf.random.truncated_normal for v1. Return (c, μ, log σ²) with c = μ + σ·ε, σ = exp(½·log σ²).""",
        "kl_loss": """KL(N(μ, σ²) ‖ N(0, I)) per example = −½ · mean over the d dimensions of (1 + log σ² − μ² − σ²),
with σ² = exp(log σ²); a mean, not a sum (the official KL_loss). Cast μ and log σ² to float32 first (mixed
precision gives float16). Return shape (B,).""",
    },
    checks=(
        Check("v2 CA forward: GLU → [μ, log σ²], c = μ + σ·ε", 3, check_ca_v2,
              "σ is exp(½·log σ²), not exp(log σ²); the first half after the GLU is μ, the second log σ²; "
              "use the given noise as ε."),
        Check("v1 CA forward: LeakyReLU → [μ, log σ], log σ² = 2·log σ", 2, check_ca_v1,
              "v1's second half is log σ (not log σ²): return 2·log σ, and c = μ + exp(log σ)·ε."),
        Check("ε drawn at every call: N(0, 1) for v2, truncated normal for v1", 2, check_ca_sampling,
              "without noise, draw ε inside call (tf.random.normal for v2, tf.random.truncated_normal for v1), "
              "never zeros or a fixed tensor."),
        Check("CA gradients w.r.t. the text and the fc weights (reparameterisation)", 2, check_ca_gradients,
              "c = μ + σ·ε must stay differentiable in μ and σ: no stop_gradient, no numpy."),
        Check("KL value, one per example, mean over dimensions", 3, check_kl_value,
              "KL = −½·mean(1 + log σ² − μ² − σ²): mind the sign, σ² = exp(log σ²), and average (not sum) over "
              "the dimensions only (axis −1)."),
        Check("KL of float16 inputs, in float32", 1, check_kl_mixed_precision,
              "cast μ and log σ² to float32 before the arithmetic."),
        Check("KL gradients w.r.t. μ and log σ²", 2, check_kl_gradients,
              "∂KL/∂μ = μ/d and ∂KL/∂log σ² = ½(σ² − 1)/d; a wrong sign or σ for σ² shows here."),
    ),
    mutations=(
        Mutation("mean not added to the sample", "return mu + tf.exp(0.5 * logvar) * noise, mu, logvar",
                 "return tf.exp(0.5 * logvar) * noise, mu, logvar"),
        Mutation("σ = exp(log σ²) (no ½)", "tf.exp(0.5 * logvar) * noise", "tf.exp(logvar) * noise"),
        Mutation("ε not random (zeros)", "tf.random.normal(shape, dtype=mu.dtype)", "tf.zeros(shape, dtype=mu.dtype)"),
        Mutation("v1 ε from N(0, 1), not truncated", "else tf.random.truncated_normal(shape, dtype=mu.dtype)",
                 "else tf.random.normal(shape, dtype=mu.dtype)"),
        Mutation("v1 log σ taken for log σ²", "logvar = 2.0 * log_sigma", "logvar = log_sigma"),
        Mutation("μ and log σ² halves swapped (v2)", "mu, logvar = tf.split(h, 2, axis=-1)",
                 "logvar, mu = tf.split(h, 2, axis=-1)"),
        Mutation("KL sign flipped", "return -0.5 * tf.reduce_mean(", "return 0.5 * tf.reduce_mean("),
        Mutation("KL summed over dimensions", "-0.5 * tf.reduce_mean(1.0", "-0.5 * tf.reduce_sum(1.0"),
        Mutation("KL with σ for σ² (exp(½·log σ²))", "- tf.exp(logvar), axis=-1)", "- tf.exp(0.5 * logvar), axis=-1)"),
        Mutation("KL in float16 (no cast)", "    mu, logvar = tf.cast(mu, tf.float32), tf.cast(logvar, tf.float32)\n", ""),
    ),
)


# ------------------------------------------------------------------ task 2: the joint stage losses
class _TinyStageDiscriminator:
    """Stands in for a stage D with a closed form: conditional = Σ x·A + Σ tanh(c·v), unconditional = Σ x·U + b."""

    def __init__(self, size, condition_dim, seed):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        scale = 1.0 / size
        self.values = dict(a=rng.normal(0, scale, (size, size, 3)), v=rng.normal(0, 1.0, condition_dim),
                           u=rng.normal(0, scale, (size, size, 3)), b=rng.normal(0, 0.5))
        self.a, self.v, self.u, self.b = (tf.Variable(self.values[k], dtype=tf.float32) for k in "avub")
        self.trainable_variables = [self.a, self.v, self.u, self.b]

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        images, condition = inputs
        images, condition = tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(condition, tf.float32)
        conditional = tf.reduce_sum(images * self.a, [1, 2, 3]) + tf.reduce_sum(tf.tanh(condition * self.v), -1)
        unconditional = tf.reduce_sum(images * self.u, [1, 2, 3]) + self.b
        return conditional, unconditional

    def logits64(self, images, condition, weights=None):
        """(conditional, unconditional) in float64 TensorFlow; ``weights``: float64 variables (a, v, u, b)."""
        import tensorflow as tf

        a, v, u, b = weights if weights is not None else (tf.constant(self.values[k], tf.float64) for k in "avub")
        return (tf.reduce_sum(images * a, [1, 2, 3]) + tf.reduce_sum(tf.tanh(condition * v), -1),
                tf.reduce_sum(images * u, [1, 2, 3]) + b)

    def logits_numpy(self, images, condition):
        a, v, u, b = (self.values[k] for k in "avub")
        return ((images * a).sum((1, 2, 3)) + np.tanh(condition * v).sum(-1), (images * u).sum((1, 2, 3)) + b)


def _stage_case(seed, size=4, condition_dim=5, batch=3):
    rng = np.random.default_rng(seed)
    d = _TinyStageDiscriminator(size, condition_dim, seed + 1)
    real, wrong, fake = (rng.normal(0, 1.0, (batch, size, size, 3)) for _ in range(3))
    mu = rng.normal(0, 1.0, (batch, condition_dim))
    return d, real, wrong, fake, mu


def _discriminator_loss_numpy(d, real, wrong, fake, mu, u):
    (real_c, real_u), (wrong_c, wrong_u), (fake_c, fake_u) = (d.logits_numpy(x, mu) for x in (real, wrong, fake))
    if u > 0:
        loss = (_bce(real_c, 1) + u * _bce(real_u, 1) + _bce(wrong_c, 0) + u * _bce(wrong_u, 1)
                + _bce(fake_c, 0) + u * _bce(fake_u, 0))
    else:
        loss = _bce(real_c, 1) + 0.5 * (_bce(wrong_c, 0) + _bce(fake_c, 0))
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    return loss, sigmoid(real_c), sigmoid(wrong_c), sigmoid(fake_c)


def _call_discriminator_loss(module, u, d, real, wrong, fake, mu):
    import tensorflow as tf

    fake_self = types.SimpleNamespace(uncond_weight=u)
    result = module.StackGanPlusPlus.discriminator_loss(fake_self, d, *(tf.constant(x, tf.float32) for x in
                                                                        (real, wrong, fake, mu)))
    if not isinstance(result, (tuple, list)) or len(result) != 4:
        raise CheckFailed("discriminator_loss must return (per-example loss, σ(Dc(x, μ)), σ(Dc(x_w, μ)), σ(Dc(G, μ))).")
    return result


def check_discriminator_loss_joint(module):
    for u, seed in ((1.0, 10), (0.5, 11)):
        d, real, wrong, fake, mu = _stage_case(seed)
        got = _call_discriminator_loss(module, u, d, real, wrong, fake, mu)
        expected = _discriminator_loss_numpy(d, real, wrong, fake, mu, u)
        assert_shape("L_D per example", got[0], (3,))
        assert_close(f"L_D,i per example (u = {u}): real, wrong and fake, each conditional + u·unconditional",
                     got[0], expected[0], 1e-5, 1e-7)


def check_discriminator_loss_without_unconditional(module):
    d, real, wrong, fake, mu = _stage_case(12)
    got = _call_discriminator_loss(module, 0.0, d, real, wrong, fake, mu)
    expected = _discriminator_loss_numpy(d, real, wrong, fake, mu, 0.0)
    assert_close("L_D,i per example (u = 0): real + ½·(wrong + fake)", got[0], expected[0], 1e-5, 1e-7)


def check_discriminator_scores(module):
    d, real, wrong, fake, mu = _stage_case(13)
    got = _call_discriminator_loss(module, 1.0, d, real, wrong, fake, mu)
    expected = _discriminator_loss_numpy(d, real, wrong, fake, mu, 1.0)
    for name, g, e in zip(("σ(Dc(x, μ))", "σ(Dc(x_w, μ))", "σ(Dc(G, μ))"), got[1:], expected[1:]):
        assert_close(f"score {name} (the conditional head's probability)", g, e, 1e-5, 1e-7)


def check_discriminator_detach(module):
    """L_D trains D only: no gradient to G's images or to μ (official ``.detach()``); D's own gradients exact."""
    import tensorflow as tf

    d, real, wrong, fake, mu = _stage_case(14)
    fake32, mu32 = tf.constant(fake, tf.float32), tf.constant(mu, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([fake32, mu32])
        loss, *_ = module.StackGanPlusPlus.discriminator_loss(types.SimpleNamespace(uncond_weight=1.0), d,
                                                              tf.constant(real, tf.float32), tf.constant(wrong, tf.float32),
                                                              fake32, mu32)
        total = tf.reduce_sum(loss)
    for name, tensor in (("G's images", fake32), ("μ", mu32)):
        gradient = tape.gradient(total, tensor)
        if gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0:
            raise CheckFailed(f"L_D sends a gradient to {name} (max |∂L_D| {float(tf.reduce_max(tf.abs(gradient))):.2e}); "
                              f"the official code detaches it in the D step.")
    got = tape.gradient(total, d.trainable_variables)
    weights = [tf.Variable(d.values[k], dtype=tf.float64) for k in "avub"]
    with tf.GradientTape() as oracle:
        logits = [d.logits64(tf.constant(x), tf.constant(mu), weights) for x in (real, wrong, fake)]
        bce = lambda l, label: tf.nn.softplus(-l) if label == 1 else tf.nn.softplus(l)  # noqa: E731
        (real_c, real_u), (wrong_c, wrong_u), (fake_c, fake_u) = logits
        expected = tf.reduce_sum(bce(real_c, 1) + bce(real_u, 1) + bce(wrong_c, 0) + bce(wrong_u, 1)
                                 + bce(fake_c, 0) + bce(fake_u, 0))
    want = oracle.gradient(expected, weights)
    for name, g, w in zip(("A (conditional image weights)", "v (condition weights)", "U (unconditional weights)",
                           "b (unconditional bias)"), got, want):
        assert_close(f"∂L_D/∂{name}", g, w, 1e-4, 1e-6)


def _generator_case(seed, u):
    rng = np.random.default_rng(seed)
    sizes = [4, 8]
    stages = [_TinyStageDiscriminator(size, 5, seed + k) for k, size in enumerate(sizes)]
    fake_self = types.SimpleNamespace(sizes=sizes, uncond_weight=u, discriminator=types.SimpleNamespace(stages=stages))
    fakes = [rng.normal(0, 1.0, (3, size, size, 3)) for size in sizes]
    condition = rng.normal(0, 1.0, (3, 5))
    return fake_self, stages, fakes, condition


def check_generator_loss(module):
    import tensorflow as tf

    for u, seed in ((1.0, 20), (0.5, 21)):
        fake_self, stages, fakes, condition = _generator_case(seed, u)
        logs = {}
        total = module.StackGanPlusPlus.adversarial_generator_loss(fake_self, [tf.constant(x, tf.float32) for x in fakes],
                                                                   tf.constant(condition, tf.float32), logs)
        per_stage = []
        for size, d, fake in zip(fake_self.sizes, stages, fakes):
            conditional, unconditional = d.logits_numpy(fake, condition)
            per_stage.append(_bce(conditional, 1) + u * _bce(unconditional, 1))
            if f"g_loss_{size}" not in logs:
                raise CheckFailed(f"logs has no 'g_loss_{size}' (stage {size} px's term); keys: {sorted(logs)}.")
            assert_close(f"logs['g_loss_{size}'] (u = {u})", logs[f"g_loss_{size}"], per_stage[-1], 1e-5, 1e-7)
        assert_shape("L_G per example", total, (3,))
        assert_close(f"L_G = Σ_i [BCE(Dc(G_i, μ), 1) + u·BCE(Du(G_i), 1)] (u = {u})", total, sum(per_stage), 1e-5, 1e-7)


def check_generator_gradients(module):
    """The gradient reaches every stage's images and the condition μ (G's loss trains CA too)."""
    import tensorflow as tf

    fake_self, stages, fakes, condition = _generator_case(22, 1.0)
    weights = np.array([1.0, 0.4, -0.7])
    fakes32, condition32 = [tf.Variable(x, dtype=tf.float32) for x in fakes], tf.Variable(condition, dtype=tf.float32)
    with tf.GradientTape() as tape:
        total = module.StackGanPlusPlus.adversarial_generator_loss(fake_self, list(fakes32), condition32, {})
        loss = tf.reduce_sum(total * weights)
    got = tape.gradient(loss, [*fakes32, condition32])
    fakes64, condition64 = [tf.Variable(x) for x in fakes], tf.Variable(condition)
    with tf.GradientTape() as tape:
        expected = 0.0
        for d, fake in zip(stages, fakes64):
            conditional, unconditional = d.logits64(fake, condition64)
            expected += tf.nn.softplus(-conditional) + tf.nn.softplus(-unconditional)
        loss = tf.reduce_sum(expected * weights)
    want = tape.gradient(loss, [*fakes64, condition64])
    for name, g, w in zip(("∂L_G/∂G_1 (4 px)", "∂L_G/∂G_2 (8 px)", "∂L_G/∂μ"), got, want):
        assert_close(name, g, w, 1e-4, 1e-6)


JOINT_STAGE_LOSS = Task(
    name="joint_stage_loss",
    title="StackGAN++'s joint conditional and unconditional stage losses",
    module=MODEL,
    week="1-week",
    hidden_files=HIDDEN,
    stubs={
        "StackGanPlusPlus.discriminator_loss": """Detach fake and mu first (tf.stop_gradient: L_D trains D only). u = self.uncond_weight.
d([x, mu], training=True) returns (conditional, unconditional) logits (B,) for x in real, wrong, fake.
With BCE(l, y) = bce_with_logits(l, y) per example:
  u > 0:  L_D = BCE(Dc(real), 1) + u·BCE(Du(real), 1) + BCE(Dc(wrong), 0) + u·BCE(Du(wrong), 1)
              + BCE(Dc(fake), 0) + u·BCE(Du(fake), 0)      (a wrong image is real: its unconditional label is 1)
  u = 0:  L_D = BCE(Dc(real), 1) + ½·(BCE(Dc(wrong), 0) + BCE(Dc(fake), 0))
Leave L_D (B,) in per_example and the conditional logits in real_c, wrong_c, fake_c: the line after
this region returns (per_example, sigmoid(real_c), sigmoid(wrong_c), sigmoid(fake_c)).""",
        "StackGanPlusPlus.adversarial_generator_loss": """For each stage (size, d, fake) in zip(self.sizes, self.discriminator.stages, fakes):
conditional, unconditional = d([fake, condition], training=True); the stage's term (B,) is
BCE(conditional, 1) + self.uncond_weight·BCE(unconditional, 1) (bce_with_logits); store it in
logs[f"g_loss_{size}"] and add it to the total. Do not detach condition. Return the total (B,).""",
    },
    checks=(
        Check("L_D,i with the unconditional head (u = 1 and u = 0.5)", 4, check_discriminator_loss_joint,
              "six terms: real (1, 1), wrong (conditional 0, unconditional 1: a wrong image is still real), fake (0, 0); "
              "the conditional logit is the first output of d, the unconditional the second; u weighs each "
              "unconditional term."),
        Check("L_D,i without the unconditional head (u = 0)", 2, check_discriminator_loss_without_unconditional,
              "u = 0 is the v1-style loss: real + ½·(wrong + fake), conditional logits only."),
        Check("the conditional scores σ(Dc) for the logs", 1, check_discriminator_scores,
              "real_c, wrong_c and fake_c must hold the conditional logits (d's first output) of real, wrong and fake."),
        Check("L_D stops the gradient to G and to μ; D's gradients exact", 2, check_discriminator_detach,
              "apply tf.stop_gradient to fake and to mu before calling d (the official .detach())."),
        Check("L_G per example and per stage (logs)", 3, check_generator_loss,
              "every stage counts: Σ_i of BCE(Dc(G_i, μ), 1) + u·BCE(Du(G_i), 1) (the non-saturating form, label 1); "
              "logs['g_loss_<size>'] holds stage i's term."),
        Check("L_G gradients reach every stage's images and μ", 2, check_generator_gradients,
              "do not detach the condition in G's loss: the official G loss trains CA through μ."),
    ),
    mutations=(
        Mutation("wrong image unconditionally labelled fake", "u * bce_with_logits(wrong_u, 1.0)",
                 "u * bce_with_logits(wrong_u, 0.0)"),
        Mutation("unconditional terms dropped from L_D",
                 "real_loss + u * bce_with_logits(real_u, 1.0) + wrong_loss + u * bce_with_logits(wrong_u, 1.0)\n"
                 "                           + fake_loss + u * bce_with_logits(fake_u, 0.0)",
                 "real_loss + wrong_loss + fake_loss"),
        Mutation("wrong-text term dropped", " + wrong_loss + u * bce_with_logits(wrong_u, 1.0)", ""),
        Mutation("conditional and unconditional logits swapped",
                 "real_c, real_u = d([real, mu], training=True)\n        wrong_c, wrong_u = d([wrong, mu], training=True)\n"
                 "        fake_c, fake_u = d([fake, mu], training=True)",
                 "real_u, real_c = d([real, mu], training=True)\n        wrong_u, wrong_c = d([wrong, mu], training=True)\n"
                 "        fake_u, fake_c = d([fake, mu], training=True)"),
        Mutation("G's images not detached in L_D", "fake, mu = tf.stop_gradient(fake), tf.stop_gradient(mu)",
                 "mu = tf.stop_gradient(mu)"),
        Mutation("μ not detached in L_D", "fake, mu = tf.stop_gradient(fake), tf.stop_gradient(mu)",
                 "fake = tf.stop_gradient(fake)"),
        Mutation("no ½ on wrong + fake when u = 0", "real_loss + 0.5 * (wrong_loss + fake_loss)",
                 "real_loss + wrong_loss + fake_loss"),
        Mutation("unconditional term dropped from L_G",
                 "bce_with_logits(conditional, 1.0) + self.uncond_weight * bce_with_logits(unconditional, 1.0)",
                 "bce_with_logits(conditional, 1.0)"),
        Mutation("saturating generator loss", "per_example = bce_with_logits(conditional, 1.0)",
                 "per_example = -bce_with_logits(conditional, 0.0)"),
        Mutation("condition detached in L_G", "d([fake, condition], training=True)",
                 "d([fake, tf.stop_gradient(condition)], training=True)"),
    ),
)


# ------------------------------------------------------------------ task 3: colour consistency
def _moments_numpy(images):
    pixels = images.reshape(len(images), -1, images.shape[-1]).astype(np.float64)
    mean = pixels.mean(1)
    centred = pixels - mean[:, None, :]
    return mean, np.einsum("bpi,bpj->bij", centred, centred) / pixels.shape[1]


def _moments64(images):
    """The moments in float64 TensorFlow, written from the definition (for gradients)."""
    import tensorflow as tf

    batch, height, width, channels = images.shape
    pixels = tf.reshape(images, [batch, height * width, channels])
    mean = tf.reduce_mean(pixels, axis=1)
    centred = pixels - mean[:, None, :]
    return mean, tf.einsum("bpi,bpj->bij", centred, centred) / float(height * width)


def _colour_images(seed, sizes=(4, 8, 16), batch=2):
    """Stage images with different colour statistics (offsets and scales per stage and channel)."""
    rng = np.random.default_rng(seed)
    images = []
    for k, size in enumerate(sizes):
        offset = rng.normal(0, 0.3, 3)
        mixing = np.eye(3) + rng.normal(0, 0.3, (3, 3))
        images.append(np.tanh(rng.normal(0, 0.6, (batch, size, size, 3)) @ mixing + offset))
    return images


def _colour_numpy(images, weight):
    total = 0.0
    for previous, current in zip(images[:-1], images[1:]):
        (mean_p, cov_p), (mean_c, cov_c) = _moments_numpy(previous), _moments_numpy(current)
        total = total + weight * ((mean_c - mean_p) ** 2).mean(-1) + 5 * weight * ((cov_c - cov_p) ** 2).mean((1, 2))
    return total


def check_moments_value(module):
    import tensorflow as tf

    rng = np.random.default_rng(30)
    images = rng.uniform(-1, 1, (2, 5, 6, 3)) + np.array([0.4, -0.3, 0.6])  # off-centre: centring matters
    result = module.colour_moments(tf.constant(images, tf.float32))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed("colour_moments must return (mean (B, 3), covariance (B, 3, 3)).")
    mean, covariance = _moments_numpy(images)
    assert_close("channel means μ (B, 3)", result[0], mean, 1e-5, 1e-7)
    assert_close("channel covariances Σ = (1/N)·Σ_p (x_p − μ)(x_p − μ)ᵀ (B, 3, 3)", result[1], covariance, 1e-4, 1e-7)


def check_moments_mixed_precision(module):
    import tensorflow as tf

    rng = np.random.default_rng(31)
    images = rng.uniform(-1, 1, (2, 4, 4, 3))
    mean, covariance = module.colour_moments(tf.constant(images, tf.float16))
    for name, value in (("mean", mean), ("covariance", covariance)):
        if value.dtype != tf.float32:
            raise CheckFailed(f"colour_moments of float16 images returns a {value.dtype.name} {name}, expected float32.")
    expected = _moments_numpy(images.astype(np.float16))
    assert_close("covariance of float16 images", covariance, expected[1], 1e-3, 1e-6)


def check_colour_value(module):
    import tensorflow as tf

    for weight, seed in ((50.0, 32), (2.0, 33)):
        images = _colour_images(seed)
        got = module.StackGanPlusPlus.colour_consistency(types.SimpleNamespace(colour_weight=weight),
                                                         [tf.constant(x, tf.float32) for x in images])
        assert_shape("L_C per example", got, (2,))
        assert_close(f"L_C over 3 stages (λ = {weight}, 5λ on the covariances)", got, _colour_numpy(images, weight),
                     1e-4, 1e-7)


def check_colour_same_statistics(module):
    """A later stage that is the earlier one up-sampled (nearest) has the same μ and Σ (with 1/N): L_C = 0."""
    import tensorflow as tf

    small = _colour_images(34, sizes=(4,))[0]
    stages = [small, small.repeat(2, 1).repeat(2, 2), small.repeat(4, 1).repeat(4, 2)]
    got = module.StackGanPlusPlus.colour_consistency(types.SimpleNamespace(colour_weight=50.0),
                                                     [tf.constant(x, tf.float32) for x in stages])
    assert_close("L_C of a stage and its nearest-neighbour up-sampled copies", got, np.zeros(2), 1e-5, 1e-5)


def check_colour_gradients(module):
    """The earlier stage of each pair is the target (detached): ∂L_C/∂(stage 1) = 0, the others exact."""
    import tensorflow as tf

    images = _colour_images(35)
    weights = np.array([1.0, -0.5])
    variables = [tf.Variable(x, dtype=tf.float32) for x in images]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(module.StackGanPlusPlus.colour_consistency(types.SimpleNamespace(colour_weight=3.0),
                                                                        list(variables)) * weights)
    got = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    variables64 = [tf.Variable(x) for x in images]
    with tf.GradientTape() as tape:
        total = 0.0
        for previous, current in zip(variables64[:-1], variables64[1:]):
            (mean_p, cov_p), (mean_c, cov_c) = _moments64(tf.stop_gradient(previous)), _moments64(current)
            total += (3.0 * tf.reduce_mean(tf.square(mean_c - mean_p), -1)
                      + 15.0 * tf.reduce_mean(tf.square(cov_c - cov_p), [1, 2]))
        loss = tf.reduce_sum(total * weights)
    want = tape.gradient(loss, variables64, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for k, (g, w) in enumerate(zip(got, want)):
        assert_close(f"∂L_C/∂(stage {k + 1} images){' — the first stage is only ever a detached target' if k == 0 else ''}",
                     g, w, 1e-3, 1e-6)


COLOUR_CONSISTENCY = Task(
    name="colour_consistency",
    title="StackGAN++'s colour-consistency regulariser",
    module=MODEL,
    week="1-week",
    hidden_files=HIDDEN,
    stubs={
        "colour_moments": """Cast images to float32 first. View them as pixels (B, N, 3), N = H·W; μ = mean over the pixels (B, 3);
Σ = (x − μ)ᵀ(x − μ) / N per image (B, 3, 3): centre the pixels first, divide by N (not N − 1; the
official compute_mean_covariance). Return (μ, Σ).""",
        "StackGanPlusPlus.colour_consistency": """Sum over consecutive stages (previous, current) of images (zip(images[:-1], images[1:])), per example:
mean over the 3 channels of (μ_current − μ_previous)² + 5 · mean over the 3×3 entries of (Σ_current − Σ_previous)²,
with (μ, Σ) = colour_moments(...) and the previous stage detached (tf.stop_gradient: it is the target).
Return self.colour_weight times that sum, shape (B,).""",
    },
    checks=(
        Check("colour_moments: channel means and 1/N covariances", 3, check_moments_value,
              "centre the pixels on their mean before the product, contract over the pixels ((N, 3)ᵀ·(N, 3) → 3×3), "
              "and divide by N = H·W."),
        Check("colour_moments of float16 images, in float32", 1, check_moments_mixed_precision,
              "cast the images to float32 before computing the moments."),
        Check("L_C over three stages (λ and 5λ)", 3, check_colour_value,
              "each consecutive pair counts; the mean term weighs λ, the covariance term 5λ; both are means "
              "(MSE) over their entries, per example."),
        Check("L_C = 0 between a stage and its up-sampled copies", 1, check_colour_same_statistics,
              "with the official 1/N an up-sampled copy has exactly the same covariance; 1/(N − 1) would not."),
        Check("L_C gradients: the earlier stage is a detached target", 3, check_colour_gradients,
              "detach the previous stage (tf.stop_gradient), not the current one: the lower-resolution image "
              "is the reference the higher one must match."),
    ),
    mutations=(
        Mutation("covariance without mean-centring", "centred = pixels - mean[:, None, :]", "centred = pixels"),
        Mutation("1/(N − 1) instead of 1/N", "/ tf.cast(tf.shape(pixels)[1], tf.float32)",
                 "/ tf.cast(tf.shape(pixels)[1] - 1, tf.float32)"),
        Mutation("pixel Gram matrix instead of channel covariance", "transpose_a=True", "transpose_b=True"),
        Mutation("moments in float16 (no cast)", "    images = tf.cast(images, tf.float32)\n", ""),
        Mutation("previous stage not detached", "colour_moments(tf.stop_gradient(previous))", "colour_moments(previous)"),
        Mutation("current stage detached instead of the previous",
                 "mean_p, cov_p = colour_moments(tf.stop_gradient(previous))\n            mean_c, cov_c = colour_moments(current)",
                 "mean_p, cov_p = colour_moments(previous)\n            mean_c, cov_c = colour_moments(tf.stop_gradient(current))"),
        Mutation("λ2 = λ1 (factor 5 dropped)", "+ 5.0 * tf.reduce_mean", "+ tf.reduce_mean"),
        Mutation("covariance term summed, not averaged", "tf.reduce_mean(tf.square(cov_c - cov_p), axis=[1, 2])",
                 "tf.reduce_sum(tf.square(cov_c - cov_p), axis=[1, 2])"),
        Mutation("only the last pair of stages", "per_example += (", "per_example = ("),
    ),
)

TASKS = [CONDITIONING_AUGMENTATION, JOINT_STAGE_LOSS, COLOUR_CONSISTENCY]

if __name__ == "__main__":
    main(TASKS, chapter=2, tasks_file=__file__)
