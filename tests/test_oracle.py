"""The shapes attribute oracle: shapes of outputs, hand-computed scores, caching."""

from __future__ import annotations

import os

import numpy as np
import pytest

from t2igan import oracle, scoring
from t2igan.data import shapes


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return shapes.generate(str(tmp_path_factory.mktemp("data") / "set"), image_size=32,
                           num_train=40, num_test=10, seed=1, workers=1)


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    return oracle.train_oracle(root, 32, cache, epochs=1), cache


def test_load_split_arrays(root):
    images, examples = oracle.load_split_arrays(root, "test", 32)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert [e.key for e in examples] == [e.key for e in shapes.load(root).test]
    smaller, _ = oracle.load_split_arrays(root, "test", 16)  # resized on load
    assert smaller.shape == (10, 16, 16, 3)


def test_train_predict_features_score(root, trained):
    model, cache = trained
    assert os.path.exists(os.path.join(cache, "oracle-shapes-32px.weights.h5"))
    assert set(model.report["test_accuracy"]) == {"shape", "colour", "size", "position"}
    images, examples = oracle.load_split_arrays(root, "test", 32)
    predictions = model.predict(images, batch_size=4)  # several batches, last one short
    assert set(predictions) == set(shapes.ATTRIBUTE_VALUES)
    for head, labels in predictions.items():
        assert labels.shape == (10,) and labels.max() < len(shapes.ATTRIBUTE_VALUES[head])
    assert model.features(images).shape == (10, 256)
    score = model.score(images, [e.caption_attributes[0] for e in examples])
    assert 0.0 <= score["all"] <= 1.0 and score["counts"]["all"] == 10
    assert score["counts"]["shape"] == score["counts"]["colour"] == 10
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((2, 64, 64, 3), np.float32))


def test_cache_round_trip_gives_identical_predictions(root, trained, monkeypatch):
    model, cache = trained

    def no_training(*args, **kwargs):
        raise AssertionError("the cached oracle should have been loaded")

    monkeypatch.setattr(oracle, "train_oracle", no_training)
    loaded = oracle.load_or_train_oracle(root, 32, cache)
    images, _ = oracle.load_split_arrays(root, "test", 32)
    for head, labels in model.predict(images).items():
        np.testing.assert_array_equal(loaded.predict(images)[head], labels)
    np.testing.assert_allclose(loaded.features(images), model.features(images), rtol=1e-5, atol=1e-5)
    assert loaded.report["test_accuracy"] == model.report["test_accuracy"]


def test_score_matches_hand_computation(monkeypatch):
    heads = oracle.heads_for("shapes")
    untrained = oracle.Oracle(oracle.build_model(32, heads), "shapes", 32)
    index = {head: {value: i for i, value in enumerate(values)} for head, values in heads.items()}
    predicted = [
        {"shape": "circle", "colour": "red", "size": "small", "position": "top"},
        {"shape": "star", "colour": "blue", "size": "large", "position": "center"},
        {"shape": "square", "colour": "green", "size": "small", "position": "left"},
        {"shape": "triangle", "colour": "white", "size": "large", "position": "bottom"},
    ]
    monkeypatch.setattr(untrained, "predict", lambda images, batch_size=256: {
        head: np.array([index[head][p[head]] for p in predicted]) for head in heads})
    stated = [
        {"shape": "circle", "colour": "red"},                          # all right
        {"shape": "star", "colour": "red", "size": "large"},           # colour wrong
        {"shape": "square", "colour": "green", "position": "right"},   # position wrong
        {"shape": "diamond", "colour": "white", "size": "large"},      # shape wrong
    ]
    score = untrained.score(np.zeros((4, 32, 32, 3), np.float32), stated)
    assert score["shape"] == pytest.approx(3 / 4) and score["colour"] == pytest.approx(3 / 4)
    assert score["size"] == pytest.approx(1.0) and score["position"] == pytest.approx(0.0)
    assert score["all"] == pytest.approx(1 / 4)
    assert score["counts"] == {"shape": 4, "colour": 4, "size": 2, "position": 1, "all": 4}
    colours, shapes_ = heads["colour"], heads["shape"]
    expected_colour = np.zeros((len(colours), len(colours)), int)
    expected_colour[colours.index("red"), colours.index("red")] = 1
    expected_colour[colours.index("red"), colours.index("blue")] = 1  # the second caption's red drawn blue
    expected_colour[colours.index("green"), colours.index("green")] = 1
    expected_colour[colours.index("white"), colours.index("white")] = 1
    np.testing.assert_array_equal(score["confusion"]["colour"], expected_colour)
    assert np.sum(score["confusion"]["shape"]) == 4
    assert score["confusion"]["shape"][shapes_.index("diamond")][shapes_.index("triangle")] == 1
    assert np.asarray(score["confusion"]["position"]).sum() == 1
    mistakes = scoring.commonest_mistakes({head: {"values": list(heads[head]), "stated_by_drawn": matrix}
                                            for head, matrix in score["confusion"].items()})
    assert mistakes["colour"] == [("red", "blue", 0.5, 2)]
    assert mistakes["shape"] == [("diamond", "triangle", 1.0, 1)] and mistakes["size"] == []
    assert mistakes["position"] == [("right", "left", 1.0, 1)]
    with pytest.raises(ValueError, match="Unknown value"):
        untrained.score(np.zeros((1, 32, 32, 3), np.float32), [{"shape": "hexagon", "colour": "red"}])


def test_pair_attributes_are_flattened_in_reading_order():
    stated = {"objects": [{"shape": "star", "colour": "blue"}, {"shape": "circle", "colour": "red"}],
              "relation": "right of"}
    assert oracle.flatten_attributes(stated) == {
        "object0.shape": "circle", "object0.colour": "red",
        "object1.shape": "star", "object1.colour": "blue", "relation": "left of"}
    assert set(oracle.heads_for("shapes-pairs")) == {
        "object0.shape", "object0.colour", "object0.size",
        "object1.shape", "object1.colour", "object1.size", "relation"}
