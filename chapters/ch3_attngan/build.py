"""Config → chapter 3's networks (used by its commands and by chapter 5's VLMGAN+AttnGAN)."""

from __future__ import annotations

from chapters.ch2_stackgan.stages import check_stage_sizes
from chapters.ch3_attngan import model

def input_noise_dim(config) -> int:
    """The width of a pipeline noise row: z and the CA noise ε."""
    return config["noise_dim"] + config["condition_dim"]

def build_generator(config, text_dim):
    """The configured AttnGAN generator, built by a dummy call (``text_dim``: the DAMSM feature width)."""
    import tensorflow as tf

    network = model.AttnGanGenerator(config["noise_dim"], config["condition_dim"], config["generator_width"],
                                     config["stages"], config["base_size"], config["residual_blocks"],
                                     config["faithful_mask_bug"])
    network([tf.zeros((2, config["noise_dim"])), tf.zeros((2, text_dim)), tf.zeros((2, 3, text_dim)),
             tf.ones((2, 3), tf.bool)])
    return network

def build_discriminators(config, sizes, dim):
    """One discriminator per stage size, built by a dummy call."""
    import tensorflow as tf

    discriminator = model.Discriminators(sizes, config["discriminator_width"], dim)
    discriminator([[tf.zeros((2, s, s, 3)) for s in sizes], tf.zeros((2, dim))])
    return discriminator


def check_networks(config):
    """G and the stage Ds, built once and thrown away: a setting they cannot take fails before DAMSM pretrains."""
    check_stage_sizes(config)
    dim = 2 * config["text_hidden"]
    build_discriminators(config, build_generator(config, dim).sizes, dim)


def build_gan(config, encoders, gan_class=None, **gan_kwargs):
    """AttnGAN (or ``gan_class``, a subclass taking extra ``gan_kwargs``) with its generator, the EMA copy,
    the stage discriminators and the frozen DAMSM ``encoders`` = (text, image)."""
    text, image = encoders
    dim = 2 * config["text_hidden"]

    def generator():
        return build_generator(config, dim)

    g = generator()
    discriminator = build_discriminators(config, g.sizes, dim)
    gan = (gan_class or model.AttnGan)(g, discriminator, text, image, config["damsm_weight"], config["kl_weight"],
                                       config["uncond_loss"], config["gamma1"], config["gamma2"], config["gamma3"],
                                       config["ema_decay"], **gan_kwargs)
    gan.enable_ema(generator)
    return gan
