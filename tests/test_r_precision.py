"""R-precision (DM-GAN protocol) on hand-made features, against a direct count."""

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
    mean, std, hits = r_precision(images, sentences, own, owners, image_owner, candidates=7, folds=2, seed=0)
    np.testing.assert_array_equal(hits, [1, 1, 1, 0])
    assert mean == pytest.approx(0.75) and std == pytest.approx(0.25)  # folds [1, 1] and [1, 0]


def test_r_precision_needs_enough_mismatched_captions():
    with pytest.raises(ValueError, match="mismatched captions"):
        r_precision(np.ones((1, 2)), np.ones((3, 2)), np.array([0]), np.array([0, 1, 1]), np.array([0]), candidates=4)
