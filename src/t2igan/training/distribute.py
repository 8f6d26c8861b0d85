"""Choosing a ``tf.distribute`` strategy.

Must run before any other TensorFlow op: splitting the CPU into logical devices
is impossible once the runtime has started, and MultiWorkerMirroredStrategy
must be created at program start (its constructor waits for every worker).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def make_strategy(kind: str = "auto", cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy a run trains under.

    auto: MultiWorkerMirrored when ``TF_CONFIG`` names a cluster; Mirrored over
    ``cpu_replicas`` logical CPUs when ``cpu_replicas > 1``; Mirrored over all
    visible GPUs when there is at least one; otherwise the default strategy.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown --distribution={kind!r}; choose one of {', '.join(STRATEGIES)}.")
    if cpu_replicas < 0:
        raise ValueError(f"--cpu_replicas must be ≥ 0, got {cpu_replicas}.")
    if kind == "multiworker" or (kind == "auto" and _has_cluster()):
        logging.info("Strategy: MultiWorkerMirroredStrategy from TF_CONFIG.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
        except RuntimeError as error:
            raise RuntimeError(
                "--cpu_replicas must be set before TensorFlow runs any op; "
                "create the strategy first thing in the program."
            ) from error
        devices = [f"/device:CPU:{i}" for i in range(cpu_replicas)]
        logging.info("Strategy: MirroredStrategy over %d logical CPU devices.", cpu_replicas)
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and gpus):
        logging.info("Strategy: MirroredStrategy over %d GPU(s).", len(gpus))
        return tf.distribute.MirroredStrategy()
    logging.info("Strategy: default (one device).")
    return tf.distribute.get_strategy()


def _has_cluster() -> bool:
    config = os.environ.get("TF_CONFIG")
    if not config:
        return False
    try:
        return bool(json.loads(config).get("cluster"))
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes summaries, samples and the run's files."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", lambda: None)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def worker_run_dir(strategy: tf.distribute.Strategy, run_dir: str) -> str:
    """The chief writes the run folder; every other worker writes its own copy below it.

    Under MultiWorkerMirroredStrategy every worker must take part in saving
    (reading mirrored variables is collective), but only one may own the files.
    """
    if is_chief(strategy):
        return run_dir
    resolver = strategy.cluster_resolver
    return os.path.join(run_dir, "workers", f"{resolver.task_type}-{resolver.task_id}")
