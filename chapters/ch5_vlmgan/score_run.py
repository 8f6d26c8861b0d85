"""``chapter5-vlms --score_run=RUN``: VLMS, oracle metrics and R-precision of a chapter 3 (AttnGAN) or
chapter 4 (DF-GAN / RAT-GAN) run, scored with this run's VLM, so the README's table compares models."""

from __future__ import annotations

import json
import os

import numpy as np

from chapters.ch3_attngan import build as attngan_build
from chapters.ch3_attngan import damsm
from chapters.ch4_dfgan_ratgan import build as dfgan_build
from chapters.ch5_vlmgan.build import vlms_extra
from t2igan.errors import UserError

SCORED_CHAPTERS = ("ch3_attngan", "ch4_dfgan_ratgan")


def score_run(other_path: str, run, config, index, vocabulary, vlm, options) -> None:
    """Evaluates ``other_path``'s generator on ``index``'s test captions into ``run/scored/<name>``, with this
    run's ``vlm`` for VLMS and the other run's own DAMSM for R-precision."""
    from t2igan.scoring import evaluate_run
    from t2igan.training.harness import restore_generator
    from t2igan.training.run import RunDirectory, owner_of

    config_path = os.path.join(other_path, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"--score_run: {config_path} does not exist; pass a chapter 3 or 4 run folder.")
    with open(config_path, encoding="utf-8") as file:
        other_config = json.load(file)
    owner = owner_of(other_config)
    if owner not in SCORED_CHAPTERS:
        raise UserError(f"{other_path} is a {owner!r} run; vlms scores chapter 3 or 4 runs.")
    other = RunDirectory(other_path, owner)
    other_vocabulary, other_damsm = damsm.for_run(other, other_config, index, options.data_root)
    encoders = other_damsm()
    if owner == "ch3_attngan":
        gan, width = attngan_build.build_gan(other_config, encoders), attngan_build.input_noise_dim(other_config)
    else:
        gan, width = dfgan_build.build_gan(other_config, encoders[0]), other_config["noise_dim"]
    restore_generator(other, gan)
    other_ids, other_lengths = damsm.test_ids(index, other_vocabulary, other_config["words_num"])
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    truncate = owner == "ch4_dfgan_ratgan" and other_config.get("truncation")

    def generate(example_indices, caption_indices, noise):
        noise = dfgan_build.sampling_noise(other_config, noise) if truncate else noise
        return np.asarray(gan.generate(noise, other_ids[example_indices, caption_indices],
                                       other_lengths[example_indices, caption_indices]))

    scored = RunDirectory(os.path.join(run.path, "scored", os.path.basename(os.path.normpath(other_path))), run.chapter)
    scored.create()
    evaluate_run(scored, other_config, index, generate, width, options.eval_samples, options.sample_seed,
                 options.data_root, generator_name=f"{owner} run {other_path}",
                 extra=vlms_extra(vlm, config, ids, lengths, options.sample_seed))
