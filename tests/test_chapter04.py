"""Chapter 4 (DF-GAN, RAT-GAN): every entry point end to end (networks and losses: test_chapter04_model.py)."""

import json

import pytest

from conftest import run_chapter, smoke_args as common, tensorboard_tags as tags_of

CHAPTER = "ch4_dfgan_ratgan"


@pytest.fixture(scope="module")
def ratgan_run(workspace):
    run_dir = workspace / "ratgan"
    result = run_chapter(CHAPTER, "train", *common(workspace, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DAMSM: held-out caption→image top-1" in result.stdout
    return run_dir


def test_ratgan_smoke_run_pretrains_damsm_and_logs_its_views(ratgan_run):
    config = json.loads((ratgan_run / "config.json").read_text())
    assert (config["variant"], config["mismatch"], config["penalty_step"]) == ("ratgan", "shift", "separate")
    metrics = json.loads((ratgan_run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and "best_val_retrieval_top1" in metrics["pretrain"]
    tags = tags_of(ratgan_run)
    for tag in ("loss/d_loss", "loss/g_loss", "loss/gradient_penalty", "hinge/d_real", "hinge/d_fake",
                "hinge/d_mismatch", "samples/fixed_captions", "attention/discriminator",
                "modulation/gamma_std/affine_00", "modulation/beta_mean/affine_11"):  # 16 px: 3 blocks × 4
        assert tag in tags, f"{tag} missing from {sorted(tags)}"


def test_ratgan_sample_with_attention_and_eval(ratgan_run, workspace):
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, ratgan_run), "--text=a big blue star near the zorbly top",
                          "--n=2", "--attention")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert "zorbly" in sampled.stdout and sampled.stdout.strip().endswith("-attention.png")
    evaluated = run_chapter(CHAPTER, "eval", *common(workspace, ratgan_run))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    results = json.loads((ratgan_run / "metrics.json").read_text())["eval"]["results"]
    assert {"oracle_accuracy/colour", "r_precision"} <= set(results)


@pytest.mark.slow
def test_dfgan_reuses_the_damsm_of_another_run(ratgan_run, workspace):
    run_dir = workspace / "dfgan"
    result = run_chapter(CHAPTER, "train", "--variant=dfgan", *common(workspace, run_dir),
                         f"--set=damsm_dir={ratgan_run / 'text_encoder'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DAMSM: held-out" not in result.stdout  # reused, not pretrained again
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["variant"], config["mismatch"], config["penalty_step"]) == ("dfgan", "roll", "joint")
    assert "attention/discriminator" not in tags_of(run_dir) and "modulation/gamma_std/affine_00" in tags_of(run_dir)
    sampled = run_chapter(CHAPTER, "sample", *common(workspace, run_dir), "--text=a small red circle", "--n=2")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    resumed = run_chapter(CHAPTER, "train", "--variant=ratgan", *common(workspace, run_dir))
    assert resumed.returncode != 0 and "variant" in resumed.stderr  # one run folder, one variant


@pytest.mark.slow
def test_birds_mini_on_two_replicas(shared_data, workspace):
    """RAT-GAN on real birds with the official vocabulary, on 2 replicas (DF-GAN reusing a DAMSM is tested on
    shapes above: the data path is the same)."""
    birds = ["--profile=smoke", "--dataset=birds", f"--data_dir={shared_data}/birds-mini",
             f"--metadata_dir={shared_data}/birds-metadata", f"--data_root={workspace / 'data'}"]
    ratgan = workspace / "birds-ratgan"
    result = run_chapter(CHAPTER, "train", *birds, "--cpu_replicas=2", f"--run_dir={ratgan}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stderr
    vocabulary = json.loads((ratgan / "text_encoder" / "vocabulary.json").read_text())["words"]
    assert len(vocabulary) == 5450  # the official birds vocabulary
    assert json.loads((ratgan / "metrics.json").read_text())["train"]["steps"] == 4

    # Issue 20: a released DF-GAN file (synthetic: the official names, nesting and a DataParallel prefix, as
    # the .npz of the convert command) imports into a run folder that sample and eval use; train refuses it.
    import numpy as np

    from chapters.ch4_dfgan_ratgan.build import build_networks
    from chapters.ch4_dfgan_ratgan.profiles import PROFILES, VARIANTS
    from t2igan.config import resolve_config
    from conftest import dfgan_synthetic_release as synthetic_checkpoint

    config = dict(resolve_config(PROFILES, "smoke", "birds", [], None, VARIANTS["smoke"]["dfgan"]), variant="dfgan")
    release = {key.replace("model.netG.", "model.netG.module."): value
               for key, value in synthetic_checkpoint(*build_networks(config)).items()}
    np.savez(workspace / "state_epoch_600.npz", **release)
    imported = workspace / "birds-dfgan-imported"
    dfgan = [*birds, "--variant=dfgan", f"--run_dir={imported}"]
    result = run_chapter(CHAPTER, "import", *dfgan, f"--checkpoint={workspace / 'state_epoch_600.npz'}",
                         f"--set=damsm_dir={ratgan / 'text_encoder'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Imported state_epoch_600.npz (DF-GAN, nf 4, 16 px, epoch 600)" in result.stdout
    record = json.loads((imported / "imported.json").read_text())
    assert record["epoch"] == 600 and record["checkpoint"]["sha256"]
    sampled = run_chapter(CHAPTER, "sample", *dfgan, "--text=a small bird with a red head", "--n=2")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    evaluated = run_chapter(CHAPTER, "eval", *dfgan)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "r_precision" in json.loads((imported / "metrics.json").read_text())["eval"]["results"]
    refused = run_chapter(CHAPTER, "train", *dfgan)
    assert refused.returncode == 2 and "holds an imported official model" in refused.stderr

    # RAT-GAN's release: netG_NNN.pth and, optionally, netD_NNN.pth (here the repository HEAD's plain head,
    # which the import must match with --set discriminator_head=plain); its D attention needs the paper head.
    from conftest import ratgan_synthetic_release

    config = dict(resolve_config(PROFILES, "smoke", "birds", ["discriminator_head=plain"], None,
                                 VARIANTS["smoke"]["ratgan"]), variant="ratgan")
    generator_state, discriminator_state = ratgan_synthetic_release(*build_networks(config))
    np.savez(workspace / "netG_500.npz", **generator_state)
    np.savez(workspace / "netD_500.npz", **discriminator_state)
    imported = workspace / "birds-ratgan-imported"
    ratgan_imported = [*birds, f"--run_dir={imported}", f"--set=damsm_dir={ratgan / 'text_encoder'}"]
    release = [f"--checkpoint={workspace / 'netG_500.npz'}", f"--discriminator_checkpoint={workspace / 'netD_500.npz'}"]
    mismatch = run_chapter(CHAPTER, "import", *ratgan_imported, *release)
    assert mismatch.returncode == 2 and "discriminator_head plain (the run has attention)" in mismatch.stderr
    assert not (imported / "checkpoints").exists()  # refused before anything was written
    result = run_chapter(CHAPTER, "import", *ratgan_imported, *release, "--set=discriminator_head=plain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Imported netG_500.npz (RAT-GAN, nf 4, 16 px, epoch 500)" in result.stdout
    record = json.loads((imported / "imported.json").read_text())
    assert record["discriminator"]["revision"].startswith("repository HEAD")
    sampled = run_chapter(CHAPTER, "sample", *birds, f"--run_dir={imported}", "--text=a small bird", "--n=2",
                          "--attention")
    assert sampled.returncode == 2 and "this run has the plain head" in sampled.stderr  # not silently skipped


@pytest.mark.slow  # the 256² benchmark command: make test-slow / test-all (CI)
def test_benchmark_command_times_steps():
    result = run_chapter(CHAPTER, "benchmark", "--profile=smoke", "--benchmark_batch=2", "--benchmark_steps=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "per training step" in result.stdout and "ratgan (smoke" in result.stdout
    assert "tf.function" in result.stdout  # the smoke profile does not compile with XLA; --jit_compile does
    compiled = run_chapter(CHAPTER, "benchmark", "--profile=smoke", "--benchmark_batch=2", "--benchmark_steps=1",
                           "--jit_compile")
    assert compiled.returncode == 0 and "XLA" in compiled.stdout, compiled.stderr[-2000:]
