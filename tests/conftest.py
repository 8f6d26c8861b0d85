"""Shared fixtures. Real data lives beside the project (../shared/data) or in $T2IGAN_SHARED_DATA."""

import os
import subprocess
import sys

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


def run_chapter(chapter: str, *args: str, timeout: int = 240, env=None) -> subprocess.CompletedProcess:
    """``python -m chapters.<chapter> <args>`` from the repository root; returns the finished process."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", f"chapters.{chapter}", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment)
