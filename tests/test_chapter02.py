"""Chapter 2 (StackGAN++ and StackGAN-v1): parameter counts, CA and the losses, every entry point end to end."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_chapter, smoke_args as common, tensorboard_tags as tags_of

from chapters.ch2_stackgan import model
from chapters.ch2_stackgan import profiles
from chapters.ch2_stackgan import stages  # noqa: E402

CHAPTER = "ch2_stackgan"


def trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.trainable_variables)


def non_trainable(network):
    return sum(int(np.prod(v.shape)) for v in network.non_trainable_variables)


def test_stackgan_plus_plus_paper_parameter_counts_match_the_official_code(monkeypatch):
    """Reference sheet §5.2–5.3 (measured on the official PyTorch classes): G 21,239,696; D64 5,723,906;
    D128 18,834,178; D256 71,269,122. Keras also lists the BatchNorm moving statistics, which PyTorch keeps
    as buffers: they are the non-trainable counts (G 71,104; D 2,816 / 5,888 / 12,032), excluded here."""
    for module in (stages, model):  # counting needs no orthogonal init (its QR decompositions take ~20 s)
        monkeypatch.setattr(module, "orthogonal", tf.keras.initializers.Zeros)
    paper = profiles.PROFILES["paper"]
    generator = model.TreeGenerator(paper["text_dim"], paper["noise_dim"], paper["condition_dim"],
                                    paper["generator_width"], paper["stages"], paper["base_size"], paper["residual_blocks"])
    images, mu, logvar = generator([tf.zeros((1, 100)), tf.zeros((1, 1024))])
    assert [tuple(x.shape) for x in images] == [(1, 64, 64, 3), (1, 128, 128, 3), (1, 256, 256, 3)]
    assert trainable(generator) == 21_239_696 and non_trainable(generator) == 71_104
    for size, (count, statistics) in {64: (5_723_906, 2_816), 128: (18_834_178, 5_888), 256: (71_269_122, 12_032)}.items():
        discriminator = stages.StageDiscriminator(size, paper["discriminator_width"], paper["condition_dim"])
        conditional, unconditional = discriminator([tf.zeros((2, size, size, 3)), tf.zeros((2, 128))])
        assert conditional.shape == (2,) and unconditional.shape == (2,)
        assert trainable(discriminator) == count and non_trainable(discriminator) == statistics, size


def test_stackgan_v1_paper_parameter_counts_match_the_reference():
    """Reference sheet §4.3–4.4 (counted from the TF 0.12 code): stage I G 14,264,192 / D 4,029,824;
    stage II G 26,290,080 / D 48,603,520 (BN moving statistics excluded)."""
    stage_one = model.StageOneGenerator(1024, 100, 128, 128, 64)
    (coarse,), _, _ = stage_one([tf.zeros((1, 100)), tf.zeros((1, 1024))])
    d_one = model.stage_one_discriminator(1024, 128, 64, 64)
    d_one([tf.zeros((2, 64, 64, 3)), tf.zeros((2, 1024))])
    stage_two = model.StageTwoGenerator(1024, 128, 128, 64, 256, 4)
    (fine,), _, _ = stage_two([coarse, tf.zeros((1, 1024))])
    d_two = model.StageTwoDiscriminator(1024, 128, 64, 256)
    d_two([tf.zeros((2, 256, 256, 3)), tf.zeros((2, 1024))])
    assert coarse.shape == (1, 64, 64, 3) and fine.shape == (1, 256, 256, 3)
    assert [trainable(n) for n in (stage_one, d_one, stage_two, d_two)] == [14_264_192, 4_029_824, 26_290_080, 48_603_520]
    assert [non_trainable(n) for n in (stage_one, d_one, stage_two, d_two)] == [39_168, 4_352, 11_712, 13_568]


def test_conditioning_augmentation_and_kl():
    rng = np.random.default_rng(0)
    text = tf.constant(rng.standard_normal((3, 12)), tf.float32)
    epsilon = tf.constant(rng.standard_normal((3, 4)), tf.float32)
    ca = stages.ConditioningAugmentation(4, "v2")
    c, mu, logvar = ca(text, noise=epsilon)
    h = ca.fc(text).numpy()  # Linear(D → 4c) → GLU → [μ, logvar]
    gated = h[:, :8] / (1 + np.exp(-h[:, 8:]))
    np.testing.assert_allclose(mu.numpy(), gated[:, :4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvar.numpy(), gated[:, 4:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.numpy(), gated[:, :4] + np.exp(0.5 * gated[:, 4:]) * epsilon.numpy(), rtol=1e-5, atol=1e-6)
    # KL(N(μ, σ²) ‖ N(0, 1)) averaged over dimensions; zero exactly at μ = 0, σ = 1.
    mu_, logvar_ = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    expected = np.mean(0.5 * (np.exp(logvar_) + mu_**2 - 1 - logvar_), axis=1)
    np.testing.assert_allclose(stages.kl_loss(tf.constant(mu_), tf.constant(logvar_)).numpy(), expected, rtol=1e-5)
    assert float(tf.reduce_max(tf.abs(stages.kl_loss(tf.zeros((2, 4)), tf.zeros((2, 4)))))) == 0.0
    # v1: LeakyReLU then [μ, log σ]; logvar returned as 2·log σ.
    ca_v1 = stages.ConditioningAugmentation(4, "v1")
    _, mu1, logvar1 = ca_v1(text, noise=epsilon)
    h1 = ca_v1.fc(text).numpy()
    h1 = np.where(h1 > 0, h1, 0.2 * h1)
    np.testing.assert_allclose(mu1.numpy(), h1[:, :4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logvar1.numpy(), 2 * h1[:, 4:], rtol=1e-5, atol=1e-6)


class FixedStage(tf.keras.Model):
    """A stage D whose logits are known: conditional = mean(x) + mean(μ), unconditional = 2·mean(x)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, inputs, training=False):
        images, condition = inputs
        mean = tf.reduce_mean(images, axis=[1, 2, 3])
        return self.scale * (mean + tf.reduce_mean(condition, axis=1)), self.scale * 2.0 * mean


def test_stackgan_plus_plus_discriminator_loss_follows_the_official_terms():
    """L_D = real (cond 1, uncond 1) + wrong (cond 0, uncond **1**) + fake (cond 0, uncond 0), plain sum."""
    gan = model.StackGanPlusPlus.__new__(model.StackGanPlusPlus)
    gan.uncond_weight = 1.0
    d = FixedStage()
    real, wrong, fake = (np.full((2, 8, 8, 3), v, np.float32) for v in (0.3, -0.2, 0.1))
    mu = np.full((2, 4), 0.05, np.float32)
    per_example, *_ = model.StackGanPlusPlus.discriminator_loss(gan, d, real, wrong, fake, mu)
    softplus = lambda x: np.log1p(np.exp(x))  # BCE(l, 1) = softplus(−l); BCE(l, 0) = softplus(l)
    expected = (softplus(-0.35) + softplus(-0.6) + softplus(-0.15) + softplus(0.4) + softplus(0.15) + softplus(0.2))
    np.testing.assert_allclose(per_example.numpy(), [expected] * 2, rtol=1e-5)
    gan.uncond_weight = 0.0  # without the unconditional loss: real + ½(wrong + fake)
    per_example, *_ = model.StackGanPlusPlus.discriminator_loss(gan, d, real, wrong, fake, mu)
    np.testing.assert_allclose(per_example.numpy(), [softplus(-0.35) + 0.5 * (softplus(-0.15) + softplus(0.15))] * 2, rtol=1e-5)


def test_colour_consistency_is_zero_for_equal_statistics_and_positive_otherwise():
    gan = model.StackGanPlusPlus.__new__(model.StackGanPlusPlus)
    gan.colour_weight = 50.0
    rng = np.random.default_rng(1)
    small = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    same = tf.image.resize(small, [16, 16], "nearest")  # same pixels, repeated: same mean and covariance
    assert float(tf.reduce_max(gan.colour_consistency([small, same]))) < 1e-5
    assert float(tf.reduce_min(gan.colour_consistency([small, same + 0.5]))) > 1.0


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
    assert grid.shape[:2] == (8 * 34 + 2, 8 * 34 + 2)  # 8 caption rows × (2 stages × 4 noise vectors) columns of 32 px
    tags = tags_of(v2_run)
    for tag in ("loss/discriminator", "loss/generator", "loss/kl", "loss/discriminator_16px", "loss/discriminator_32px",
                "loss/generator_32px", "score/real_wrong_32px", "samples/fixed_captions", "samples/captions"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"


def test_v2_sample_and_eval(v2_run, workspace):
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, v2_run), "--text=a large blue star", "--n=3")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    path = sampled.stdout.strip().splitlines()[-1]
    assert tf.io.decode_png(tf.io.read_file(path)).shape[:2] == (2 * 36, 2 * 104)  # 1 row × 3 images of 32 px, padding 2, ×2
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, v2_run))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = json.loads((v2_run / "metrics.json").read_text())["eval"]["results"]
    assert 0.0 <= results["oracle_accuracy/shape"] <= 1.0 and results["oracle_fid"] >= 0.0


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


@pytest.mark.parametrize("variant, replicas", [("v2", 2), ("v1", 1)])
def test_birds_mini_smoke_runs(shared_data, workspace, variant, replicas):
    result = run_chapter(CHAPTER, "train", "--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
                         f"--variant={variant}", f"--cpu_replicas={replicas}", f"--run_dir={workspace / ('birds-' + variant)}",
                         f"--data_root={workspace / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Missing images" in result.stdout and "train 60" in result.stdout
    assert f"{replicas} replica(s)" in result.stderr
