"""Training across machines (issue 19): two local worker processes under MultiWorkerMirroredStrategy
(``TF_CONFIG`` on 127.0.0.1, free ports) train chapters 1 and 4 (smoke) as one process with the same global
batch does (with two replicas: equal weights; with one: equal losses at every step). The chief alone writes the
run folder, and a worker killed with ``kill -9`` costs nothing once both are started again.

Each worker is a full training process (2 on a 2-core CPU), so this module is one of the suite's longest; it
runs in its own pytest-xdist worker.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, free_ports, run_chapter, smoke_args, time_limit

#: Two workers and one process with the same two replicas (``--cpu_replicas=2``) run the same computation, so
#: every tensor of their checkpoints agrees to float32 rounding (measured: chapter 1 bit for bit, chapter 4
#: 7.6e-7, where its steps move weights by ~1e-4). This is the weights test.
SAME_REPLICAS_TOLERANCE = 1e-5

#: Against one process with one replica, the sums over replicas and over examples are added in another order.
#: The first step's losses agree to 1e-4 relative: that pins the scaling by the global batch (a factor of 2
#: off would be 0.5). Its G loss, computed after D's first update, is the first to carry the drift (measured:
#: 1.6e-5 on an AVX2-only CPU). Later steps drift apart by chance: Adam moves a weight whose gradient is float
#: noise (a bias before BatchNorm) by ±lr each step whatever the noise, so weights differ by up to
#: 2 × lr × steps in any pair of runs, right or wrong, and the losses follow (steps 2–4 measured: up to 1.2e-4
#: on an AVX-512 CPU, up to 1.7e-3 on an AVX2-only one). So later steps are held to 1e-2 only; the tight check
#: of every step is against the same two replicas.
FIRST_STEP_RELATIVE, LATER_STEPS_RELATIVE = 1e-4, 1e-2

pytestmark = pytest.mark.slow  # make test-slow (and make test-all, CI): minutes of several processes each


def start_workers(chapter: str, args: list[str], count: int = 2) -> list[subprocess.Popen]:
    """``count`` processes of ``python -m chapters.<chapter> <args>``, worker i with TF_CONFIG's task i."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(count)]}
    processes = []
    for index in range(count):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, "-m", f"chapters.{chapter}", *args], cwd=ROOT, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes: list[subprocess.Popen], seconds: float) -> list[tuple[int, str]]:
    """(exit code, stderr) of each process; all are killed when ``seconds`` (scaled) pass first."""
    deadline = time.monotonic() + time_limit(seconds)
    results = []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, stderr))
    finally:
        for process in processes:
            process.kill()
    return results


def checkpoint_values(folder) -> dict[str, np.ndarray]:
    """Every tensor of a run's latest checkpoint (networks, optimizers, EMA, epoch) by its checkpoint key."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def assert_same_weights(one_folder, two_folder) -> float:
    one, two = checkpoint_values(one_folder), checkpoint_values(two_folder)
    assert sorted(one) == sorted(two)
    assert len(one) > 20  # networks and optimizer slots, not just the epoch counter
    for key in one:
        np.testing.assert_allclose(two[key], one[key], atol=SAME_REPLICAS_TOLERANCE, rtol=0, err_msg=key)
    return max(float(np.max(np.abs(one[key].astype(np.float64) - two[key]))) for key in one if one[key].dtype.kind == "f")


def logged_losses(run_dir) -> dict[str, list[float]]:
    """The per-step TensorBoard losses of a smoke run (``log_every_steps`` is 1 there)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "logs" / "train"), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]
            for tag in events.Tags()["tensors"] if tag.startswith("loss/")}


def assert_chief_only(run_dir, stderrs):
    """The run folder holds no second worker's files, and the other worker said where its copy went."""
    assert not (run_dir / "workers").exists()
    assert "MultiWorkerMirroredStrategy" in stderrs[0] and "2 replica(s)" in stderrs[0]
    assert "this worker's files go to" in stderrs[1]


# ------------------------------------------------------------------------- chapter 1
CHAPTER_1 = "ch1_gan_int_cls"


def test_chapter_1_on_two_workers_trains_as_one_process(workspace):
    """GAN-INT-CLS on two workers, from the text encoder the one-process run pretrained (the chief finds it in
    the run folder, the other worker in its copy). Weights and the losses of every step: equal to one process
    with the same two replicas; the first step's losses: equal to one process with one replica. (The char-CNN-RNN's DS-SJE loss compares the
    captions and images within each replica's share of a batch, so a pretraining on N replicas is another
    computation: the run logs a warning.)"""
    one = workspace / "ch1-one"
    result = run_chapter(CHAPTER_1, "train", *smoke_args(workspace, one))  # also generates the data set once
    assert result.returncode == 0, result.stderr[-3000:]
    replicas, two = workspace / "ch1-replicas", workspace / "ch1-two"
    for folder in (replicas, two):
        shutil.copytree(one / "text_encoder", folder / "text_encoder")
    result = run_chapter(CHAPTER_1, "train", *smoke_args(workspace, replicas), "--cpu_replicas=2")
    assert result.returncode == 0, result.stderr[-3000:]
    started = time.monotonic()
    outcomes = finish(start_workers(CHAPTER_1, ["train", *smoke_args(workspace, two)]), 300)
    for code, stderr in outcomes:
        assert code == 0, stderr[-3000:]
    print(f"chapter 1: two workers took {time.monotonic() - started:.0f} s")
    assert_chief_only(two, [stderr for _, stderr in outcomes])
    largest = assert_same_weights(replicas / "checkpoints", two / "checkpoints")
    print(f"chapter 1: largest weight difference to one process of two replicas {largest:.2e}")
    single, same, distributed = logged_losses(one), logged_losses(replicas), logged_losses(two)
    assert sorted(single) == sorted(same) == sorted(distributed) and all(len(v) == 4 for v in single.values())
    for tag in single:
        np.testing.assert_allclose(distributed[tag], same[tag], atol=SAME_REPLICAS_TOLERANCE, rtol=0, err_msg=tag)
        np.testing.assert_allclose(distributed[tag][0], single[tag][0], rtol=FIRST_STEP_RELATIVE, err_msg=tag)
        np.testing.assert_allclose(distributed[tag], single[tag], rtol=LATER_STEPS_RELATIVE, err_msg=tag)
        drift = np.abs(np.subtract(distributed[tag], single[tag]) / np.array(single[tag]))
        print(f"chapter 1: {tag} relative difference to one replica by step {np.array2string(drift, precision=1)}")
    steps = json.loads((two / "metrics.json").read_text())["train"]["steps"]
    assert steps == json.loads((one / "metrics.json").read_text())["train"]["steps"] == 4


# ------------------------------------------------------------------------- chapter 4
CHAPTER_4 = "ch4_dfgan_ratgan"


def test_chapter_4_on_two_workers_equals_one_process_of_two_replicas(workspace):
    """RAT-GAN (the default variant) on a DAMSM pretrained once. Its mismatched pairs are formed inside each
    replica's share of the batch (caption i with image i+1 of the same replica, as DF-GAN's and RAT-GAN's
    DistributedDataParallel code does), so the reference is one process with the same two replicas
    (``--cpu_replicas=2``): two workers give the same weights as it."""
    damsm = workspace / "ch4-damsm"
    result = run_chapter(CHAPTER_4, "pretrain", *smoke_args(workspace, damsm))
    assert result.returncode == 0, result.stderr[-3000:]
    reuse = ["--set", f"damsm_dir={damsm / 'text_encoder'}"]
    one = workspace / "ch4-one"
    result = run_chapter(CHAPTER_4, "train", *smoke_args(workspace, one, *reuse), "--cpu_replicas=2")
    assert result.returncode == 0, result.stderr[-3000:]
    two = workspace / "ch4-two"
    outcomes = finish(start_workers(CHAPTER_4, ["train", *smoke_args(workspace, two, *reuse)]), 300)
    for code, stderr in outcomes:
        assert code == 0, stderr[-3000:]
    assert_chief_only(two, [stderr for _, stderr in outcomes])
    largest = assert_same_weights(one / "checkpoints", two / "checkpoints")
    print(f"chapter 4: largest weight difference to one process of two replicas {largest:.2e}")


# ------------------------------------------------------------------ a worker killed
def latest_epoch(folder) -> int:
    latest = tf.train.latest_checkpoint(str(folder))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_a_killed_worker_costs_nothing_once_both_are_started_again(workspace):
    """kill -9 of worker 1 mid-run: worker 0 stops with one sentence (its peer is gone) instead of hanging;
    the same command on both resumes from the last complete checkpoint and ends with every step done once."""
    run_dir, epochs = workspace / "ch1-killed", 12
    args = ["train", *smoke_args(workspace, run_dir), f"--epochs={epochs}"]
    processes = start_workers(CHAPTER_1, args)
    deadline = time.monotonic() + time_limit(240)
    while time.monotonic() < deadline and processes[1].poll() is None and latest_epoch(run_dir / "checkpoints") < 2:
        time.sleep(0.2)
    if processes[1].poll() is not None:
        outcomes = finish(processes, 60)
        raise AssertionError(f"training ended before it could be killed: {outcomes[1][1][-2000:]}")
    killed_pid = processes[1].pid
    os.kill(killed_pid, signal.SIGKILL)
    (code, stderr), _ = finish(processes, 120)
    killed_at = latest_epoch(run_dir / "checkpoints")
    assert 2 <= killed_at < epochs
    assert code == 4 and "Traceback" not in stderr, stderr[-3000:]  # 4: a peer was lost (a scheduler may requeue)
    assert "TF_CONFIG" in stderr.strip().splitlines()[-1] and "start the same command" in stderr.lower()

    restarted = start_workers(CHAPTER_1, args)
    outcomes = finish(restarted, 300)
    for code, stderr in outcomes:
        assert code == 0, stderr[-3000:]
    assert f"(epoch {killed_at})" in outcomes[0][1] and f"(epoch {killed_at})" in outcomes[1][1]
    assert latest_epoch(run_dir / "checkpoints") == epochs
    steps = json.loads((run_dir / "metrics.json").read_text())["train"]["steps"]
    assert steps == epochs * 2  # smoke: 2 steps per epoch; none lost, none counted twice
    assert not glob.glob(str(run_dir / "checkpoints" / "*_temp*"))
    # the killed worker's scratch copy was removed when its successor started, and the successors' at their exit
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"t2igan-worker-1-pid{killed_pid}-*"))
    assert not any(glob.glob(os.path.join(tempfile.gettempdir(), f"t2igan-worker-*-pid{p.pid}-*")) for p in restarted)
