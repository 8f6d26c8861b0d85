"""Choosing a ``tf.distribute`` strategy.

Must run before any other TensorFlow op: splitting the CPU into logical devices
is impossible once the runtime has started, and MultiWorkerMirroredStrategy
must be created at program start (its constructor waits for every worker).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


#: how long a worker waits for every peer of TF_CONFIG to answer before it gives up (``--peer_timeout``)
PEER_TIMEOUT_S = 300


def make_strategy(kind: str = "auto", cpu_replicas: int = 0, peer_timeout: float = PEER_TIMEOUT_S) -> tf.distribute.Strategy:
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
        wait_for_peers(peer_timeout)  # a clear error instead of a hang on a wrong or unreachable cluster
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


def cluster_task() -> tuple[dict[str, list[str]], str, int]:
    """(cluster, this task's type, index) of ``TF_CONFIG``, checked: one sentence for what is wrong in it."""
    from t2igan.errors import UserError

    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError("--distribution=multiworker needs TF_CONFIG (docs/distributed.md): set it on every machine.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error}): fix it on this machine (docs/distributed.md).") from None
    cluster, task = config.get("cluster") if isinstance(config, dict) else None, (config or {}).get("task")
    if not isinstance(cluster, dict) or not cluster or not all(isinstance(v, list) and v for v in cluster.values()):
        raise UserError('TF_CONFIG has no "cluster" of job names to lists of "host:port": fix it on this machine.')
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError('TF_CONFIG has no "task": {"type": …, "index": …} saying which worker this is: add it.')
    kind, index = task["type"], task["index"]
    if kind not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        jobs = ", ".join(f"{job} × {len(addresses)}" for job, addresses in cluster.items())
        raise UserError(f"TF_CONFIG's task {json.dumps(task)} is not in its cluster ({jobs}): each machine's task "
                        "must name its own entry, with index from 0.")
    for job, addresses in cluster.items():
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"TF_CONFIG's cluster entry {job}: {address!r} is not host:port.")
    return cluster, kind, index


def wait_for_peers(timeout: float) -> None:
    """Every other address of TF_CONFIG accepts a TCP connection within ``timeout`` seconds, or a
    :class:`UserError` naming TF_CONFIG and the addresses that did not. While it waits, this worker listens
    on its own address, so that peers doing the same find it (TensorFlow's server takes the port after)."""
    import socket
    import time

    from t2igan.errors import UserError

    cluster, kind, index = cluster_task()
    own = cluster[kind][index]
    peers = [address for job in cluster.values() for address in job if address != own]
    host, _, port = own.rpartition(":")
    listener = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(port)))
        listener.listen(64)
    except OSError as error:
        listener.close()
        raise UserError(f"TF_CONFIG gives this worker the address {own}, but port {port} cannot be opened here ({error}): "
                        "another process holds it, or the task index names another machine's entry.") from None
    deadline, waiting = time.monotonic() + timeout, list(peers)
    try:
        while waiting:
            for address in list(waiting):
                peer_host, _, peer_port = address.rpartition(":")
                try:
                    with socket.create_connection((peer_host.strip("[]"), int(peer_port)), timeout=1.0):
                        waiting.remove(address)
                except OSError:
                    pass
            if waiting and time.monotonic() > deadline:
                raise UserError(f"TF_CONFIG: {', '.join(waiting)} did not answer within {timeout:g} s (this worker is "
                                f"{kind} {index}, {own}). Start the same command on every machine of the cluster, check "
                                "the addresses and the firewall, or wait longer with --peer_timeout.")
            if waiting:
                time.sleep(0.5)
        logging.info("TF_CONFIG: all %d peer(s) answered.", len(peers))
    finally:
        listener.close()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes summaries, samples and the run's files."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", lambda: None)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


#: what a worker other than the chief copies of the run folder into its scratch folder: all but what only the
#: chief writes (TensorBoard, samples, metrics.json) and the checkpoints, of which it takes the latest only
NOT_COPIED = ("logs", "samples", "workers", "checkpoints", "metrics.json", ".lock")


def worker_run_dir(strategy: tf.distribute.Strategy, run_dir: str) -> str:
    """The folder this process writes: the run folder for the chief (worker 0), a scratch copy for every
    other worker, removed when it ends.

    Under MultiWorkerMirroredStrategy every worker takes part in everything collective (the steps and the
    checkpoint saves), but only the chief may own the files. A worker starts from a copy of the run folder as
    the chief sees it (its settings, pretrained encoders and latest complete checkpoint), so the run folder
    must be on a file system every worker reads, as for ``BackupAndRestore``; it writes its own saves, logs
    and samples into the copy, and nothing into the run folder. :func:`barrier` after the copy keeps the
    chief from writing before every worker has read.
    """
    if is_chief(strategy):
        return run_dir
    import atexit
    import shutil
    import tempfile

    resolver = strategy.cluster_resolver
    remove_stale_scratch(tempfile.gettempdir())
    scratch = tempfile.mkdtemp(prefix=f"t2igan-{resolver.task_type}-{resolver.task_id}-pid{os.getpid()}-")
    atexit.register(shutil.rmtree, scratch, True)
    if os.path.isdir(run_dir):
        shutil.copytree(run_dir, scratch, dirs_exist_ok=True, ignore=lambda folder, names: [
            name for name in names if folder == run_dir and name in NOT_COPIED])
        _copy_latest_checkpoint(os.path.join(run_dir, "checkpoints"), os.path.join(scratch, "checkpoints"))
    logging.info("Worker %s %d: the chief (worker 0) writes %s; this worker's files go to %s (removed at exit).",
                 resolver.task_type, resolver.task_id, run_dir, scratch)
    return scratch


def remove_stale_scratch(folder: str) -> list[str]:
    """The scratch folders of workers that are gone (``kill -9`` leaves them; an ended worker removes its own);
    returns what was removed."""
    import glob
    import re
    import shutil

    from t2igan.training.run import _process_alive

    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), "t2igan-*-pid*-*")):
        found = re.search(r"-pid(\d+)-[^-]*$", path)
        if found and not _process_alive(int(found[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _copy_latest_checkpoint(source: str, target: str) -> None:
    import glob
    import shutil

    latest = tf.train.latest_checkpoint(source)
    if latest is None:
        return
    os.makedirs(target, exist_ok=True)
    for path in glob.glob(glob.escape(latest) + ".*"):
        shutil.copy2(path, target)
    name = os.path.basename(latest)
    with open(os.path.join(target, "checkpoint"), "w", encoding="utf-8") as file:
        file.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


class PeerLostError(RuntimeError):
    """Another worker of the cluster stopped answering: the command is to be started again on every machine."""


#: the exit code of a worker whose peer was lost (a job scheduler may requeue on it)
PEER_LOST_EXIT_CODE = 4


def is_multiworker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Every worker waits here until all have arrived (one all-reduce); nothing on one process."""
    if is_multiworker(strategy):
        _all_mean(strategy, 0.0)


def _all_mean(strategy: tf.distribute.Strategy, value: float) -> np.ndarray:
    @tf.function
    def mean():
        per_replica = strategy.run(lambda: tf.constant([value, value * value], tf.float64))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return mean().numpy()


def check_same_epoch(strategy: tf.distribute.Strategy, epoch: int, run_dir: str) -> None:
    """Every worker restored the same checkpoint: a run folder that another worker does not see (no shared
    file system) would make it start over while the chief resumes. The mean of the epochs and of their
    squares agree with this worker's epoch on every worker only when all are equal, so either every worker
    goes on or every worker stops with this sentence."""
    if not is_multiworker(strategy):
        return
    mean, mean_square = _all_mean(strategy, float(epoch))
    if mean != epoch or mean_square != epoch * epoch:
        from t2igan.errors import UserError

        raise UserError(f"The workers of TF_CONFIG resumed from different epochs (this one {epoch}, the mean "
                        f"{mean:g}): {run_dir} must be one folder that every worker reads (a shared file system, as "
                        "docs/distributed.md says), not a folder of each machine's own.")
