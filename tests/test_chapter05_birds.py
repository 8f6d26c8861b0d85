"""Chapter 5 (VLMGAN) smoke runs on the real birds subset (birds-mini of the shared data, $T2IGAN_SHARED_DATA): both variants, one on
two CPU replicas (MirroredStrategy), the second reusing the first's DAMSM and VLM."""

import json

from conftest import run_chapter

CHAPTER = "ch5_vlmgan"


def test_birds_mini_both_variants_one_on_two_replicas(shared_data, tmp_path):
    birds = ["--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
             f"--metadata_dir={shared_data}/birds-metadata", f"--data_root={tmp_path / 'data'}"]
    dfgan = tmp_path / "birds-dfgan"
    result = run_chapter(CHAPTER, "train", *birds, "--variant=dfgan", "--cpu_replicas=2", f"--run_dir={dfgan}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stderr and "VLM: held-out" in result.stdout
    attngan = tmp_path / "birds-attngan"
    result = run_chapter(CHAPTER, "train", *birds, "--variant=attngan", f"--run_dir={attngan}",
                         f"--set=damsm_dir={dfgan / 'text_encoder'}", f"--set=vlm_dir={dfgan / 'vlm'}")
    assert result.returncode == 0, result.stderr[-3000:]
    for run_dir in (dfgan, attngan):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["train"]["steps"] == 4 and metrics["train"]["final"]["vlm"] > 0.0
