"""Nothing silent, nothing lost: the image cache follows file content, one training per run folder,
``make tensorboard`` follows RUN_DIR, and test time limits that scale with the machine."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from t2igan.data.pipeline import build_image_array
from t2igan.data.records import Example

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_image_cache_notices_a_replaced_image_of_the_same_size(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 8), colour).save(paths[-1])
    examples = [Example(key=str(i), image_path=p, captions=["a"], class_id=0) for i, p in enumerate(paths)]
    cache = str(tmp_path / "cache")
    first = np.array(build_image_array(examples, 8, False, cache))
    assert first[0, 0, 0].tolist() == [255, 0, 0]
    status = os.stat(paths[0])
    Image.new("RGB", (8, 8), (0, 0, 255)).save(paths[0])  # same size in pixels, and in bytes here
    os.utime(paths[0], ns=(status.st_atime_ns, status.st_mtime_ns))  # as `cp -p` keeps the old time
    second = np.array(build_image_array(examples, 8, False, cache))
    assert second[0, 0, 0].tolist() == [0, 0, 255]
    np.testing.assert_array_equal(second[1], first[1])


def test_make_tensorboard_follows_run_dir():
    def logdir(*variables):
        printed = subprocess.run(["make", "-n", "tensorboard", *variables], cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "VENV": sys.prefix}).stdout
        line = next(line for line in printed.splitlines() if "--logdir" in line)
        return line.split("--logdir", 1)[1].split()[0]

    assert logdir() == "runs"
    assert logdir("RUN_DIR=elsewhere/run1") == "elsewhere/run1"
    assert logdir("LOGDIR=all/of/them", "RUN_DIR=elsewhere/run1") == "all/of/them"


def test_test_time_limits_scale_with_the_machine(monkeypatch):
    from conftest import time_limit

    monkeypatch.delenv("T2IGAN_TEST_TIME_FACTOR", raising=False)
    assert time_limit(240) >= 240
    monkeypatch.setenv("T2IGAN_TEST_TIME_FACTOR", "3")
    assert time_limit(240) == 720
    monkeypatch.setenv("T2IGAN_TEST_TIME_FACTOR", "fast")
    with pytest.raises(ValueError, match="T2IGAN_TEST_TIME_FACTOR"):
        time_limit(240)


def test_one_training_per_run_folder_and_a_stale_lock_is_taken_over(tmp_path):
    import json
    import socket

    from t2igan.training.run import RunDirectory

    host = socket.gethostname()
    run = RunDirectory(str(tmp_path / "run"), "ch1_gan_int_cls")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(run.path)
        with open(run.lock_path, "w") as file:
            json.dump({"pid": holder.pid, "host": host, "since": "then"}, file)
        with pytest.raises(ValueError, match=f"in use by another training \\(pid {holder.pid} on {host}"):
            run.lock()
    finally:
        holder.kill()
        holder.wait()
    run.lock()  # its holder is gone: taken over
    assert json.load(open(run.lock_path))["pid"] == os.getpid()
    run.lock()  # and again by the same process (StackGAN-v1's two stages)
    run.unlock()
    assert not os.path.exists(run.lock_path)


def test_a_second_training_in_a_locked_run_folder_stops_with_a_message(tmp_path):
    import json
    import socket

    from conftest import run_chapter, smoke_args

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run_dir / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": "now"}))
        second = run_chapter("ch1_gan_int_cls", "train", *smoke_args(tmp_path, run_dir))
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    assert "is in use by another training" in second.stderr and "Traceback" not in second.stderr
    assert not (run_dir / "config.json").exists()


def options_for(run_dir, *overrides):
    import types

    return types.SimpleNamespace(distribution="default", cpu_replicas=0, run_dir=str(run_dir), dataset="shapes",
                                 profile="smoke", set=list(overrides), epochs=None, seed=0, data_dir=None,
                                 metadata_dir=None, mixed_precision=False)


def test_config_json_is_written_only_once_the_run_really_starts(tmp_path):
    """A start that fails (bad networks, a checkpoint that does not fit) leaves config.json as it was."""
    import json

    from chapters.ch1_gan_int_cls.profiles import PROFILES
    from t2igan.training import harness

    def failing_build():
        raise ValueError("GAN-INT-CLS builds 16, 32 or 64 px images, not 33")

    run_dir = tmp_path / "run"
    strategy, run, config = harness.start_training("ch1_gan_int_cls", options_for(run_dir, "image_size=33"), PROFILES)
    assert config["image_size"] == 33 and not os.path.exists(run.config_path)
    with pytest.raises(ValueError, match="not 33"):
        harness.build_for_training(strategy, run, config, failing_build, 1)
    assert not os.path.exists(run.config_path)  # the corrected rerun is not refused
    run.unlock()
    _, run, config = harness.start_training("ch1_gan_int_cls", options_for(run_dir, "image_size=32"), PROFILES)
    harness.commit_config(run)
    assert json.load(open(run.config_path))["image_size"] == 32
    run.unlock()
    # a changed width on the existing run: refused at the checkpoint, config.json keeps the old width
    _, run, config = harness.start_training("ch1_gan_int_cls", options_for(run_dir, "image_size=32",
                                                                           "generator_width=8"), PROFILES)
    assert json.load(open(run.config_path))["generator_width"] == PROFILES["smoke"]["generator_width"]
    run.unlock()
