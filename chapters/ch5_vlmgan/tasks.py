"""Chapter 5 assignments: VLMGAN's matching scores, the text–visual loss L_VLM, the visual–visual loss L_VVM
and the plug-in that adds them to a chapter-3/4 generator loss — with the grader's checks and the typical
mistakes it must catch.

Every expected value is computed here from the equations of the README (§2, §4) and the model's docstrings
(NumPy in float64, and central differences of it for gradients), never by calling the reference code, so
grading the reference in ``make test`` also catches a bug planted in the reference. Kept out of student
copies.

    make assignment CHAPTER=5 OUT=hw5 [TASKS=matching_scores,vvm_loss]
    make grade CHAPTER=5 STUDENT=hw5
"""

from __future__ import annotations

import types

import numpy as np

from t2igan.assignments import Check, CheckFailed, Mutation, Task, assert_close, assert_shape, numerical_gradient
from t2igan.assignments.cli import main

MODULE = "chapters.ch5_vlmgan.model"
HIDDEN = ("tests/test_chapter05_model.py",)
UNKNOWN = -1  # t2igan.layers.UNKNOWN_CLASS: an example of unknown class is of its own class only


# ------------------------------------------------------------------ the equations in NumPy (float64)
def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _logsumexp(x, axis):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def _cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _local_pair(v, e, gamma1, gamma2, form):
    """S_local of one image's regions v (R, D) and one caption's *valid* words e (T_i, D), README §2."""
    if form == "walkthrough":
        alpha = _softmax(gamma1 * (_unit(v) @ _unit(e).T), axis=0)  # (R, T_i): over the regions
    else:  # chapter 3's DAMSM attention: dot products normalised over the words first, then over the regions
        alpha = _softmax(gamma1 * _softmax(v @ e.T, axis=1), axis=0)
    context = alpha.T @ v  # c_t = Σ_r α_{t,r} ϕ_r
    return _logsumexp(gamma2 * _cos(context, e), axis=0) / gamma2


def _local_numpy(regions, words, lengths, gamma1=4.0, gamma2=5.0, form="walkthrough"):
    """S_local[image j, caption i] (B_img, B_cap); regions (B, R, D) or (B, H, W, D)."""
    regions = regions.reshape(len(regions), -1, regions.shape[-1])
    return np.array([[_local_pair(v, e[:n], gamma1, gamma2, form) for e, n in zip(words, lengths)] for v in regions])


def _global_numpy(image_global, sentence):
    return np.array([[_cos(g, s) for s in sentence] for g in image_global])


def _contrastive_numpy(scores, class_ids, gamma3):
    """DAMSM's batch cross-entropy in both directions on γ3·S, same-class pairs (not the match) at −∞; an
    example of unknown class (−1) shares its class with nobody. Per example (B,)."""
    logits = gamma3 * np.asarray(scores, np.float64)
    if class_ids is not None:
        c = np.asarray(class_ids)
        same = (c[:, None] == c[None, :]) & (c[:, None] != UNKNOWN) & (c[None, :] != UNKNOWN)
        logits = np.where(same & ~np.eye(len(c), dtype=bool), -np.inf, logits)
    diagonal = np.diag(logits)
    return (_logsumexp(logits, 1) - diagonal) + (_logsumexp(logits, 0) - diagonal)


def _vlm_numpy(regions, image_global, logits, words, sentence, lengths, class_ids, gamma1, gamma2, gamma3,
               form="walkthrough"):
    local_matrix = _local_numpy(regions, words, lengths, gamma1, gamma2, form)
    global_matrix = _global_numpy(image_global, sentence)
    terms = {"local": _contrastive_numpy(local_matrix, class_ids, gamma3),
             "global": _contrastive_numpy(global_matrix, class_ids, gamma3),
             "general": np.log1p(np.exp(-np.asarray(logits, np.float64)))}  # −log σ(logit)
    scores = {"local": np.diag(local_matrix), "global": np.diag(global_matrix),
              "general": 1 / (1 + np.exp(-np.asarray(logits, np.float64)))}
    return terms["local"] + terms["global"] + terms["general"], terms, scores


def _vvm_numpy(fake_regions, fake_global, real_regions, real_global, fake_pooled, real_pooled, gamma1):
    """README §4: (1 − cos of the globals) + (1 − mean_r cos(ϕ_r(x), c_r)) + mean_d (pooled difference)²."""
    fake_regions = fake_regions.reshape(len(fake_regions), -1, fake_regions.shape[-1])
    real_regions = real_regions.reshape(len(real_regions), -1, real_regions.shape[-1])
    visual_global = 1.0 - _cos(fake_global, real_global)
    visual_local = np.zeros(len(fake_regions))
    for b, (real, fake) in enumerate(zip(real_regions, fake_regions)):
        alpha = _softmax(gamma1 * (_unit(real) @ _unit(fake).T), axis=1)  # each real region over the fake ones
        visual_local[b] = 1.0 - np.mean(_cos(real, alpha @ fake))
    visual_general = np.mean((fake_pooled - real_pooled) ** 2, axis=-1)
    return visual_global + visual_local + visual_general, {"global": visual_global, "local": visual_local,
                                                            "general": visual_general}


def _captions(batch, words, dim, lengths, seed):
    """Words (B, T, D) whose padded positions hold zeros (as a padded caption's do), and the word mask."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(batch, words, dim))
    mask = np.arange(words)[None, :] < np.asarray(lengths)[:, None]
    return values * mask[..., None], mask


def _float32(*arrays):
    import tensorflow as tf

    return [tf.constant(np.asarray(a), tf.float32) for a in arrays]


# ------------------------------------------------------------------ task 1: the matching scores
SCORE_GAMMAS = (3.0, 6.0)  # not the defaults 4 and 5: a hard-coded or swapped γ shows


def _score_case(seed=0):
    rng = np.random.default_rng(seed)
    regions = rng.normal(size=(3, 4, 6))
    lengths = np.array([5, 3, 2])
    words, mask = _captions(3, 5, 6, lengths, seed + 1)
    return regions, words, mask, lengths


def check_local_walkthrough(module):
    regions, words, mask, lengths = _score_case(0)
    matrix, matched = module.local_score(*_float32(regions, words), mask, *SCORE_GAMMAS, "walkthrough")
    expected = _local_numpy(regions, words, lengths, *SCORE_GAMMAS, "walkthrough")
    assert_close("S_local[image j, caption i] (walkthrough)", matrix, expected, 1e-4, 1e-6)
    assert_close("matched S_local (the diagonal)", matched, np.diag(expected), 1e-4, 1e-6)


def check_local_damsm(module):
    regions, words, mask, lengths = _score_case(2)
    matrix, _ = module.local_score(*_float32(regions, words), mask, *SCORE_GAMMAS, "damsm")
    assert_close("S_local (damsm form: chapter 3's word_attention)", matrix,
                 _local_numpy(regions, words, lengths, *SCORE_GAMMAS, "damsm"), 1e-4, 1e-6)
    try:
        module.local_score(*_float32(regions, words), mask, form="dot")
    except ValueError:
        return
    raise CheckFailed("local_score(..., form='dot') must raise ValueError (the forms are LOCAL_FORMS).")


def check_local_padding(module):
    """The padded words change nothing, whatever they hold."""
    regions, words, mask, lengths = _score_case(4)
    noisy = words + 10.0 * np.random.default_rng(5).normal(size=words.shape) * ~mask[..., None]
    expected = _local_numpy(regions, words, lengths, *SCORE_GAMMAS)
    matrix, _ = module.local_score(*_float32(regions, noisy), mask, *SCORE_GAMMAS)
    assert_close("S_local with large values in the padded words", matrix, expected, 1e-4, 1e-6)
    _, direct = module.local_score(*_float32(regions, noisy), mask, *SCORE_GAMMAS, pairwise=False)
    assert_close("S_local (pairwise=False) with large values in the padded words", direct, np.diag(expected), 1e-4,
                 1e-6)


def check_local_pairwise_and_maps(module):
    regions, words, mask, lengths = _score_case(6)
    expected = _local_numpy(regions, words, lengths, *SCORE_GAMMAS)
    result = module.local_score(*_float32(regions, words), mask, *SCORE_GAMMAS, pairwise=False)
    if not isinstance(result, (tuple, list)) or len(result) != 2 or result[0] is not None:
        raise CheckFailed("local_score(..., pairwise=False) must return (None, matched S_local (B,)).")
    assert_close("matched S_local with pairwise=False", result[1], np.diag(expected), 1e-4, 1e-6)
    maps = regions.reshape(3, 2, 2, 6)  # a (B, H, W, D) region map: R = H·W regions
    matrix, _ = module.local_score(*_float32(maps, words), mask, *SCORE_GAMMAS)
    assert_close("S_local of a (B, H, W, D) region map", matrix, expected, 1e-4, 1e-6)


def check_local_gradients(module):
    """∂ Σ U ⊙ S_local w.r.t. the regions (padded words exact zeros) and the words, against central
    differences of the float64 equation."""
    import tensorflow as tf

    regions, words, mask, lengths = _score_case(8)
    upstream = np.random.default_rng(9).normal(size=(3, 3))
    variable = tf.Variable(regions, dtype=tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(module.local_score(variable, *_float32(words), mask, *SCORE_GAMMAS)[0] * upstream)
    got = tape.gradient(total, variable)
    want = numerical_gradient(lambda r: np.sum(_local_numpy(r, words, lengths, *SCORE_GAMMAS) * upstream), regions)
    assert_close("∂S_local/∂regions (zero padded words)", got, want, 1e-3, 1e-5)
    padded = words + np.random.default_rng(10).normal(size=words.shape) * ~mask[..., None]
    variable = tf.Variable(padded, dtype=tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(module.local_score(*_float32(regions), variable, mask, *SCORE_GAMMAS)[0] * upstream)
    got = tape.gradient(total, variable)
    want = numerical_gradient(lambda w: np.sum(_local_numpy(regions, w, lengths, *SCORE_GAMMAS) * upstream), padded)
    assert_close("∂S_local/∂words (zero for the padded words)", got, want, 1e-3, 1e-5)


def _global_case(seed=11):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 5)), rng.normal(size=(3, 5))


def check_global_score(module):
    image_global, sentence = _global_case()
    expected = _global_numpy(image_global, sentence)
    matrix, matched = module.global_score(*_float32(image_global, sentence))
    assert_close("S_global[image j, caption i] = cos(ϕ̄_j, φ̄_i)", matrix, expected, 1e-5, 1e-7)
    assert_close("matched S_global (the diagonal)", matched, np.diag(expected), 1e-5, 1e-7)
    result = module.global_score(*_float32(image_global, sentence), pairwise=False)
    if result[0] is not None:
        raise CheckFailed("global_score(..., pairwise=False) must return (None, matched S_global (B,)).")
    assert_close("matched S_global with pairwise=False", result[1], np.diag(expected), 1e-5, 1e-7)


def check_scores_tf_function(module):
    import tensorflow as tf

    regions, words, mask, lengths = _score_case(12)
    image_global, sentence = _global_case(13)
    compiled = tf.function(lambda r, w, m, g, s: (module.local_score(r, w, m, *SCORE_GAMMAS)[0],
                                                  module.global_score(g, s)[0]))
    local, global_ = compiled(*_float32(regions, words), tf.constant(mask), *_float32(image_global, sentence))
    assert_close("S_local under tf.function", local, _local_numpy(regions, words, lengths, *SCORE_GAMMAS), 1e-4, 1e-6)
    assert_close("S_global under tf.function", global_, _global_numpy(image_global, sentence), 1e-5, 1e-7)


MATCHING_SCORES = Task(
    name="matching_scores",
    title="VLMGAN's local and global matching scores",
    module=MODULE,
    week="1-week",
    stubs={
        "local_pairs": """regions (…, R, D), words (…, T, D), word_mask (…, T) bool, with broadcastable leading dimensions.
form "walkthrough": s(r, t) = cos(ϕ_r, φ_t) as a (…, R, T) matrix (normalize() both, then one matmul);
α = softmax of γ1·s over the regions (axis −2); context c_t = Σ_r α_{t,r} ϕ_r (…, T, D), of the regions
as given (not normalised).
form "damsm": c_t = word_attention(words, regions, lengths, gamma1)[0] (chapter 3), lengths = the number
of valid words (sum of word_mask). Any other form: raise ValueError naming LOCAL_FORMS.
Then R_t = cosine(c_t, φ_t) (…, T) and return S_local = (1/γ2)·log Σ_{valid t} exp(γ2·R_t) (…): padded
words must not count (tf.where with NEGATIVE_INFINITY, then tf.reduce_logsumexp over the words).""",
        "local_score": """Flatten the regions (flatten_regions), cast the words to float32 and word_mask to bool.
pairwise=False: return (None, local_pairs(...) of image i with caption i) (B,). Otherwise pair every image with
every caption by broadcasting: regions (B, 1, R, D) against words and mask (1, B, …), giving the matrix
S[image j, caption i] (B_img, B_cap), the image axis first; return (matrix, its diagonal).""",
        "global_score": """S_global = cos(ϕ̄, φ̄) with cosine (the PyTorch form), in float32. pairwise=False: return (None, the cosine
of image i with sentence i) (B,); otherwise (matrix (B_img, B_cap) with the image axis first, its diagonal).""",
    },
    checks=(
        Check("S_local (walkthrough form) matrix and diagonal", 4, check_local_walkthrough,
              "cosine similarities of every region with every word, a softmax over the regions (γ1), the "
              "context of the unnormalised regions, then the γ2 LogSumExp over the real words divided by γ2."),
        Check("S_local (damsm form) and an unknown form refused", 1, check_local_damsm,
              "form 'damsm' uses chapter 3's word_attention with the caption lengths; anything else is a ValueError."),
        Check("padded words change nothing", 2, check_local_padding,
              "mask the padded words out of the LogSumExp (−∞ before the reduction), not after it."),
        Check("pairwise=False and (B, H, W, D) region maps", 1, check_local_pairwise_and_maps,
              "flatten the regions first; pairwise=False scores image i with caption i only."),
        Check("∂S_local w.r.t. the regions and the words", 2, check_local_gradients,
              "no stop_gradient and no NumPy inside; the gradient must stay finite when padded words are zeros."),
        Check("S_global = cos(ϕ̄, φ̄), image axis first", 2, check_global_score,
              "a cosine, not a dot product; row j is image j, column i caption i."),
        Check("both scores under tf.function", 1, check_scores_tf_function,
              "no Python-side state or NumPy conversion inside the score functions."),
    ),
    mutations=(
        Mutation("regions not normalised in s(r, t)", "tf.matmul(normalize(regions), normalize(words), transpose_b=True)",
                 "tf.matmul(regions, normalize(words), transpose_b=True)"),
        Mutation("softmax over the words", "axis=-2)  # over the regions", "axis=-1)  # over the regions"),
        Mutation("γ2 instead of γ1 in the attention", "tf.nn.softmax(gamma1 * similarity", "tf.nn.softmax(gamma2 * similarity"),
        Mutation("no 1/γ2 after the LogSumExp", "axis=-1) / gamma2", "axis=-1)"),
        Mutation("padded words counted", "tf.where(word_mask, gamma2 * relevance, NEGATIVE_INFINITY)", "gamma2 * relevance"),
        Mutation("context of the normalised regions", "tf.matmul(attention, regions, transpose_a=True)",
                 "tf.matmul(attention, normalize(regions), transpose_a=True)"),
        Mutation("damsm form without the caption lengths", "tf.reduce_sum(tf.cast(word_mask, tf.int32), -1)",
                 "tf.reduce_sum(tf.ones_like(word_mask, tf.int32), -1)"),
        Mutation("matrix with the caption axis first", "local_pairs(regions[:, None], words[None], word_mask[None],",
                 "local_pairs(regions[None], words[:, None], word_mask[:, None],"),
        Mutation("S_global as a dot product", "matrix = cosine(image_global[:, None], sentence[None])",
                 "matrix = tf.reduce_sum(image_global[:, None] * sentence[None], -1)"),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 2: L_VLM
GAMMAS = (3.0, 6.0, 7.0)  # γ1, γ2, γ3, not the defaults


def _matrices(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (6, 6)), rng.uniform(-1, 1, (6, 6))


def check_contrastive_distinct(module):
    local_matrix, global_matrix = _matrices(20)
    for class_ids in (None, np.array([0, 1, 2, 3, 4, 5])):
        label = "no class ids" if class_ids is None else "every class different"
        result = module.contrastive_losses(*_float32(local_matrix, global_matrix),
                                           None if class_ids is None else np.asarray(class_ids, np.int32), GAMMAS[2])
        assert_close(f"L_local ({label})", result[0], _contrastive_numpy(local_matrix, class_ids, GAMMAS[2]), 1e-4, 1e-6)
        assert_close(f"L_global ({label})", result[1], _contrastive_numpy(global_matrix, class_ids, GAMMAS[2]), 1e-4,
                     1e-6)


def check_contrastive_classes(module):
    """Pairs of one known class are no negatives; −1 (unknown) is a class of its own."""
    local_matrix, global_matrix = _matrices(21)
    for class_ids in (np.array([0, 1, 0, UNKNOWN, UNKNOWN, 1]), np.array([UNKNOWN] * 6)):
        result = module.contrastive_losses(*_float32(local_matrix, global_matrix), np.asarray(class_ids, np.int32),
                                           GAMMAS[2])
        assert_close(f"L_local with class ids {class_ids.tolist()}", result[0],
                     _contrastive_numpy(local_matrix, class_ids, GAMMAS[2]), 1e-4, 1e-6)
        assert_close(f"L_global with class ids {class_ids.tolist()}", result[1],
                     _contrastive_numpy(global_matrix, class_ids, GAMMAS[2]), 1e-4, 1e-6)


def _vlm_case(seed):
    rng = np.random.default_rng(seed)
    regions, image_global, sentence = rng.normal(size=(4, 4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    lengths = np.array([5, 2, 4, 3])
    words, mask = _captions(4, 5, 5, lengths, seed + 1)
    logits = rng.normal(size=4) * 2
    return regions, image_global, logits, words, sentence, mask, lengths


VLM_CLASSES = np.array([2, UNKNOWN, 2, UNKNOWN])


def check_vlm_value(module):
    regions, image_global, logits, words, sentence, mask, lengths = _vlm_case(22)
    for form in ("walkthrough", "damsm"):
        total, terms, scores = module.vlm_loss(*_float32(regions, image_global, logits, words, sentence), mask,
                                               np.asarray(VLM_CLASSES, np.int32), *GAMMAS, local_form=form)
        want_total, want_terms, want_scores = _vlm_numpy(regions, image_global, logits, words, sentence, lengths,
                                                         VLM_CLASSES, *GAMMAS, form)
        for key in ("local", "global", "general"):
            assert_close(f"L_{key} ({form} form)", terms[key], want_terms[key], 1e-4, 1e-6)
        assert_close(f"L_VLM = L_local + L_global + L_general ({form} form)", total, want_total, 1e-4, 1e-6)


def check_vlm_scores(module):
    regions, image_global, logits, words, sentence, mask, lengths = _vlm_case(23)
    _, _, scores = module.vlm_loss(*_float32(regions, image_global, logits, words, sentence), mask,
                                   np.asarray(VLM_CLASSES, np.int32), *GAMMAS)
    _, _, want = _vlm_numpy(regions, image_global, logits, words, sentence, lengths, VLM_CLASSES, *GAMMAS)
    if not isinstance(scores, dict) or set(scores) != {"local", "global", "general"}:
        raise CheckFailed("vlm_loss must return the matched scores as a dict with keys local, global, general.")
    for key, name in (("local", "S_local(x̂_i, T_i)"), ("global", "S_global(x̂_i, T_i)"), ("general", "σ(logit_i)")):
        assert_close(f"matched score {name}", scores[key], want[key], 1e-4, 1e-6)


def check_vlm_gradients(module):
    """∂ Σ c_b·L_VLM,b w.r.t. the generated regions, the global feature and the MSB logit, against central
    differences of the float64 equation."""
    import tensorflow as tf

    regions, image_global, logits, words, sentence, mask, lengths = _vlm_case(24)
    weights = np.random.default_rng(25).uniform(0.5, 1.5, 4)
    variables = [tf.Variable(x, dtype=tf.float32) for x in (regions, image_global, logits)]
    with tf.GradientTape() as tape:
        total, _, _ = module.vlm_loss(*variables, *_float32(words, sentence), mask, np.asarray(VLM_CLASSES, np.int32),
                                      *GAMMAS)
        loss = tf.reduce_sum(total * weights)
    got = tape.gradient(loss, variables)
    inputs = [regions, image_global, logits]
    for k, name in enumerate(("regions", "the global feature ϕ̄", "the MSB logit")):
        def function(value, k=k):
            arguments = list(inputs)
            arguments[k] = value
            return np.sum(_vlm_numpy(*arguments, words, sentence, lengths, VLM_CLASSES, *GAMMAS)[0] * weights)

        assert_close(f"∂L_VLM/∂({name})", got[k], numerical_gradient(function, inputs[k]), 1e-3, 1e-5)


VLM_LOSS = Task(
    name="vlm_loss",
    title="VLMGAN's text–visual matching loss L_VLM",
    module=MODULE,
    week="1-week",
    stubs={
        "contrastive_losses": """DAMSM's batch matching loss on each matrix (B_img, B_cap): logits γ3·S, the match of image i is caption i,
every other caption (image) of the batch a negative except those of the same class, which are masked out; an
example of unknown class (−1) is of its own class only (t2igan.layers.same_class; chapter 3's
matching_cross_entropy masks and returns both directions). Per example: image → caption cross-entropy plus
caption → image cross-entropy. Return (L_local, L_global), each (B,).""",
        "vlm_loss": """Score the generated images against the batch captions: local_score(...) (gamma1, gamma2, local_form)
and global_score(...), each (matrix, matched). L_local, L_global = contrastive_losses(..., class_ids,
gamma3); L_general = −log σ(general_logit) = softplus(−logit), in float32. Return
(L_VLM = L_local + L_global + L_general, {"local": L_local, "global": L_global, "general": L_general},
{"local": matched S_local, "global": matched S_global, "general": σ(general_logit)}), every value (B,).""",
    },
    checks=(
        Check("L_local and L_global, both directions, on γ3·S", 3, check_contrastive_distinct,
              "a softmax cross-entropy over each row (image → captions) plus one over each column "
              "(caption → images), on the logits γ3·S."),
        Check("same-class pairs masked; class −1 is its own class", 3, check_contrastive_classes,
              "other pairs of one known class are no negatives (−∞), the own pair stays; two examples of unknown "
              "class (−1) are negatives of each other."),
        Check("L_VLM and its three terms (both local forms)", 3, check_vlm_value,
              "pass class_ids, gamma3 and local_form on; L_general = −log σ(logit) is softplus(−logit)."),
        Check("the matched scores", 1, check_vlm_scores,
              "the diagonals of the two matrices and σ(logit), in a dict keyed local, global, general."),
        Check("∂L_VLM w.r.t. the generated features and the logit", 2, check_vlm_gradients,
              "the generator learns through all three terms: no stop_gradient and no NumPy inside."),
    ),
    mutations=(
        Mutation("caption → image direction dropped (local)", "return local0 + local1,", "return local0 + local0,"),
        Mutation("image → caption direction dropped (global)", "global0 + global1", "global1 + global1"),
        Mutation("no γ3 on S_global", "matching_cross_entropy(gamma3 * global_matrix, class_ids)",
                 "matching_cross_entropy(global_matrix, class_ids)"),
        Mutation("official DAMSM scale γ2·γ3 on S_local", "matching_cross_entropy(gamma3 * local_matrix, class_ids)",
                 "matching_cross_entropy(5.0 * gamma3 * local_matrix, class_ids)"),
        Mutation("same-class pairs not masked", "contrastive_losses(local_matrix, global_matrix, class_ids, gamma3)",
                 "contrastive_losses(local_matrix, global_matrix, None, gamma3)"),
        Mutation("L_general = −log(1 − S_general)", "tf.nn.softplus(-tf.cast(general_logit, tf.float32))",
                 "tf.nn.softplus(tf.cast(general_logit, tf.float32))"),
        Mutation("L_general left out of L_VLM", "return local_loss + global_loss + general,", "return local_loss + global_loss,"),
        Mutation("local form ignored", "local_score(regions, words, word_mask, gamma1, gamma2, local_form)",
                 "local_score(regions, words, word_mask, gamma1, gamma2)"),
        Mutation("general score as the raw logit", '"general": tf.sigmoid(general_logit)}', '"general": general_logit}'),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 3: L_VVM
def _vvm_case(seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 5)), rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 5)),
            rng.normal(size=(3, 6)), rng.normal(size=(3, 6)))


VVM_GAMMA1 = 3.0


def _vvm_terms(module, seed):
    case = _vvm_case(seed)
    result = module.vvm_loss(*_float32(*case), VVM_GAMMA1)
    if not isinstance(result, (tuple, list)) or len(result) != 2 or not isinstance(result[1], dict):
        raise CheckFailed("vvm_loss must return (L_VVM, {'global': L_VG, 'local': L_VL, 'general': L_VGEN}).")
    missing = {"global", "local", "general"} - set(result[1])
    if missing:
        raise CheckFailed(f"the components dict of vvm_loss lacks {', '.join(sorted(missing))}.")
    return case, result, _vvm_numpy(*case, VVM_GAMMA1)


def check_vvm_global(module):
    _, (_, terms), (_, want) = _vvm_terms(module, 30)
    assert_close("L_VG = 1 − cos(ϕ̄(x̂), ϕ̄(x))", terms["global"], want["global"], 1e-5, 1e-7)


def check_vvm_local(module):
    _, (_, terms), (_, want) = _vvm_terms(module, 31)
    assert_close("L_VL = 1 − mean_r cos(ϕ_r(x), c_r)", terms["local"], want["local"], 1e-4, 1e-6)


def check_vvm_general(module):
    _, (_, terms), (_, want) = _vvm_terms(module, 32)
    assert_close("L_VGEN = mean_d (pool(x̂, T) − pool(x, T))²", terms["general"], want["general"], 1e-5, 1e-7)


def check_vvm_total_and_maps(module):
    case, (total, _), (want, _) = _vvm_terms(module, 33)
    assert_shape("L_VVM", total, (3,))
    assert_close("L_VVM = L_VG + L_VL + L_VGEN", total, want, 1e-4, 1e-6)
    maps = list(case)
    maps[0], maps[2] = case[0].reshape(3, 2, 2, 5), case[2].reshape(3, 2, 2, 5)
    total, _ = module.vvm_loss(*_float32(*maps), VVM_GAMMA1)
    assert_close("L_VVM of (B, H, W, D) region maps", total, want, 1e-4, 1e-6)


def check_vvm_real_side_stopped(module):
    """Only x̂ is trained: no gradient reaches the real image's features."""
    import tensorflow as tf

    case = _vvm_case(34)
    variables = [tf.Variable(x, dtype=tf.float32) for x in case]
    with tf.GradientTape() as tape:
        total, _ = module.vvm_loss(*variables, VVM_GAMMA1)
        loss = tf.reduce_sum(total)
    gradients = tape.gradient(loss, variables)
    for k, name in ((2, "real regions ϕ_r(x)"), (3, "real global ϕ̄(x)"), (5, "real pooled MSB features")):
        if gradients[k] is not None and np.any(np.abs(gradients[k].numpy()) > 0):
            raise CheckFailed(f"a gradient reaches the {name} (max |∂L/∂·| {np.abs(gradients[k].numpy()).max():.2e}); "
                              f"the real side must be a constant target (stop_gradient).")


def check_vvm_fake_gradients(module):
    """∂ Σ c_b·L_VVM,b w.r.t. the generated image's features, against central differences."""
    import tensorflow as tf

    case = _vvm_case(35)
    weights = np.random.default_rng(36).uniform(0.5, 1.5, 3)
    variables = [tf.Variable(x, dtype=tf.float32) for x in case]
    with tf.GradientTape() as tape:
        total, _ = module.vvm_loss(*variables, VVM_GAMMA1)
        loss = tf.reduce_sum(total * weights)
    gradients = tape.gradient(loss, variables)
    for k, name in ((0, "generated regions ϕ_k(x̂)"), (1, "generated global ϕ̄(x̂)"), (4, "generated pooled features")):
        def function(value, k=k):
            arguments = list(case)
            arguments[k] = value
            return np.sum(_vvm_numpy(*arguments, VVM_GAMMA1)[0] * weights)

        assert_close(f"∂L_VVM/∂({name})", gradients[k], numerical_gradient(function, case[k]), 1e-3, 1e-5)


VVM_LOSS = Task(
    name="vvm_loss",
    title="VLMGAN's visual–visual matching loss L_VVM",
    module=MODULE,
    week="1-week",
    stubs={
        "vvm_loss": """Flatten both region sets (flatten_regions) and stop the gradient of every real-side input (regions, global
feature, pooled features): the real image is a constant target, only x̂ is trained. Everything in float32.
L_VG = 1 − cosine(ϕ̄(x̂), ϕ̄(x)).
L_VL: similarity (B, R_real, R_fake) of the normalised real and generated regions (normalize, one matmul);
attention = softmax over the generated regions (last axis) of γ1·similarity; c_r = attention · generated regions
(B, R_real, D); L_VL = 1 − mean over the real regions r of cosine(ϕ_r(x), c_r).
L_VGEN = mean over the feature axis of (fake_pooled − real_pooled)².
Return (L_VG + L_VL + L_VGEN, {"global": L_VG, "local": L_VL, "general": L_VGEN}), each (B,).""",
    },
    checks=(
        Check("L_VG = 1 − cos of the global features", 2, check_vvm_global,
              "one minus the cosine of the generated and the real global feature, per example."),
        Check("L_VL: real regions attend over the generated regions", 3, check_vvm_local,
              "each real region attends (softmax of γ1 × cosine, over the generated regions) to the generated "
              "regions; compare it with its context by cosine and average over the real regions."),
        Check("L_VGEN = mean squared difference of the pooled features", 1, check_vvm_general,
              "a mean over the feature axis, not a sum."),
        Check("L_VVM = sum of the three, (B, H, W, D) maps accepted", 1, check_vvm_total_and_maps,
              "flatten the region maps first; return the sum and the components dict."),
        Check("no gradient to the real image's features", 2, check_vvm_real_side_stopped,
              "wrap the real regions, the real global feature and the real pooled features in tf.stop_gradient."),
        Check("∂L_VVM w.r.t. the generated features", 2, check_vvm_fake_gradients,
              "the generated side must stay differentiable; check which side attends over which."),
    ),
    mutations=(
        Mutation("real regions not stopped", "tf.stop_gradient(flatten_regions(real_regions))", "flatten_regions(real_regions)"),
        Mutation("real global feature not stopped", "real_global = tf.stop_gradient(tf.cast(real_global, tf.float32))",
                 "real_global = tf.cast(real_global, tf.float32)"),
        Mutation("real pooled features not stopped", "tf.stop_gradient(tf.cast(real_pooled, tf.float32))",
                 "tf.cast(real_pooled, tf.float32)"),
        Mutation("softmax over the real regions", "tf.nn.softmax(gamma1 * similarity, axis=-1)",
                 "tf.nn.softmax(gamma1 * similarity, axis=-2)"),
        Mutation("regions not normalised in the similarity", "tf.matmul(normalize(real_regions), normalize(fake_regions),",
                 "tf.matmul(real_regions, fake_regions,"),
        Mutation("no γ1 in the attention", "tf.nn.softmax(gamma1 * similarity, axis=-1)", "tf.nn.softmax(similarity, axis=-1)"),
        Mutation("real and fake swapped in L_VL",
                 "    similarity = tf.matmul(normalize(real_regions), normalize(fake_regions), transpose_b=True)",
                 "    real_regions, fake_regions = fake_regions, real_regions\n"
                 "    similarity = tf.matmul(normalize(real_regions), normalize(fake_regions), transpose_b=True)"),
        Mutation("position-wise L_VL (no attention)", "cosine(real_regions, context)", "cosine(real_regions, fake_regions)"),
        Mutation("L_VGEN summed over the features", "tf.reduce_mean(tf.square(difference), axis=-1)",
                 "tf.reduce_sum(tf.square(difference), axis=-1)"),
        Mutation("L_VG = −cos", "visual_global = 1.0 - cosine(", "visual_global = -cosine("),
    ),
    hidden_files=HIDDEN,
)


# ------------------------------------------------------------------ task 4: the plug-in
class _TextEncoder:
    """Stands in for the VLM text encoder: words = tanh(E[id]), sentence = masked mean of the words + 0.1."""

    def __init__(self, vocabulary=9, dim=5, seed=40):
        import tensorflow as tf

        self.table = tf.Variable(np.random.default_rng(seed).normal(0, 0.8, (vocabulary, dim)), dtype=tf.float32)
        self.calls = []

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        ids, lengths = inputs
        self.calls.append(("text", training))
        words = tf.tanh(tf.gather(self.table, ids))
        valid = tf.cast(tf.sequence_mask(lengths, tf.shape(words)[1]), tf.float32)[..., None]
        return words, tf.reduce_sum(words * valid, 1) / tf.reduce_sum(valid, 1) + 0.1

    def numpy(self, ids, lengths):
        words = np.tanh(self.table.numpy().astype(np.float64)[ids])
        valid = (np.arange(ids.shape[1])[None, :] < lengths[:, None])[..., None]
        return words, (words * valid).sum(1) / valid.sum(1) + 0.1


class _ImageEncoder:
    """Stands in for the VLM image encoder, built for one input size (another size fails, as a real one's
    region count would): regions = tanh(flatten(x)·W) as a (B, 2, 2, D) map, global = flatten(x)·V."""

    def __init__(self, size, dim=5, seed=41):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        inputs = size * size * 3
        self.size, self.dim, self.input_size = size, dim, size
        self.w = tf.Variable(rng.normal(0, 1.5 / np.sqrt(inputs), (inputs, 4 * dim)), dtype=tf.float32)
        self.v = tf.Variable(rng.normal(0, 1.5 / np.sqrt(inputs), (inputs, dim)), dtype=tf.float32)
        self.calls = []

    def __call__(self, images, training=False):
        import tensorflow as tf

        self.calls.append(("image", training, tuple(images.shape[1:3])))
        if tuple(images.shape[1:3]) != (self.size, self.size):
            raise CheckFailed(f"the VLM image encoder (built for {self.size}×{self.size}) received images of "
                              f"{images.shape[1]}×{images.shape[2]}.")
        flat = tf.reshape(tf.cast(images, tf.float32), [tf.shape(images)[0], -1])
        return tf.reshape(tf.tanh(flat @ self.w), [-1, 2, 2, self.dim]), flat @ self.v

    def numpy(self, images):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return np.tanh(flat @ self.w.numpy().astype(np.float64)).reshape(-1, 4, self.dim), flat @ self.v.numpy()


class _Msb:
    """Stands in for the MSB: logit = Σ_d a·tanh(r̄ + ϕ̄)·(w̄ + φ̄), pooled = tanh(r̄ + ϕ̄ + w̄), with r̄ the mean
    region and w̄ the masked mean word."""

    def __init__(self, dim=5, seed=42):
        self.a = np.random.default_rng(seed).normal(0, 1.0, dim)
        self.calls = []

    def logits(self, inputs, training=False):
        import tensorflow as tf

        regions, image_global, words, sentence, mask = inputs
        self.calls.append(("msb", training))
        regions = tf.reshape(tf.cast(regions, tf.float32), [tf.shape(regions)[0], -1, regions.shape[-1]])
        valid = tf.cast(mask, tf.float32)[..., None]
        mean_word = tf.reduce_sum(words * valid, 1) / tf.reduce_sum(valid, 1)
        image = tf.tanh(tf.reduce_mean(regions, 1) + image_global)
        return (tf.reduce_sum(self.a.astype(np.float32) * image * (mean_word + sentence), -1),
                tf.tanh(tf.reduce_mean(regions, 1) + image_global + mean_word))

    def numpy(self, regions, image_global, words, sentence, mask):
        valid = mask[..., None]
        mean_word = (words * valid).sum(1) / valid.sum(1)
        image = np.tanh(regions.mean(1) + image_global)
        return (self.a * image * (mean_word + sentence)).sum(-1), np.tanh(regions.mean(1) + image_global + mean_word)


PLUGIN_GAMMAS = (3.0, 6.0, 7.0)
PLUGIN_CLASSES = np.array([1, 1, UNKNOWN, 0])


def _plugin_case(module, fake_size, real_size, vlm_size, form="walkthrough", vlm_weight=2.0, vvm_weight=0.5, seed=43):
    """(self stand-in, fake (B, s, s, 3), batch): λ2 = 2 and λ1 = ½ so that a swap shows."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    lengths = np.array([4, 2, 3, 4], np.int32)
    ids = rng.integers(1, 9, (4, 4)).astype(np.int32)
    ids[np.arange(4)[None, :] >= lengths[:, None]] = 0
    batch = {"image": tf.constant(rng.uniform(-1, 1, (4, real_size, real_size, 3)), tf.float32),
             "caption_ids": tf.constant(ids), "caption_length": tf.constant(lengths),
             "class_id": tf.constant(PLUGIN_CLASSES, tf.int32)}
    fake = rng.uniform(-1, 1, (4, fake_size, fake_size, 3))
    owner = types.SimpleNamespace(vvm_weight=vvm_weight, vlm_weight=vlm_weight, vlm_gammas=PLUGIN_GAMMAS,
                                  local_form=form, vlm_image_size=vlm_size, vlm_text_encoder=_TextEncoder(),
                                  vlm_image_encoder=_ImageEncoder(vlm_size or fake_size), msb=_Msb())
    owner.to_vlm_size = types.MethodType(module.VlmTerms.to_vlm_size, owner)
    return owner, fake, batch


def _plugin_expected(owner, fake_images, real_images, batch):
    """λ2·L_VLM + λ1·L_VVM and the logs, from the images the VLM must see (NumPy from there on)."""
    ids, lengths = batch["caption_ids"].numpy(), batch["caption_length"].numpy()
    mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    words, sentence = owner.vlm_text_encoder.numpy(ids, lengths)
    fake_regions, fake_global = owner.vlm_image_encoder.numpy(fake_images)
    real_regions, real_global = owner.vlm_image_encoder.numpy(real_images)
    fake_logit, fake_pooled = owner.msb.numpy(fake_regions, fake_global, words, sentence, mask)
    real_logit, real_pooled = owner.msb.numpy(real_regions, real_global, words, sentence, mask)
    gamma1, gamma2, _ = PLUGIN_GAMMAS
    vlm, vlm_terms, fake_scores = _vlm_numpy(fake_regions, fake_global, fake_logit, words, sentence, lengths,
                                             PLUGIN_CLASSES, *PLUGIN_GAMMAS, owner.local_form)
    vvm, vvm_terms = _vvm_numpy(fake_regions, fake_global, real_regions, real_global, fake_pooled, real_pooled, gamma1)
    real_local = np.diag(_local_numpy(real_regions, words, lengths, gamma1, gamma2, owner.local_form))
    real_scores = {"local": real_local, "global": _cos(real_global, sentence), "general": 1 / (1 + np.exp(-real_logit))}
    logs = {"vlm": vlm, "vvm": vvm, **{f"vlm_{k}": v for k, v in vlm_terms.items()},
            **{f"vvm_{k}": v for k, v in vvm_terms.items()}, **{f"scores_{k}_fake": v for k, v in fake_scores.items()},
            **{f"scores_{k}_real": v for k, v in real_scores.items()}}
    return owner.vlm_weight * vlm + owner.vvm_weight * vvm, logs


def _compare_plugin(module, owner, fake, batch, real_images, fake_images, label):
    import tensorflow as tf

    result = module.VlmTerms.vlm_terms(owner, tf.constant(fake, tf.float32), batch)
    if not isinstance(result, (tuple, list)) or len(result) != 2 or not isinstance(result[1], dict):
        raise CheckFailed("vlm_terms must return (λ2·L_VLM + λ1·L_VVM (B,), logs dict).")
    extra, logs = result
    want_extra, want_logs = _plugin_expected(owner, fake_images, real_images, batch)
    if set(logs) != set(module.VLM_GROUPS):
        raise CheckFailed(f"the logs of vlm_terms have keys {sorted(logs)}, expected the keys of VLM_GROUPS "
                          f"{sorted(module.VLM_GROUPS)}.")
    for key in sorted(want_logs):
        assert_close(f"logs[{key!r}] ({label})", logs[key], want_logs[key], 1e-4, 1e-6)
    assert_close(f"λ2·L_VLM + λ1·L_VVM ({label})", extra, want_extra, 1e-4, 1e-6)


def check_plugin_value(module):
    """Same resolution everywhere; two classes repeat, one is unknown; padded captions."""
    owner, fake, batch = _plugin_case(module, 4, 4, None)
    _compare_plugin(module, owner, fake, batch, batch["image"].numpy(), fake, "λ2 = 2, λ1 = ½")


def check_plugin_resizing(module):
    """The real image first at the generated resolution (bilinear, antialiased), then both at the VLM's size."""
    import tensorflow as tf

    owner, fake, batch = _plugin_case(module, 4, 8, None, seed=44)
    real = tf.image.resize(batch["image"], [4, 4], "bilinear", antialias=True).numpy()
    _compare_plugin(module, owner, fake, batch, real, fake, "real 8×8 → 4×4 to match x̂")
    owner, fake, batch = _plugin_case(module, 4, 8, 8, form="damsm", seed=45)
    real = tf.image.resize(tf.image.resize(batch["image"], [4, 4], "bilinear", antialias=True), [8, 8], "bilinear")
    fake_in = tf.image.resize(tf.constant(fake, tf.float32), [8, 8], "bilinear").numpy()
    _compare_plugin(module, owner, fake, batch, real.numpy(), fake_in, "VLM input 8×8, damsm local form")


def check_plugin_inference_mode(module):
    import tensorflow as tf

    owner, fake, batch = _plugin_case(module, 4, 4, None, seed=46)
    module.VlmTerms.vlm_terms(owner, tf.constant(fake, tf.float32), batch)
    calls = owner.vlm_text_encoder.calls + owner.vlm_image_encoder.calls + owner.msb.calls
    kinds = sorted({call[0] for call in calls})
    if kinds != ["image", "msb", "text"]:
        raise CheckFailed(f"vlm_terms called only {kinds} of the VLM's text encoder, image encoder and MSB.")
    training = [call[0] for call in calls if call[1] is not False]
    if training:
        raise CheckFailed(f"the frozen VLM must run in inference mode (training=False); {', '.join(training)} "
                          f"ran with training={[call[1] for call in calls if call[1] is not False][0]!r}.")


def check_plugin_zero_weights(module):
    import tensorflow as tf

    owner, fake, batch = _plugin_case(module, 4, 4, None, vlm_weight=0.0, vvm_weight=0.0, seed=47)
    extra, logs = module.VlmTerms.vlm_terms(owner, tf.constant(fake, tf.float32), batch)
    calls = owner.vlm_text_encoder.calls + owner.vlm_image_encoder.calls + owner.msb.calls
    if calls or logs:
        raise CheckFailed("with λ1 = λ2 = 0 vlm_terms must return (zeros, {}) without running the VLM (the exact "
                          f"baseline); it ran {sorted({c[0] for c in calls})} and logged {sorted(logs)}.")
    assert_close("vlm_terms with λ1 = λ2 = 0", extra, np.zeros(4), 0, 0)


def check_plugin_gradients(module):
    """Σ c_b·(λ2·L_VLM + λ1·L_VVM)_b: its derivative along a random direction of x̂ against central
    differences of the NumPy pipeline; no gradient reaches the real image."""
    import tensorflow as tf

    owner, fake, batch = _plugin_case(module, 4, 4, None, seed=48)
    weights = np.random.default_rng(49).uniform(0.5, 1.5, 4)
    direction = np.random.default_rng(50).normal(size=fake.shape)
    fake_variable, real_variable = tf.Variable(fake, dtype=tf.float32), tf.Variable(batch["image"])
    with tf.GradientTape() as tape:
        extra, _ = module.VlmTerms.vlm_terms(owner, fake_variable, {**batch, "image": real_variable})
        loss = tf.reduce_sum(extra * weights)
    gradient_fake, gradient_real = tape.gradient(loss, [fake_variable, real_variable])
    if gradient_real is not None and np.any(np.abs(gradient_real.numpy()) > 0):
        raise CheckFailed("a gradient reaches the real image; the real side is a constant target.")
    if gradient_fake is None:
        raise CheckFailed("no gradient reaches the generated image x̂: the generator could not learn from the VLM.")
    real = batch["image"].numpy()

    def function(images):
        return np.sum(_plugin_expected(owner, images, real, batch)[0] * weights)

    step = 1e-4
    numeric = (function(fake + step * direction) - function(fake - step * direction)) / (2 * step)
    assert_close("directional derivative of the VLM terms w.r.t. x̂", np.sum(gradient_fake.numpy() * direction),
                 numeric, 1e-3, 1e-5)


VLM_PLUGIN = Task(
    name="vlm_plugin",
    title="The VLM plug-in: λ2·L_VLM + λ1·L_VVM on the generated image",
    module=MODULE,
    week="2-week",
    stubs={
        "VlmTerms.vlm_terms": """λ1 = self.vvm_weight, λ2 = self.vlm_weight. When both are 0: return (zeros (B,), {}) without
running the VLM. Otherwise, with (γ1, γ2, γ3) = self.vlm_gammas: cast fake and batch["image"] to float32;
when their heights differ, resize the real image to the generated one's (height, width), bilinear with
antialias=True (chapter 2's antialiased_resize(images, (height, width)) gives it in a form XLA compiles).
Text: words, sentence = self.vlm_text_encoder([caption_ids, caption_length], training=False), both
gradient-stopped; word_mask = tf.sequence_mask(caption_length, T).
Images: self.vlm_image_encoder(self.to_vlm_size(·), training=False) of the fake and of the real images
→ (regions, global); flatten the regions; the real features float32 and gradient-stopped.
(logit, pooled) = self.msb.logits([regions, global, words, sentence, word_mask], training=False) for
the fake pair, and gradient-stopped for the real pair.
L_VLM, its terms and the fake scores: vlm_loss(..., batch.get("class_id"), γ1, γ2, γ3, self.local_form);
L_VVM and its terms: vvm_loss(..., γ1). Real scores: the matched scores of local_score(...,
self.local_form, pairwise=False) and global_score(..., pairwise=False), and σ(real logit).
Return (λ2·L_VLM + λ1·L_VVM (B,), logs) with the keys of VLM_GROUPS: "vlm", "vvm", "vlm_<term>",
"vvm_<term>", "scores_<level>_fake", "scores_<level>_real".""",
    },
    checks=(
        Check("λ2·L_VLM + λ1·L_VVM and every log", 4, check_plugin_value,
              "λ2 (vlm_weight) scales L_VLM, λ1 (vvm_weight) L_VVM; the real pair's MSB features are the L_VGEN target; "
              "pass the class ids and the word mask on."),
        Check("resizing: real → x̂'s resolution, both → the VLM's input", 2, check_plugin_resizing,
              "resize the real image to the generated size first (antialias), then both with self.to_vlm_size."),
        Check("the frozen VLM runs with training=False", 1, check_plugin_inference_mode,
              "every call of the text encoder, the image encoder and msb.logits with training=False."),
        Check("λ1 = λ2 = 0: zeros, no logs, no VLM pass", 1, check_plugin_zero_weights,
              "return early before any VLM call: the baseline must stay exactly the baseline."),
        Check("the gradient reaches x̂ (and not the real image)", 2, check_plugin_gradients,
              "stop the gradient on the real side only; the generated image's features must stay differentiable."),
    ),
    mutations=(
        Mutation("λ1 and λ2 swapped", "return self.vlm_weight * vlm + self.vvm_weight * vvm, logs",
                 "return self.vvm_weight * vlm + self.vlm_weight * vvm, logs"),
        Mutation("no zero-weight shortcut", "        if not (self.vvm_weight or self.vlm_weight):\n"
                 "            return tf.zeros([tf.shape(fake)[0]], tf.float32), {}\n", ""),
        Mutation("real image not brought to x̂'s resolution",
                 "            real = antialiased_resize(real, fake.shape[1:3])  # bilinear, antialiased; XLA compiles it\n",
                 "            pass\n"),
        Mutation("x̂ not resized for the VLM", "self.vlm_image_encoder(self.to_vlm_size(fake), training=False)",
                 "self.vlm_image_encoder(fake, training=False)"),
        Mutation("the VLM image encoder in training mode", "self.vlm_image_encoder(self.to_vlm_size(fake), training=False)",
                 "self.vlm_image_encoder(self.to_vlm_size(fake), training=True)"),
        Mutation("MSB target from the generated features", "[real_regions, real_global, words, sentence, word_mask]",
                 "[fake_regions, fake_global, words, sentence, word_mask]"),
        Mutation("class ids not passed", 'batch.get("class_id"), gamma1', "None, gamma1"),
        Mutation("word mask ignored", "word_mask = tf.sequence_mask(lengths, tf.shape(words)[1])",
                 "word_mask = tf.ones(tf.shape(words)[:2], tf.bool)"),
        Mutation("last real word masked as padding", "word_mask = tf.sequence_mask(lengths, tf.shape(words)[1])",
                 "word_mask = tf.sequence_mask(lengths - 1, tf.shape(words)[1])"),
        Mutation("generated regions gradient-stopped", "        fake_regions = flatten_regions(fake_regions)\n",
                 "        fake_regions = tf.stop_gradient(flatten_regions(fake_regions))\n"),
        Mutation("real and fake swapped in L_VVM",
                 "vvm_loss(fake_regions, fake_global, real_regions, real_global, fake_pooled, real_pooled,",
                 "vvm_loss(real_regions, real_global, fake_regions, fake_global, real_pooled, fake_pooled,"),
    ),
    hidden_files=HIDDEN,
    time_limit_s=120.0,
)

TASKS = [MATCHING_SCORES, VLM_LOSS, VVM_LOSS, VLM_PLUGIN]

if __name__ == "__main__":
    main(TASKS, chapter=5, tasks_file=__file__)
