"""R-precision: both protocols on hand-made features, DM-GAN's against a transcription of its loop."""

import numpy as np
import pytest

from t2igan.metrics.r_precision import r_precision


def test_r_precision_counts_images_whose_own_caption_ranks_first():
    # 4 real images with 2 captions each; caption features point along the owner's axis.
    owners = np.repeat(np.arange(4), 2)
    sentences = np.eye(4)[owners] + 0.01 * np.arange(8)[:, None]
    # Generated images 0–2 look like their owner; image 3 looks like owner 0 (a miss).
    image_owner = np.array([0, 1, 2, 3])
    images = np.eye(4)[[0, 1, 2, 0]]
    own = np.array([0, 2, 4, 6])
    # 7 candidates: the own caption and all 6 captions of the other images (every draw is the same set).
    mean, std, hits = r_precision(images, sentences, own, owners, image_owner, candidates=7, folds=2, seed=0,
                                  protocol="other-images")
    np.testing.assert_array_equal(hits, [1, 1, 1, 0])
    assert mean == pytest.approx(0.75) and std == pytest.approx(0.25)  # folds [1, 1] and [1, 0]


def test_r_precision_needs_enough_mismatched_captions():
    with pytest.raises(ValueError, match="mismatched captions"):
        r_precision(np.ones((1, 2)), np.ones((3, 2)), np.array([0]), np.array([0, 1, 1]), np.array([0]), candidates=4,
                    protocol="other-images")


def dm_gan_transcription(image_features, caption_features, image_owner, own_caption_index, class_id, seed):
    """DM-GAN's R-precision as its code does it (``code/trainer.py`` sampling loop, ``code/datasets.py``
    ``get_mis_caption``), rewritten in NumPy: ``caption_features`` (K, 10, D) are every test image's 10
    sentence features, ``class_id`` (K,) the test images' classes. One RandomState plays numpy.random."""
    random = np.random.RandomState(seed)
    number_example, embeddings_num = caption_features.shape[:2]

    def get_mis_caption(cls_id):
        mis_match_captions_t = []
        while len(mis_match_captions_t) < 99:
            idx = random.randint(0, number_example)
            if cls_id == class_id[idx]:
                continue
            sent_ix = random.randint(0, embeddings_num)
            mis_match_captions_t.append(caption_features[idx, sent_ix])
        return np.stack(mis_match_captions_t)

    R = np.zeros(len(image_features))
    R_count = 0
    for i in range(len(image_features)):
        sent_emb = caption_features[image_owner[i], own_caption_index[i]]
        rnn_code = np.concatenate([sent_emb[None], get_mis_caption(class_id[image_owner[i]])], 0)
        cnn_code = image_features[i][None]
        scores = cnn_code @ rnn_code.T
        norm = np.linalg.norm(cnn_code, axis=1, keepdims=True) @ np.linalg.norm(rnn_code, axis=1, keepdims=True).T
        scores0 = scores / np.maximum(norm, 1e-8)
        if np.argmax(scores0) == 0:
            R[R_count] = 1
        R_count += 1
    size = len(R) // 10
    random.shuffle(R)
    folds = np.zeros(10)
    for i in range(10):
        folds[i] = np.average(R[i * size:(i + 1) * size - 1])
    return np.average(folds), np.std(folds)


def synthetic_test_split(seed=0, images=40, classes=4, generated=300, dimension=8):
    rng = np.random.default_rng(seed)
    class_id = np.repeat(np.arange(classes), images // classes)
    class_direction = rng.standard_normal((classes, dimension))
    own_direction = rng.standard_normal((images, dimension))
    captions = (class_direction[class_id][:, None] + 0.8 * own_direction[:, None]
                + 0.9 * rng.standard_normal((images, 10, dimension)))
    image_owner = rng.integers(0, images, generated)
    own_caption_index = rng.integers(0, 10, generated)
    image_features = (class_direction[class_id[image_owner]] + 0.8 * own_direction[image_owner]
                      + 0.9 * rng.standard_normal((generated, dimension)))
    return image_features, captions, image_owner, own_caption_index, class_id


def test_dm_gan_protocol_equals_a_transcription_of_dm_gans_loop():
    """Issue 18, must-show 2: mismatches from other classes, with replacement, shuffled folds of 2,999-of-3,000."""
    image_features, captions, image_owner, own_index, class_id = synthetic_test_split()
    flat = captions.reshape(-1, captions.shape[-1])
    caption_owner = np.repeat(np.arange(len(captions)), 10)
    mean, std, hits = r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner,
                                  seed=7, protocol="dm-gan", owner_class=class_id)
    expected_mean, expected_std = dm_gan_transcription(image_features, captions, image_owner, own_index, class_id, seed=7)
    assert (mean, std) == (pytest.approx(expected_mean, abs=1e-12), pytest.approx(expected_std, abs=1e-12))
    assert 0.2 < mean < 0.9 and std > 0  # neither trivial nor saturated
    # The other protocol draws from other images (same class included), so it finds more look-alike captions.
    other_mean, _, _ = r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner,
                                   seed=7, protocol="other-images")
    assert other_mean < mean


def test_without_classes_every_image_is_its_own_class():
    image_features, captions, image_owner, own_index, _ = synthetic_test_split(seed=1)
    flat, caption_owner = captions.reshape(-1, captions.shape[-1]), np.repeat(np.arange(len(captions)), 10)
    unknown = np.full(len(captions), -1)
    distinct = np.arange(len(captions))
    first = r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner, seed=3,
                        owner_class=unknown)
    second = r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner, seed=3,
                         owner_class=distinct)
    assert first[:2] == second[:2]
    np.testing.assert_array_equal(first[2], second[2])
    with pytest.raises(ValueError, match="every test image is of one class"):
        r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner,
                    owner_class=np.zeros(len(captions), int))
    with pytest.raises(ValueError, match="protocol must be one of dm-gan, other-images"):
        r_precision(image_features, flat, image_owner * 10 + own_index, caption_owner, image_owner, protocol="attngan")


def test_dm_gans_caption_plan_passes_over_the_images_with_a_random_caption_each():
    """``eval_caption_plan=dm-gan``: pass after pass over the test images, each once per pass (shuffled), one
    caption at random each time, until N (default 30,000); ``every-caption`` stays each caption once."""
    from types import SimpleNamespace

    from t2igan.scoring import caption_plan

    examples = [SimpleNamespace(captions=[f"c{c}" for c in range(5)]) for _ in range(10)]
    plan = caption_plan(examples, 25, seed=3, plan="dm-gan")
    assert len(plan) == 25 and plan == caption_plan(examples, 25, seed=3, plan="dm-gan")
    for start in (0, 10):  # two whole passes: every image exactly once in each
        assert sorted(i for i, _ in plan[start:start + 10]) == list(range(10))
    assert len({c for _, c in plan}) > 1 and all(0 <= c < 5 for _, c in plan)
    assert [i for i, _ in plan[:10]] != list(range(10))  # shuffled
    assert len(caption_plan(examples, 0, seed=3, plan="dm-gan")) == 30000
    assert len(caption_plan(examples, 0, seed=3)) == 50  # every caption once
    with pytest.raises(ValueError, match="eval_caption_plan must be one of"):
        caption_plan(examples, 0, seed=3, plan="dmgan")
