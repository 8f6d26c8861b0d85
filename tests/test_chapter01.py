"""Chapter 1 (GAN-INT-CLS): every entry point end to end (the networks and losses are in
``test_chapter01_model.py``)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_chapter, smoke_args as common

from chapters.ch1_gan_int_cls import profiles

CHAPTER = "ch1_gan_int_cls"


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def smoke_run(workspace):
    run_dir = workspace / "run"
    result = run_chapter(CHAPTER, "train", "--profile=smoke", f"--run_dir={run_dir}", f"--data_root={workspace / 'data'}",
                         "--set=metrics_every_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_smoke_training_writes_a_complete_run_folder(smoke_run):
    config = json.loads((smoke_run / "config.json").read_text())
    assert config["chapter"] == CHAPTER and config["dataset"] == "shapes" and config["profile"] == "smoke"
    assert (smoke_run / "text_encoder" / "complete.json").exists()
    assert tf.train.latest_checkpoint(str(smoke_run / "checkpoints")).endswith("ckpt-2")
    assert sorted(os.listdir(smoke_run / "samples"))[:2] == ["epoch_0001.png", "epoch_0002.png"]
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and "d_loss" in metrics["train"]["final"]
    # The factor that rescales the stored caption embeddings to unit RMS (normalise_text_embeddings) is kept.
    scale = json.loads((smoke_run / "text_encoder" / "complete.json").read_text())["embedding_scale"]
    stored = np.load(smoke_run / "text_encoder" / "embeddings-train.npy").astype(np.float32)
    used = stored[np.abs(stored).sum(axis=-1) > 0]
    assert np.sqrt(np.mean((scale * used) ** 2)) == pytest.approx(1.0, rel=1e-2)


def test_tensorboard_has_scalars_sample_grid_and_captions(smoke_run):
    tags = set()
    for path in glob.glob(str(smoke_run / "logs" / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    for tag in ("loss/d_loss", "loss/g_loss", "score/d_wrong", "learning_rate/generator",
                "samples/fixed_captions", "samples/captions", "metrics/oracle_fid", "metrics/oracle_accuracy_all"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"


def test_in_training_metrics_every_epoch(smoke_run):
    """The PeriodicMetrics callback (smoke: every epoch, 32 fixed test captions): oracle FID in TensorBoard
    at both epochs, and in metrics.json; the same numbers in both places."""
    fids = {}
    for path in glob.glob(str(smoke_run / "logs" / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "metrics/oracle_fid":
                    fids[event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(fids) == [2, 4] and all(np.isfinite(v) and v > 0 for v in fids.values())
    history = json.loads((smoke_run / "metrics.json").read_text())["train"]["metrics_during_training"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["oracle_fid"] for h in history] == pytest.approx([fids[2], fids[4]], rel=1e-5)
    assert all(0.0 <= h["oracle_accuracy_colour"] <= 1.0 for h in history)


def test_sample_writes_a_grid_and_lists_unknown_words(smoke_run, workspace):
    result = run_chapter(CHAPTER, "sample", *common(workspace, smoke_run), "--text=a small red circle near the zorbly top",
                         "--n=3", f"--output={workspace / 'grid.png'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zorbly" in result.stdout and str(workspace / "grid.png") in result.stdout
    assert (workspace / "grid.png").stat().st_size > 0
    interpolation = run_chapter(CHAPTER, "sample", *common(workspace, smoke_run), "--text=a red circle",
                                "--interpolate_to=a blue square", "--n=2", f"--output={workspace / 'int.png'}")
    assert interpolation.returncode == 0 and (workspace / "int.png").exists()


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("qwxz blorf", "None of the words"),
    (" ".join(["circle"] * 1000), "at most"),
])
def test_sample_refuses_bad_captions(smoke_run, workspace, text, message):
    result = run_chapter(CHAPTER, "sample", *common(workspace, smoke_run), f"--text={text}")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_eval_reports_oracle_accuracy_with_its_protocol(smoke_run, workspace):
    result = run_chapter(CHAPTER, "eval", *common(workspace, smoke_run))
    assert result.returncode == 0, result.stderr[-2000:]
    for text in ("Evaluation protocol", "generated_images", "oracle_accuracy/colour", "oracle_accuracy/shape", "oracle_fid"):
        assert text in result.stdout
    evaluation = json.loads((smoke_run / "metrics.json").read_text())["eval"]
    assert evaluation["protocol"]["generated_images"] == 160  # 16 test images × 10 captions
    assert 0.0 <= evaluation["results"]["oracle_accuracy/colour"] <= 1.0
    assert "Commonest mistakes" in result.stdout
    for head in ("shape", "colour", "size", "position"):  # every stated attribute is one count of its confusion matrix
        matrix = np.asarray(evaluation["confusion"][head]["stated_by_drawn"])
        assert matrix.sum() == evaluation["protocol"]["counts"][head]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(evaluation["results"][f"oracle_accuracy/{head}"])


@pytest.mark.parametrize("args, message", [
    (["--dataset=imagenet"], "Unknown data set"),
    (["--profile=huge"], "profile"),
    (["--n=abc"], "n"),
    (["--no_such_flag=1"], "unknown command line flag 'no_such_flag'"),
    (["--set", "batch_size=big"], "expected a int"),
    (["--set", "no_such_thing=1"], "no such setting"),
])
def test_bad_options_get_clear_errors(workspace, args, message):
    result = run_chapter(CHAPTER, "train", "--profile=smoke", f"--run_dir={workspace / 'bad'}",
                         f"--data_root={workspace / 'data'}", *args)
    assert result.returncode == 2 and message.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr and "FATAL" not in result.stderr


def test_a_benchmark_refuses_a_trained_run_folder(smoke_run, workspace):
    """train --time_steps writes checkpoints of its own: not into a training's folder (its next resume would
    start from them). The other way round: tests/test_benchmark.py."""
    result = run_chapter(CHAPTER, "train", "--profile=smoke", f"--run_dir={smoke_run}",
                         f"--data_root={workspace / 'data'}", "--set=metrics_every_epochs=1", "--time_steps=2")
    assert result.returncode == 2 and "needs a run folder without any" in result.stderr and "Traceback" not in result.stderr


def test_missing_data_folder_and_run_folder_of_another_chapter(workspace):
    missing = run_chapter(CHAPTER, "train", "--profile=smoke", "--dataset=birds", f"--data_dir={workspace / 'nowhere'}",
                          f"--run_dir={workspace / 'birds-missing'}")
    assert missing.returncode == 2 and "nowhere" in missing.stderr
    foreign = workspace / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"chapter": "ch2_stackgan"}))
    result = run_chapter(CHAPTER, "train", *common(workspace, foreign))
    assert result.returncode == 2 and "belongs to 'ch2_stackgan'" in result.stderr


@pytest.mark.slow
def test_nan_losses_stop_training_and_keep_the_last_good_checkpoint(smoke_run, workspace):
    run_dir = workspace / "nan"
    first = run_chapter(CHAPTER, "train", *common(workspace, run_dir), "--epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    config_before = (run_dir / "config.json").read_text()
    # An absurd learning rate overflows the weights within a step or two.
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir), "--epochs=3", "--set", "learning_rate_discriminator=1e38",
                         "--set", "learning_rate_generator=1e38")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "last good checkpoint" in result.stderr
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-1")
    # Issue 17, finding 3: nothing was saved, so config.json still describes ckpt-1, not lr 1e38.
    assert (run_dir / "config.json").read_text() == config_before


def test_a_diverged_pretraining_stops_and_keeps_no_encoder(workspace):
    """A NaN in the text encoder's pretraining (here an absurd rate) stops it with exit code 3 and the loss's
    name, and saves nothing: the encoder with NaN weights was once kept (its retrieval top-1 still reads a
    number) and the GAN then failed at its first step. One guard serves chapters 1, 3 and 5
    (``t2igan.training.pretrain``)."""
    run_dir = workspace / "nan-pretraining"
    result = run_chapter(CHAPTER, "pretrain", *common(workspace, run_dir), "--set=pretrain_learning_rate=1e30")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "sje_loss became nan" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "text_encoder").exists() and not (run_dir / "config.json").exists()


@pytest.mark.slow
def test_killed_training_resumes_from_the_last_checkpoint(workspace):
    run_dir = workspace / "killed"
    args = [sys.executable, "-m", f"chapters.{CHAPTER}", "train", *common(workspace, run_dir), "--epochs=40"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) >= 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = int(tf.train.latest_checkpoint(str(run_dir / "checkpoints")).rsplit("-", 1)[1])
    assert killed_at < 40
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir), "--epochs=40")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"(epoch {killed_at})" in result.stderr  # "Resuming from …/ckpt-k (epoch k)."
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-40")
    steps = json.loads((run_dir / "metrics.json").read_text())["train"]["steps"]
    assert steps == 40 * profiles.PROFILES["smoke"]["steps_per_epoch"]  # the optimizer step count carried over


def test_birds_mini_trains_and_reports_missing_images(shared_data, workspace):
    # One replica: chapter 1 under 2 replicas is tests/test_distribute.py's (same weights as 1 replica); tracing
    # the 2-replica step here cost 25 s of the suite's time
    result = run_chapter(CHAPTER, "train", "--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
                         f"--run_dir={workspace / 'birds'}", f"--data_root={workspace / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Missing images" in result.stdout and "train 60" in result.stdout and "test 2724" in result.stdout
    assert "1 replica(s)" in result.stderr
