"""1 replica vs 2 replicas (MirroredStrategy over two logical CPUs) give the same update."""

import os
import subprocess
import sys

import numpy as np

from conftest import ROOT, time_limit

WORKER = os.path.join(ROOT, "tests", "replica_parity_worker.py")


def run_worker(replicas, init, out):
    result = subprocess.run([sys.executable, WORKER, f"--replicas={replicas}", f"--init={init}", f"--out={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=time_limit(180))
    assert result.returncode == 0, result.stderr[-3000:]


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
