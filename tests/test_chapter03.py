"""Chapter 3 (DAMSM + AttnGAN): every entry point end to end (networks and losses: test_chapter03_model.py)."""

import glob
import json

import pytest
import tensorflow as tf

from conftest import assert_same_final_losses, run_chapter, smoke_args as common, tensorboard_tags as tags_of

CHAPTER = "ch3_attngan"


@pytest.fixture(scope="module")
def smoke_run(workspace):
    run_dir = workspace / "run"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--set=metrics_every_epochs=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DAMSM: held-out caption→image top-1" in result.stdout
    return run_dir


def test_smoke_run_pretrains_damsm_then_trains_attngan(smoke_run):
    encoder = smoke_run / "text_encoder"
    for name in ("damsm_text.weights.h5", "damsm_image.weights.h5", "vocabulary.json", "complete.json"):
        assert (encoder / name).exists(), name
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert "best_val_retrieval_top1" in metrics["pretrain"] and metrics["train"]["steps"] == 4
    tags = tags_of(smoke_run)
    for tag in ("loss/damsm", "loss/kl", "loss/d_loss_32", "samples/fixed_captions", "attention/words",
                "attention/captions", "metrics/r_precision", "metrics/oracle_accuracy_colour"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert glob.glob(str(smoke_run / "logs" / "damsm" / "train" / "events.*"))
    # DAMSM validation: each word's attention over the image regions, per epoch (pretrain_DAMSM.py's maps).
    damsm_images = {}
    for path in glob.glob(str(smoke_run / "logs" / "damsm" / "attention" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "damsm/word_attention":
                    damsm_images[event.step] = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).shape
    assert sorted(damsm_images) == [1]  # smoke: one DAMSM epoch
    height, width, _ = damsm_images[1]
    assert height > 32 * 3 and width > 32 * 3  # 4 rows, the image + one map per word


def test_sample_with_attention_maps_and_eval(smoke_run, workspace):
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, smoke_run), "--text=a big blue star near the zorbly top",
                          "--n=2", "--attention")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert "zorbly" in sampled.stdout and sampled.stdout.strip().endswith("-attention.png")
    attention = tf.io.decode_png(tf.io.read_file(sampled.stdout.strip().splitlines()[-1]))
    assert attention.shape[1] > attention.shape[0]  # image + one map per known word, per row
    refused = run_chapter(CHAPTER, "sample", *common(workspace, smoke_run), "--text=zorbly quux")
    assert refused.returncode == 2 and "None of the words" in refused.stderr
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, smoke_run))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "oracle_accuracy/shape" in json.loads((smoke_run / "metrics.json").read_text())["eval"]["results"]


@pytest.mark.slow
def test_birds_mini_with_the_official_vocabulary_on_two_replicas(shared_data, workspace):
    run_dir = workspace / "birds"
    result = run_chapter(CHAPTER, "train", "--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
                         f"--metadata_dir={shared_data}/birds-metadata", "--cpu_replicas=2", f"--run_dir={run_dir}",
                         f"--data_root={workspace / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Missing images" in result.stdout and "2 replica(s)" in result.stderr
    vocabulary = json.loads((run_dir / "text_encoder" / "vocabulary.json").read_text())["words"]
    assert len(vocabulary) == 5450 and vocabulary[0] == "<end>"


@pytest.mark.slow  # one more smoke run, compiled with XLA: make test-slow / test-all (CI)
def test_attngan_trains_under_xla_to_the_losses_of_the_plain_graph(smoke_run, workspace):
    """``--jit_compile --set=pretrain_jit_compile=true``: the DAMSM pretraining and the train step with its DAMSM loss compile (chapter 2's stage
    resize once had no XLA kernel; the pretraining once went to NaN at its first step, through the cosine's gradient
    at padded words) and train to the same losses as without XLA (float rounding aside)."""
    run_dir = workspace / "run_xla"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir, "--set=metrics_every_epochs=2", "--jit_compile",
                                                  "--set=pretrain_jit_compile=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    expected, pretrained = (json.loads((folder / "metrics.json").read_text())["pretrain"] for folder in (smoke_run, run_dir))
    # A seeded dropout draws other masks under XLA, so the training losses differ (by 7 %: the sign that the
    # pretraining was compiled); the held-out ones, without dropout, agree.
    assert pretrained["loss"] != expected["loss"]
    for name in ("val_loss", "val_words_loss0", "val_sentence_loss1"):
        assert pretrained[name] == pytest.approx(expected[name], rel=2e-2), name
    assert_same_final_losses(smoke_run, run_dir)
