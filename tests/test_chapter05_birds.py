"""Chapter 5 (VLMGAN) smoke run on the real birds subset (birds-mini of the shared data, $T2IGAN_SHARED_DATA), on two
CPU replicas (MirroredStrategy)."""

import json

import pytest

from conftest import run_chapter

CHAPTER = "ch5_vlmgan"


@pytest.mark.slow
def test_birds_mini_on_two_replicas(shared_data, tmp_path):
    """VLMGAN (DF-GAN) on real birds on 2 replicas: DAMSM and the VLM pretrain, the GAN trains with the VLM
    losses. (The AttnGAN variant reusing another run's DAMSM and VLM is tested on shapes: same data path.)"""
    birds = ["--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
             f"--metadata_dir={shared_data}/birds-metadata", f"--data_root={tmp_path / 'data'}"]
    dfgan = tmp_path / "birds-dfgan"
    result = run_chapter(CHAPTER, "train", *birds, "--variant=dfgan", "--cpu_replicas=2", f"--run_dir={dfgan}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stderr and "VLM: held-out" in result.stdout
    metrics = json.loads((dfgan / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and metrics["train"]["final"]["vlm"] > 0.0
