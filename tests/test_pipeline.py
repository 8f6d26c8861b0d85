import dataclasses

import numpy as np

from t2igan.data.pipeline import TextTable, make_dataset

N, SIZE = 24, 8


def tables():
    # Image i is filled with value i, so a batch tells which examples it holds.
    images = np.repeat(np.arange(N, dtype=np.uint8)[:, None, None, None], SIZE, 1).repeat(SIZE, 2).repeat(3, 3)
    classes = np.arange(N, dtype=np.int32) % 4
    embeddings = np.zeros((N, 3, 2), np.float32)
    embeddings[:, :, 0] = np.arange(N)[:, None]
    embeddings[:, 2, 1] = 100.0  # caption slot 2 is not valid (count 2): must never be chosen
    ids = np.tile(np.arange(1, 11, dtype=np.int32), (N, 2, 1))  # 10 tokens per caption
    return images, classes, TextTable(embeddings, np.full(N, 2, np.int32)), TextTable(ids, np.full(N, 2, np.int32), np.full((N, 2), 10, np.int32))


def example_ids(batch, key="image"):
    return np.rint((batch[key][:, 0, 0, 0] + 1.0) * 127.5).astype(int)


def first_batches(count, **kwargs):
    images, classes, embeddings, _ = tables()
    options = dict(global_batch_size=8, image_size=SIZE, augment=False, seed=3, captions_per_sample=2, noise_shape=(2, 5))
    options.update(kwargs)
    return [b for b in make_dataset(images, classes, embeddings, **options).take(count).as_numpy_iterator()]


def test_stream_is_deterministic_and_covers_each_epoch():
    first, again = first_batches(6), first_batches(6)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["noise"], b["noise"])
    epoch = np.concatenate([example_ids(b) for b in first[:3]])  # 24 / 8 = 3 steps per data epoch
    assert sorted(epoch.tolist()) == list(range(N))
    other_seed = first_batches(1, seed=4)[0]
    assert not np.array_equal(other_seed["image"], first[0]["image"])


def test_resume_position_matches_uninterrupted_stream():
    full = first_batches(6)
    resumed = first_batches(2, start_step=4)  # crosses into the second data epoch
    for a, b in zip(full[4:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_wrong_examples_and_caption_choice():
    images, classes, *_ = tables()
    for batch in first_batches(3):
        own, wrong = example_ids(batch), example_ids(batch, "wrong_image")
        assert np.all(classes[own] != classes[wrong])  # Reed: the wrong image comes from another class
        # Mean of 2 of the 2 valid captions: never the invalid slot (value 100).
        assert np.all(batch["text_embedding"][:, 1] == 0.0)
        np.testing.assert_array_equal(batch["text_embedding"][:, 0], own)
        np.testing.assert_array_equal(batch["wrong_text_embedding"][:, 0], wrong)
        assert batch["noise"].shape == (8, 2, 5) and batch["image"].dtype == np.float32


def test_token_captions_keep_an_ordered_subset():
    images, classes, _, ids = tables()
    dataset = make_dataset(images, classes, ids, global_batch_size=8, image_size=SIZE, augment=False, seed=0, words_num=6)
    batch = next(dataset.as_numpy_iterator())
    assert batch["caption_ids"].shape == (8, 6)
    assert np.all(batch["caption_length"] == 6)
    assert np.all(np.diff(batch["caption_ids"], axis=1) > 0)  # original order kept
    assert not all(np.array_equal(row, np.arange(1, 7)) for row in batch["caption_ids"])  # not head truncation


def test_augmentation_crops_to_the_image_size():
    images, classes, embeddings, _ = tables()
    big = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    batch = next(make_dataset(big, classes, embeddings, global_batch_size=8, image_size=SIZE, augment=True, seed=0).as_numpy_iterator())
    assert batch["image"].shape == (8, SIZE, SIZE, 3)
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0


def attribute_examples():
    from t2igan.data.records import Example

    # 24 examples over shape × colour × position (2 × 3 × 4); example i's attributes follow from i.
    shapes, colours, positions = ("circle", "star"), ("red", "blue", "green"), ("top", "left", "right", "bottom")
    records = [dict(shape=shapes[i % 2], colour=colours[(i // 2) % 3], position=positions[i // 6], box=[0, 0, 1, 1])
               for i in range(N)]
    return [Example(key=str(i), image_path="", captions=["x"], class_id=i, image_attributes=r) for i, r in enumerate(records)], records


def test_near_miss_table_differs_in_exactly_one_attribute():
    from t2igan.data.negatives import near_miss_table

    examples, records = attribute_examples()
    table = near_miss_table(examples, per_attribute=2)
    assert table.shape == (N, 3 * 2)  # 3 single-valued attributes (the box list is not one)
    for i, row in enumerate(table):
        # Columns 0–1 colour, 2–3 position, 4–5 shape; only one other shape exists, so column 5 pads (−1).
        assert np.all(row[:5] >= 0) and row[5] == -1
        for column, j in enumerate(row[:5]):
            differing = [name for name in ("colour", "position", "shape") if records[i][name] != records[j][name]]
            assert differing == [("colour", "position", "shape")[column // 2]]
    no_attributes = [dataclasses.replace(example, image_attributes=None) for example in examples]
    assert near_miss_table(no_attributes) is None  # real data sets: random wrong examples only
    from t2igan.data.negatives import dataset_options
    from t2igan.errors import UserError

    assert dataset_options(no_attributes, 0.0) == {}
    assert dataset_options(examples, 0.5)["hard_negatives"] == 0.5
    try:
        dataset_options(no_attributes, 0.5)
    except UserError as error:
        assert "attributes" in str(error)
    else:
        raise AssertionError("hard negatives on a data set without attributes must fail clearly")


def test_hard_negatives_draw_wrong_examples_from_the_near_misses():
    from t2igan.data.negatives import near_miss_table

    examples, records = attribute_examples()
    table = near_miss_table(examples, per_attribute=2)
    batches = first_batches(6, near_misses=table, hard_negatives=1.0)
    for batch in batches:
        own, wrong = example_ids(batch), example_ids(batch, "wrong_image")
        assert all(w in table[o] for o, w in zip(own, wrong))
        np.testing.assert_array_equal(batch["wrong_class_id"], tables()[1][wrong])
    half = np.concatenate([[w in table[o] for o, w in zip(example_ids(b), example_ids(b, "wrong_image"))]
                           for b in first_batches(6, near_misses=table, hard_negatives=0.5)])
    assert 0.25 < half.mean() < 0.9  # about half near misses (random wrongs are near misses by chance too)
    try:
        first_batches(1, hard_negatives=0.5)
    except ValueError as error:
        assert "near_misses" in str(error)
    else:
        raise AssertionError("hard_negatives without a table must fail")


def test_a_single_pass_declares_its_length_so_keras_averages_over_the_real_batches():
    """Without a known length Keras 3 averaged validation metrics over one step too many (n/(n + 1) of the
    true value, with a "ran out of data" warning): the held-out figures of every pretraining read low."""
    import warnings

    import keras
    import tensorflow as tf

    images, classes, embeddings, _ = tables()
    one_pass = make_dataset(images, classes, embeddings, global_batch_size=8, image_size=SIZE, augment=False, seed=3,
                            repeat=False)
    assert int(one_pass.cardinality()) == 3 and len(list(one_pass)) == 3  # 24 images, batches of 8

    class MeanImage(keras.Model):
        def __init__(self):
            super().__init__()
            self.tracker = keras.metrics.Mean(name="value")
            self.weight = self.add_weight(shape=(), initializer="zeros")

        def test_step(self, batch):
            self.tracker.update_state(tf.ones(()))  # 1 per batch: the mean over the batches is exactly 1
            return {"value": self.tracker.result()}

        @property
        def metrics(self):
            return [self.tracker]

    model = MeanImage()
    model.compile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.evaluate(one_pass, verbose=0, return_dict=True)
    assert result["value"] == 1.0
    assert not [w for w in caught if "ran out of data" in str(w.message)]
