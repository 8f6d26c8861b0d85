"""Issue 17, finding 9 (metric names): one name per training quantity. The console prints ``d_fake``,
TensorBoard plots ``<group>/d_fake`` once (no per-epoch copy), as the mean of the steps since its last
point, not Keras' running mean since the epoch began."""

import glob
import importlib

import numpy as np
import pytest
import tensorflow as tf

from t2igan.training.callbacks import TensorBoardLogger


class FakeModel:
    def __init__(self):
        self.generator_optimizer = type("Optimizer", (), {})()
        self.generator_optimizer.iterations = tf.Variable(0, dtype=tf.int64)


def logged_scalars(folder):
    values = {}
    for path in glob.glob(str(folder / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return values


def test_tensorboard_gets_each_intervals_mean_under_group_and_console_name(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    logger = TensorBoardLogger(writer, {"d_fake": "score"}, {}, every_steps=2)
    model = FakeModel()
    logger.set_model(model)
    step_values = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 9.0]]  # three epochs; the last one short
    for epoch, values in enumerate(step_values):
        logger.on_epoch_begin(epoch)
        for batch, _ in enumerate(values):
            model.generator_optimizer.iterations.assign_add(1)
            running_mean = np.mean(values[: batch + 1])  # what Keras hands a callback
            logger.on_train_batch_end(batch, {"d_fake": running_mean})
        logger.on_epoch_end(epoch, {"d_fake": float(np.mean(values))})
    writer.close()
    scalars = logged_scalars(tmp_path)
    assert set(scalars) == {"score/d_fake"}, "one tag per quantity: <group>/<console name>, no epoch copy"
    steps, means = zip(*scalars["score/d_fake"])
    assert steps == (2, 4, 6, 8)
    # steps 1–2, 3–4 (across the first epoch's end), 5–6, 7–8 (the third epoch)
    np.testing.assert_allclose(means, [1.5, 3.5, 5.5, 8.0], rtol=1e-6)


@pytest.mark.parametrize("module, gan", [
    ("chapters.ch1_gan_int_cls.model", "GanIntCls"), ("chapters.ch2_stackgan.model", "StackGanV1"),
    ("chapters.ch4_dfgan_ratgan.model", "OneStageGan")])
def test_groups_are_single_words_so_the_tag_ends_with_the_console_name(module, gan):
    groups = getattr(importlib.import_module(module), gan).metric_groups
    assert {"d_loss", "g_loss"} <= set(groups)
    assert all(group.isidentifier() for group in groups.values()), groups
