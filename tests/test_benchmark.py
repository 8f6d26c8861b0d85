"""The step benchmark's FLOP count (``t2igan.training.benchmark``) against the formula: a convolution, each of
its gradients and a matrix product are 2 × multiply-adds, counted from the graph of a training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from t2igan.training.benchmark import StepClock, bare_loop, graph_flops


def tiny_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                             keras.layers.ReLU(), keras.layers.Conv2D(5, 3, padding="same", use_bias=False),
                             keras.layers.Flatten(), keras.layers.Dense(6, use_bias=False)])


def gradient_step(model):
    def step(images):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(images)))
        gradients = tape.gradient(loss, model.trainable_variables)
        return {"loss": loss, "gradient_norm": tf.linalg.global_norm(gradients)}
    return step


def test_flops_of_a_training_step_match_the_formula():
    model, images = tiny_model(), tf.random.normal((2, 8, 8, 3))
    counts = graph_flops(tf.function(gradient_step(model)).get_concrete_function(images).graph)
    batch, pixels, taps = 2, 8 * 8, 3 * 3
    first, second = 2 * batch * pixels * taps * 3 * 4, 2 * batch * pixels * taps * 4 * 5  # 2 × multiply-adds
    dense = 2 * batch * (8 * 8 * 5) * 6
    assert counts["Conv2D"] == first + second
    assert counts["Conv2DBackpropFilter"] == first + second  # both filters get a gradient
    assert counts["Conv2DBackpropInput"] == second  # the images need none: only the second layer's input
    assert counts["MatMul"] == 3 * dense  # forward, the gradient of its input and of its weights


def test_bare_loop_times_the_step_and_counts_its_graph():
    model, images = tiny_model(), tf.random.normal((2, 8, 8, 3))
    seconds, counts = bare_loop(gradient_step(model), images, steps=3)
    assert 0 < seconds < 60
    assert counts["Conv2D"] == 73728 and counts["MatMul"] == 3 * 7680  # the trace the loop ran, counted
    assert sum(counts.values()) > 2 * 73728 + 46080 + 3 * 7680  # plus the element-wise ops


def test_step_clock_splits_steps_from_epoch_end_work():
    clock = StepClock()
    clock.on_epoch_begin(0)
    for step in range(3):
        clock.on_train_batch_end(step)
    clock.on_epoch_end(0)
    (epoch,) = clock.epochs
    assert len(epoch["steps"]) == 3 and all(seconds >= 0 for seconds in epoch["steps"])
    assert epoch["seconds"] >= sum(epoch["steps"]) + epoch["epoch_end"] - 1e-6
    assert np.isfinite(epoch["epoch_end"])


@pytest.mark.slow  # a full smoke benchmark and three more runs of the CLI: make test-slow / test-all (CI)
def test_time_steps_measures_a_chapter_instead_of_training_it(tmp_path):
    """``train --time_steps=N`` (make benchmark): the chapter's GAN is built as train builds it, timed, and
    recorded under metrics.json's "benchmark"; nothing is recorded as training; the table command reads it."""
    import json
    import subprocess
    import sys

    from conftest import ROOT, run_chapter, smoke_args, time_limit

    run_dir = tmp_path / "run"
    result = run_chapter("ch1_gan_int_cls", "train", *smoke_args(tmp_path, run_dir), "--time_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GFLOP per training step" in result.stdout and "bare tf.function loop" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "train" not in metrics
    measured = metrics["benchmark"]
    assert measured["gflops_per_step"] > 0 and measured["bare_ms_per_step"] > 0 and measured["steps_timed"] == 2
    assert 0 < measured["fraction_of_peak"] < 1
    refused = run_chapter("ch1_gan_int_cls", "train", *smoke_args(tmp_path, run_dir))  # would resume a benchmark
    assert refused.returncode == 2 and "holds a benchmark" in refused.stderr and "Traceback" not in refused.stderr
    again = run_chapter("ch1_gan_int_cls", "train", *smoke_args(tmp_path, run_dir), "--time_steps=2")
    assert again.returncode == 2 and "needs a run folder without any" in again.stderr  # not silently "trained"
    table = subprocess.run([sys.executable, "-m", "t2igan.training.benchmark", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=time_limit(60))
    assert table.returncode == 0, table.stderr[-2000:]
    assert "| GAN-INT-CLS | 32², 8 |" in table.stdout
    empty = subprocess.run([sys.executable, "-m", "t2igan.training.benchmark", str(tmp_path / "none")], cwd=ROOT,
                           capture_output=True, text=True, timeout=time_limit(60))
    assert empty.returncode == 2 and "run make benchmark first" in empty.stderr
