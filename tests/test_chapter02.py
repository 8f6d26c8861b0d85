"""Chapter 2 (StackGAN++ and StackGAN-v1): every entry point end to end (the networks and losses are in
``test_chapter02_model.py``)."""

import json

import pytest
import tensorflow as tf

from conftest import assert_same_final_losses, run_chapter, smoke_args as common, tensorboard_tags as tags_of

CHAPTER = "ch2_stackgan"


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def v2_run(workspace):
    run_dir = workspace / "v2"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_v2_smoke_run_logs_every_stage_and_samples_side_by_side(v2_run):
    config = json.loads((v2_run / "config.json").read_text())
    assert config["chapter"] == CHAPTER and config["variant"] == "v2"
    assert tf.train.latest_checkpoint(str(v2_run / "checkpoints")).endswith("ckpt-2")
    grid = tf.io.decode_png(tf.io.read_file(str(v2_run / "samples" / "epoch_0002.png")))
    # 8 caption rows × (2 stages × 4 noise vectors) columns of 32 px shown at 64, a caption strip over each row
    assert grid.shape[1] == 8 * 66 + 2 and grid.shape[0] > 8 * 66 + 2
    tags = tags_of(v2_run)
    for tag in ("loss/d_loss", "loss/g_loss", "loss/kl", "loss/d_loss_16", "loss/d_loss_32",
                "loss/g_loss_32", "score/d_wrong_32", "samples/fixed_captions", "samples/captions"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"


def test_v2_sample_and_eval(v2_run, workspace):
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, v2_run), "--text=a large blue star", "--n=3")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    path = sampled.stdout.strip().splitlines()[-1]
    shape = tf.io.decode_png(tf.io.read_file(path)).shape
    assert shape[1] == 3 * 130 + 2 and shape[0] > 132  # 1 row × 3 images of 32 px shown at 128, the caption above
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, v2_run))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = json.loads((v2_run / "metrics.json").read_text())["eval"]["results"]
    assert 0.0 <= results["oracle_accuracy/shape"] <= 1.0 and results["oracle_fid"] >= 0.0


@pytest.mark.slow
def test_v1_smoke_trains_stage_one_then_stage_two_and_evaluates(workspace):
    run_dir = workspace / "v1"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--variant=v1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage I (16 px)" in result.stdout and "stage II (16 → 32 px)" in result.stdout
    for stage in ("stage1", "stage2"):
        assert tf.train.latest_checkpoint(str(run_dir / "checkpoints" / stage)) is not None
        assert (run_dir / "samples" / stage).is_dir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_stage1"]["epochs"] == 1 and metrics["train_stage2"]["epochs"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["variant"] == "v1" and config["captions_per_sample"] == 4 and config["ema_decay"] == 0.0
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, run_dir))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    # A v1 run folder cannot be continued as v2 (checked where the config is written).
    from t2igan.training.run import RunDirectory

    with pytest.raises(ValueError, match="variant='v1'"):
        RunDirectory(str(run_dir), CHAPTER).write_config(dict(config, variant="v2"))


# StackGAN-v1 is trained on shapes above (stage I, then II); on real data the v2 run on 2 replicas stands for both
@pytest.mark.slow
@pytest.mark.parametrize("variant, replicas", [("v2", 2)])
def test_birds_mini_smoke_runs(shared_data, workspace, variant, replicas):
    result = run_chapter(CHAPTER, "train", "--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
                         f"--variant={variant}", f"--cpu_replicas={replicas}", f"--run_dir={workspace / ('birds-' + variant)}",
                         f"--data_root={workspace / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Missing images" in result.stdout and "train 60" in result.stdout
    assert f"{replicas} replica(s)" in result.stderr


def test_course_variants_resolve_their_own_schedules():
    """v2's course trains 20 epochs with EMA 0.99 (README §9); v1 keeps its 30 epochs and no EMA,
    and ``--epochs`` still wins over the variant's value."""
    from chapters.ch2_stackgan.profiles import PROFILES, variant_settings
    from t2igan.config import resolve_config

    def resolved(variant, epochs=None):
        return resolve_config(PROFILES, "course", "shapes", [], epochs, variant_settings(variant, "course"))

    assert (resolved("v2")["epochs"], resolved("v2")["ema_decay"]) == (20, 0.99)
    assert (resolved("v1")["epochs"], resolved("v1")["ema_decay"], resolved("v1")["stage_one_epochs"]) == (30, 0.0, 10)
    assert resolved("v1", epochs=12)["epochs"] == 12
    assert resolve_config(PROFILES, "paper", "shapes", [], None, variant_settings("v2", "paper"))["ema_decay"] == 0.999


@pytest.mark.slow  # one more smoke run, compiled with XLA: make test-slow / test-all (CI)
def test_v2_trains_under_xla_to_the_losses_of_the_plain_graph(v2_run, workspace):
    """``--jit_compile``: the whole train step compiles (the stage resize once had no XLA kernel) and trains to
    the same losses as without XLA (float rounding aside)."""
    run_dir = workspace / "v2_xla"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--jit_compile"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_final_losses(v2_run, run_dir)
