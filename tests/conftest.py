"""Shared fixtures. Real data lives beside the project (../shared/data) or in $T2IGAN_SHARED_DATA."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shared_data_dir() -> str:
    return os.environ.get("T2IGAN_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not os.path.isdir(path):
        pytest.skip(f"real data not found at {path} (set T2IGAN_SHARED_DATA)")
    return path


#: Time limits of subprocess runs are these seconds × this factor: a busy or slow machine makes the suite
#: slower, not red. ``T2IGAN_TEST_TIME_FACTOR=5 make test`` on a very slow one.
DEFAULT_TIME_FACTOR = 3.0


def time_limit(seconds: float) -> float:
    """A test's time limit on this machine: ``seconds`` (measured on a quiet 2-core CPU, with margin) × the
    factor in ``$T2IGAN_TEST_TIME_FACTOR`` (default 3)."""
    raw = os.environ.get("T2IGAN_TEST_TIME_FACTOR", "")
    try:
        factor = float(raw) if raw else DEFAULT_TIME_FACTOR
    except ValueError:
        raise ValueError(f"T2IGAN_TEST_TIME_FACTOR={raw!r} is not a number; set it to e.g. 3.") from None
    return seconds * factor


def run_chapter(chapter: str, *args: str, timeout: int = 240, env=None) -> subprocess.CompletedProcess:
    """``python -m chapters.<chapter> <args>`` from the repository root; returns the finished process.
    ``timeout`` is scaled by :func:`time_limit`."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", f"chapters.{chapter}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=time_limit(timeout), env=environment)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request):
    """One temporary folder per test module (runs, generated data) shared by its tests."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1].replace("test_", ""))


def smoke_args(workspace, run_dir, *extra) -> list[str]:
    """The flags of a smoke run in ``run_dir`` with the module's data under ``workspace``."""
    return ["--profile=smoke", f"--run_dir={run_dir}", f"--data_root={workspace / 'data'}", *extra]


def assert_same_final_losses(expected_run, run, relative=2e-2, absolute=1e-3):
    """Both run folders' metrics.json hold the same quantities under train.final, with the same values up to float
    rounding (e.g. one run compiled with XLA)."""
    import json

    import pytest

    expected, actual = (json.loads((folder / "metrics.json").read_text())["train"]["final"]
                        for folder in (expected_run, run))
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=relative, abs=absolute), name


def tensorboard_tags(run_dir, folder: str = "train") -> set[str]:
    """Every summary tag written under ``run_dir/logs/folder``."""
    import glob

    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(str(run_dir), "logs", folder, "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def dfgan_synthetic_release(generator, discriminator, seed=0):
    """A DF-GAN release's flat keys (``model.netG.…``, as ``read_state_dict`` gives them) for built networks,
    random values of the official shapes (the unused ``conv_s`` included) and ``epoch`` 600: chapter 4's
    importer tests, without the download."""
    from chapters.ch4_dfgan_ratgan import official

    rng = np.random.default_rng(seed)
    d_entries, c_entries, unused = official.discriminator_entries(discriminator)
    state = {}
    for part, shapes in (("netG", official.expected_shapes(official.generator_entries(generator))),
                         ("netD", {**official.expected_shapes(d_entries), **unused}),
                         ("netC", official.expected_shapes(c_entries))):
        for key, shape in shapes.items():
            state[f"model.{part}.{key}"] = rng.standard_normal(shape).astype(np.float32)
    state["epoch"] = np.asarray(600)
    return state


def ratgan_synthetic_release(generator, discriminator=None, seed=0):
    """RAT-GAN's released files (``netG_NNN.pth``, and ``netD_NNN.pth`` when a discriminator is given) as
    flat official keys for built networks: random values of the official shapes, the shared LSTM written
    under every block as PyTorch writes it, and the never-called affines at their initial values (output
    layer zero) as in a trained birds file. Returns (generator state, discriminator state or None)."""
    from chapters.ch4_dfgan_ratgan import official

    rng = np.random.default_rng(seed)
    entries, unused = official.ratgan_generator_entries(generator)
    state = {key: rng.standard_normal(shape).astype(np.float32)
             for key, shape in {**official.expected_shapes(entries), **unused}.items()}
    for key in unused:
        if ".linear2." in key:
            state[key] = (np.ones if key.endswith("fc_gamma.linear2.bias") else np.zeros)(state[key].shape, np.float32)
    for i in range(len(generator.blocks)):
        state.update({f"block{i}.lstm.{key}": state[f"lstm.{key}"] for key in official.LSTM_KEYS})
    if discriminator is None:
        return state, None
    d_entries, d_unused = official.ratgan_discriminator_entries(discriminator)
    return state, {key: rng.standard_normal(shape).astype(np.float32)
                   for key, shape in {**official.expected_shapes(d_entries), **d_unused}.items()}


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago (for TF_CONFIG in tests)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports
