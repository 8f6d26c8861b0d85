"""Config → chapter 4's networks (used by its commands and by chapter 5's VLMGAN+DFGAN)."""

from __future__ import annotations


from chapters.ch4_dfgan_ratgan import model


def sentence_dim(config) -> int:
    return 2 * config["text_hidden"]


def build_networks(config):
    """(generator, discriminator) of the run's variant, built by a dummy call."""
    import tensorflow as tf

    dim, size = sentence_dim(config), config["image_size"]
    if config["variant"] == "dfgan":
        generator = model.DfGanGenerator(config["noise_dim"], dim, config["generator_width"], size,
                                         config["condition_on_noise"])
        discriminator = model.DfGanDiscriminator(config["discriminator_width"], size, dim)
    else:
        generator = model.RatGanGenerator(config["noise_dim"], dim, config["generator_width"], size,
                                          config["controller_units"])
        discriminator = model.RatGanDiscriminator(config["discriminator_width"], size, dim, config["discriminator_head"])
    generator([tf.zeros((1, config["noise_dim"])), tf.zeros((1, dim))])
    discriminator([tf.zeros((1, size, size, 3)), tf.zeros((1, dim))])
    return generator, discriminator


def build_gan(config, text_encoder, gan_class=None, **gan_kwargs):
    """OneStageGan (or ``gan_class``, a subclass taking extra ``gan_kwargs``) for the run's variant."""
    generator, discriminator = build_networks(config)
    gan = (gan_class or model.OneStageGan)(generator, discriminator, text_encoder, config["mismatch"],
                                           config["penalty_step"], config["penalty_weight"], config["penalty_power"],
                                           config["ema_decay"], **gan_kwargs)
    gan.enable_ema(lambda: build_networks(config)[0])
    return gan


def sampling_noise(config, noise):
    """Sampling and evaluation noise: DF-GAN's truncation (0.88 × N(0,1) cut at ±2) when the profile asks."""
    from t2igan.sampling import truncate_noise

    return truncate_noise(noise, 2.0, config["truncation"]) if config["truncation"] else noise
