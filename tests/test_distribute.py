"""1 replica vs 2 replicas (MirroredStrategy over two logical CPUs) give the same update."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, free_ports, time_limit

WORKER = os.path.join(ROOT, "tests", "replica_parity_worker.py")


def run_worker(replicas, init, out):
    result = subprocess.run([sys.executable, WORKER, f"--replicas={replicas}", f"--init={init}", f"--out={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=time_limit(180))
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_one_and_two_replicas_give_the_same_weights_after_a_step(tmp_path):
    """Same initial weights, same global batch of 8, one SGD step of D then G (with EMA and
    synchronized BatchNorm). Tolerance: 1e-5 absolute on every weight, where the step moves
    weights by up to ~0.3 — a wrong loss scale (×2) would differ by the whole step."""
    init = tmp_path / "init.npz"
    run_worker(1, init, tmp_path / "one.npz")
    run_worker(2, init, tmp_path / "two.npz")
    one, two, start = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz"), np.load(init)
    largest_move = max(np.abs(one[k] - start[k]).max() for k in start.files)
    assert largest_move > 1e-2  # the step really changed the weights
    for key in one.files:
        np.testing.assert_allclose(two[key], one[key], atol=1e-5, err_msg=key)


def test_a_wrong_or_unreachable_tf_config_fails_in_the_stated_time_with_one_sentence(tmp_path):
    """Issue 19, must-show 3: a worker whose peer never starts exits after --peer_timeout (here 3 s) with an
    error naming TF_CONFIG and the address that did not answer, not a hang; a task that is not in its own
    cluster is refused at once. Both before any TensorFlow runtime or run folder is made."""
    import json
    import time

    from conftest import run_chapter

    own, absent = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{own}", f"127.0.0.1:{absent}"]}
    args = ["train", "--profile=smoke", f"--run_dir={tmp_path / 'run'}", f"--data_root={tmp_path / 'data'}",
            "--peer_timeout=3"]
    started = time.monotonic()
    unreachable = run_chapter("ch1_gan_int_cls", *args, timeout=120, env={
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})})
    elapsed = time.monotonic() - started
    assert unreachable.returncode == 2, unreachable.stderr[-2000:]
    assert f"TF_CONFIG: 127.0.0.1:{absent} did not answer within 3 s (this worker is worker 0" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr and not (tmp_path / "run").exists()
    assert elapsed < time_limit(60)  # 3 s of waiting plus the start-up of Python and TensorFlow
    wrong = run_chapter("ch1_gan_int_cls", *args, timeout=120, env={
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 2}})})
    assert wrong.returncode == 2 and 'TF_CONFIG\'s task {"type": "worker", "index": 2} is not in its cluster (worker × 2)' \
        in wrong.stderr, wrong.stderr[-2000:]
