"""Config → chapter 5's GANs: chapter 3's AttnGAN or chapter 4's DF-GAN as their VLMGAN subclasses
(``model.VlmAttnGan``, ``model.VlmDfGan``), their noise, and the VLMS metric for ``evaluate_run``."""

from __future__ import annotations

import numpy as np

from chapters.ch3_attngan import build as attngan_build
from chapters.ch4_dfgan_ratgan import build as dfgan_build
from chapters.ch5_vlmgan import model

TITLES = {"attngan": "VLMGAN+AttnGAN", "dfgan": "VLMGAN+DFGAN"}


def input_noise_dim(config) -> int:
    return attngan_build.input_noise_dim(config) if config["vlm_variant"] == "attngan" else config["noise_dim"]


def check_networks(config):
    """The GAN's networks and the MSB, built once and thrown away: a setting they cannot take fails before
    the DAMSM and the VLM pretrain."""
    import tensorflow as tf

    if config["vlm_variant"] == "attngan":
        attngan_build.check_networks(config)
    else:
        dfgan_build.build_networks(config)
    width, words = config["damsm_dim"], config["words_num"]  # the MSB with one region: its own rules only
    msb = model.MatchingScoreBlock(1, words, width, config["msb_depth"], config["msb_heads"], config["msb_ffn"],
                                   config["msb_dropout"])
    msb([tf.zeros((1, 1, width)), tf.zeros((1, width)), tf.zeros((1, words, width)), tf.zeros((1, width)),
         tf.ones((1, words), tf.bool)])


def build_gan(config, damsm_encoders, vlm):
    text, image, msb = vlm
    vlm_kwargs = dict(vlm_text_encoder=text, vlm_image_encoder=image, msb=msb, vvm_weight=config["vvm_weight"],
                      vlm_weight=config["vlm_weight"], vlm_gammas=(config["gamma1"], config["gamma2"], config["gamma3"]),
                      local_form=config["vlm_local_form"])
    if config["vlm_variant"] == "attngan":
        return attngan_build.build_gan(config, damsm_encoders, model.VlmAttnGan, **vlm_kwargs)
    return dfgan_build.build_gan(config, damsm_encoders[0], model.VlmDfGan, **vlm_kwargs)


def sampling_noise(config, noise):
    """DF-GAN's truncated noise for the DF-GAN variant; AttnGAN samples plain N(0, 1)."""
    return dfgan_build.sampling_noise(config, noise) if config["vlm_variant"] == "dfgan" else noise


def vlms_extra(vlm, config, ids, lengths, seed):
    """``evaluate_run``'s ``extra`` form: VLMS (mean S_general) of generated images and their captions."""
    text, image, msb = vlm

    def measure(plan, images):
        chosen = tuple(np.array(p) for p in zip(*plan))
        scores = model.vlm_score(msb, text, image, images, ids[chosen], lengths[chosen], gamma1=config["gamma1"],
                                 gamma2=config["gamma2"], local_form=config["vlm_local_form"])
        protocol = {"vlms": f"mean MSB score of {scores['pairs']} (generated image, its caption) pairs under this "
                            f"run's frozen VLM (seed {seed}); not comparable with the paper's values"}
        return {"vlms": scores["vlms"], "vlm_s_global": scores["s_global"], "vlm_s_local": scores["s_local"]}, protocol

    return measure


def real_pair_references(vlm, config, real_images, ids, lengths, plan, seed):
    """VLMS of real test pairs (upper reference) and of mismatched real pairs (lower reference);
    ``real_images``: the test split, uint8 at the VLM's input size."""
    text, image, msb = vlm
    real = real_images.astype(np.float32) / 127.5 - 1.0
    examples, captions = (np.array(p) for p in zip(*plan))
    pairs = (real[examples], ids[examples, captions], lengths[examples, captions])
    kwargs = dict(gamma1=config["gamma1"], gamma2=config["gamma2"], local_form=config["vlm_local_form"])
    matched = model.vlm_score(msb, text, image, *pairs, **kwargs)
    mismatched = model.vlm_score(msb, text, image, *pairs, shuffle_seed=seed, **kwargs)
    return {"vlms_real_pairs": matched["vlms"], "vlms_mismatched_real_pairs": mismatched["vlms"]}
