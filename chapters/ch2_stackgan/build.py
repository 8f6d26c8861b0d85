"""Config → chapter 2's networks: StackGAN++'s tree (``v2``) or StackGAN-v1's two stages (``v1``)."""

from __future__ import annotations

from chapters.ch2_stackgan import model
from chapters.ch2_stackgan.stages import check_stage_sizes


def input_noise_dim(config) -> int:
    """The width of a pipeline noise row: z and the CA noise ε of each conditioning augmentation."""
    augmentations = 2 if config.get("variant") == "v1" else 1
    return config["noise_dim"] + augmentations * config["condition_dim"]


def build_v2(config):
    """StackGAN++: the tree generator (and its EMA copy) and one discriminator per stage."""
    import tensorflow as tf

    def generator():
        network = model.TreeGenerator(config["text_dim"], config["noise_dim"], config["condition_dim"],
                                      config["generator_width"], config["stages"], config["base_size"],
                                      config["residual_blocks"])
        network([tf.zeros((2, config["noise_dim"])), tf.zeros((2, config["text_dim"]))])
        return network

    g = generator()
    discriminator = model.Discriminators(g.sizes, config["discriminator_width"], config["condition_dim"])
    discriminator([[tf.zeros((2, s, s, 3)) for s in g.sizes], tf.zeros((2, config["condition_dim"]))])
    gan = model.StackGanPlusPlus(g, discriminator, config["kl_weight"], config["uncond_weight"],
                                 config["colour_weight"], config["ema_decay"])
    gan.enable_ema(generator)
    return gan


def build_v1(config, stage):
    """StackGAN-v1 stage 1 (G₀, D₀) or stage 2 (G₁, D₁ on top of a frozen G₀)."""
    import tensorflow as tf

    text = tf.zeros((2, config["text_dim"]))
    small = config["base_size"]

    def stage_one():
        network = model.StageOneGenerator(config["text_dim"], config["noise_dim"], config["condition_dim"],
                                          config["v1_generator_width"], small)
        network([tf.zeros((2, config["noise_dim"])), text])
        return network

    if stage == 1:
        discriminator = model.stage_one_discriminator(config["text_dim"], config["condition_dim"],
                                                      config["discriminator_width"], small)
        discriminator([tf.zeros((2, small, small, 3)), text])
        gan = model.StackGanV1(stage_one(), discriminator, kl_weight=config["kl_weight"])
        return gan
    size = config["image_size"]

    def stage_two():
        network = model.StageTwoGenerator(config["text_dim"], config["condition_dim"], config["v1_generator_width"],
                                          small, size, config["v1_residual_blocks"])
        network([tf.zeros((2, small, small, 3)), text])
        return network

    discriminator = model.StageTwoDiscriminator(config["text_dim"], config["condition_dim"],
                                                config["discriminator_width"], size)
    discriminator([tf.zeros((2, size, size, 3)), text])
    return model.StackGanV1(stage_two(), discriminator, stage_one=stage_one(), kl_weight=config["kl_weight"])


def check_networks(config):
    """The run's networks, built once and thrown away: a setting they cannot take fails before pretraining."""
    check_stage_sizes(config)
    if config.get("variant") == "v1":
        build_v1(config, 1), build_v1(config, 2)
    else:
        build_v2(config)
