"""Chapter 5 (VLMGAN) on ``shapes``: every entry point end to end (networks and losses: test_chapter05_model.py;
birds-mini: test_chapter05_birds.py)."""

import json

import pytest

from conftest import run_chapter, smoke_args as common, tensorboard_tags as tags_of

CHAPTER = "ch5_vlmgan"


@pytest.fixture(scope="module")
def dfgan_run(workspace):
    run_dir = workspace / "dfgan"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--variant=dfgan", "--set=metrics_every_epochs=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DAMSM: held-out" in result.stdout and "VLM: held-out caption→image top-1" in result.stdout
    return run_dir


@pytest.fixture(scope="module")
def attngan_run(workspace, dfgan_run):
    """The AttnGAN variant reusing the DF-GAN run's DAMSM and VLM (same smoke encoder settings)."""
    run_dir = workspace / "attngan"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--variant=attngan"),
                         f"--set=damsm_dir={dfgan_run / 'text_encoder'}", f"--set=vlm_dir={dfgan_run / 'vlm'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VLM: held-out" not in result.stdout  # reused, not pretrained again
    return run_dir


def test_dfgan_variant_pretrains_both_matchers_and_logs_the_scores(dfgan_run):
    config = json.loads((dfgan_run / "config.json").read_text())
    assert (config["vlm_variant"], config["variant"], config["vlm_weight"], config["vvm_weight"]) == ("dfgan", "dfgan", 1.0, 1.0)
    metrics = json.loads((dfgan_run / "metrics.json").read_text())
    assert {"val_retrieval_top1", "val_msb_accuracy", "best_epoch"} <= set(metrics["pretrain_vlm"])
    assert metrics["train"]["steps"] == 4
    assert [h["epoch"] for h in metrics["train"]["metrics_during_training"]] == [1, 2]
    assert all(0.0 < h["vlms"] < 1.0 for h in metrics["train"]["metrics_during_training"])
    tags = tags_of(dfgan_run)
    for tag in ("loss/vlm", "loss/vvm", "vlm/vlm_local", "vlm/vlm_global", "vlm/vlm_general", "vvm/vvm_local",
                "vvm/vvm_general", "scores/scores_general_fake", "scores/scores_general_real", "scores/scores_local_real",
                "scores/scores_global_fake",
                "metrics/vlms", "metrics/r_precision", "metrics/oracle_fid", "hinge/d_mismatch"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    for name in ("text", "image", "msb"):
        assert (dfgan_run / "vlm" / f"{name}.weights.h5").exists()


@pytest.mark.slow
def test_attngan_variant_eval_reports_vlms_with_its_references(attngan_run, workspace):
    config = json.loads((attngan_run / "config.json").read_text())
    assert config["vlm_variant"] == "attngan" and config["vlm_weight"] == 5.0
    assert "vlm/vlm_general" in tags_of(attngan_run) and "loss/damsm" in tags_of(attngan_run)
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, attngan_run, "--variant=attngan", "--eval_samples=48"))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "vlms_references" in evaluated.stdout
    results = json.loads((attngan_run / "metrics.json").read_text())["eval"]["results"]
    for key in ("oracle_accuracy/colour", "r_precision", "vlms", "vlms_real_pairs", "vlms_mismatched_real_pairs"):
        assert 0.0 <= results[key] <= 1.0, (key, results)


def test_sample(dfgan_run, workspace):
    # (λ1 = λ2 = 0 reproducing the baseline step exactly is tested in test_chapter05_model.py.)
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, dfgan_run, "--variant=dfgan"),
                          "--text=a big blue star near the zorbly top", "--n=2")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert "zorbly" in sampled.stdout and sampled.stdout.strip().endswith(".png")


@pytest.mark.slow
def test_vlms_scores_a_chapter_4_run_with_this_runs_vlm(dfgan_run, workspace):
    other = workspace / "ch4-dfgan"
    trained = run_chapter("ch4_dfgan_ratgan", "train", *common(workspace, other, "--variant=dfgan"), "--epochs=1",
                          f"--set=damsm_dir={dfgan_run / 'text_encoder'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    scored = run_chapter(CHAPTER, "vlms", *common(workspace, dfgan_run, "--variant=dfgan"), f"--score_run={other}",
                         "--eval_samples=32")
    assert scored.returncode == 0, scored.stderr[-3000:]
    results = json.loads((dfgan_run / "scored" / "ch4-dfgan" / "metrics.json").read_text())["eval"]["results"]
    assert 0.0 < results["vlms"] < 1.0 and "oracle_fid" in results
    wrong = run_chapter(CHAPTER, "vlms", *common(workspace, dfgan_run, "--variant=dfgan"), f"--score_run={dfgan_run}")
    assert wrong.returncode != 0 and "scores chapter 3 or 4 runs" in wrong.stderr
