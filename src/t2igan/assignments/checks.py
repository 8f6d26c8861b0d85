"""Building blocks of checks: comparisons that say by how much and where, seeds, two CPU replicas.

Comparisons follow CS231n's numerical checks: the relative error |a − b| / max(|a| + |b|, floor) per
element, against a stated tolerance, so a report reads "max relative error 3.1e-01 at (0, 2)
(tolerance 1e-05)". TensorFlow is imported inside the functions: the grading parent process never
loads it, only its worker does.
"""

from __future__ import annotations

import numpy as np


class CheckFailed(AssertionError):
    """A check's property does not hold; the message says what, by how much and where."""


def as_array(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def relative_error(actual, expected, floor: float = 1e-8) -> np.ndarray:
    actual, expected = as_array(actual), as_array(expected)
    return np.abs(actual - expected) / np.maximum(np.abs(actual) + np.abs(expected), floor)


def assert_shape(name: str, value, shape) -> None:
    got = tuple(as_array(value).shape) if not hasattr(value, "shape") else tuple(value.shape)
    if got != tuple(shape):
        raise CheckFailed(f"{name} has shape {got}, expected {tuple(shape)}.")


def assert_close(name: str, actual, expected, tolerance: float = 1e-5, absolute: float = 1e-7) -> None:
    """Every element within ``tolerance`` relative error, or within ``absolute`` (values near zero)."""
    if actual is None:
        raise CheckFailed(f"{name} is None (no value, or no gradient reaches it), expected values of shape "
                          f"{as_array(expected).shape}.")
    actual, expected = as_array(actual), as_array(expected)
    if actual.shape != expected.shape:
        raise CheckFailed(f"{name} has shape {actual.shape}, expected {expected.shape}.")
    finite = np.isfinite(actual)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise CheckFailed(f"{name} has {len(bad)} non-finite values (NaN or inf), the first at "
                          f"{tuple(int(i) for i in bad[0])}.")
    error = relative_error(actual, expected)
    wrong = (error > tolerance) & (np.abs(actual - expected) > absolute)
    if wrong.any():
        where = np.unravel_index(int(np.argmax(np.where(wrong, error, -1.0))), error.shape) if error.ndim else ()
        index = tuple(int(i) for i in where)
        got, want = (actual[index], expected[index]) if error.ndim else (float(actual), float(expected))
        raise CheckFailed(f"{name}: max relative error {float(error[index] if error.ndim else error):.1e} at "
                          f"{index if index else 'the value'} (got {got:.6g}, expected {want:.6g}; "
                          f"{int(wrong.sum())} of {error.size} elements off; tolerance {tolerance:g}).")


def numerical_gradient(function, value, step: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``function`` (float64 NumPy, the equation) at ``value``: the
    expected gradient of a check, independent of any framework's autodiff."""
    value = np.asarray(value, dtype=np.float64)
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        delta = np.zeros_like(value)
        delta[index] = step
        gradient[index] = (function(value + delta) - function(value - delta)) / (2 * step)
    return gradient


def seed_everything(seed: int = 0) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def first_replica_device_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_logical_devices("CPU"))


def two_replicas(fn, per_replica_args):
    """``fn(*args)`` under a MirroredStrategy of two logical CPUs inside one ``tf.function``, replica i
    receiving ``per_replica_args[i]``; returns the two replicas' results. The grading worker splits the
    CPU in two at start-up (a split is impossible once TensorFlow has run an op)."""
    import tensorflow as tf

    if first_replica_device_count() < 2:
        raise RuntimeError("two_replicas needs two logical CPUs; the grading worker creates them at start-up.")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    values = [strategy.experimental_distribute_values_from_function(lambda context, k=k: per_replica_args[
        context.replica_id_in_sync_group][k]) for k in range(len(per_replica_args[0]))]

    @tf.function
    def step(*arguments):
        return strategy.run(fn, args=arguments)

    results = step(*values)
    return [tf.nest.map_structure(lambda r, i=i: strategy.experimental_local_results(r)[i], results)
            for i in range(2)]
