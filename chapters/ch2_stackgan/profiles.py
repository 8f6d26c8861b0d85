"""Chapter 2 profiles. ``paper`` is StackGAN++ ``cfg/birds_3stages.yml`` (with the v1 keys of
StackGAN-v1 ``stageI/cfg/birds.yml`` and ``stageII/cfg/birds.yml`` for ``--variant=v1``)."""


from chapters.ch1_gan_int_cls.profiles import PROFILES as _chapter1
# The char-CNN-RNN text encoder and its pretraining: chapter 1's settings, per profile.
_TEXT_KEYS = ("doc_length", "text_conv_widths", "text_rnn_width", "text_dim", "image_encoder_widths",
              "pretrain_batch_size", "pretrain_hard_negatives", "pretrain_epochs", "pretrain_steps_per_epoch", "pretrain_learning_rate",
              "pretrain_learning_rate_decay")


def _text(profile):
    return {key: _chapter1[profile][key] for key in _TEXT_KEYS}


PROFILES = {
    "paper": dict(
        _text("paper"),
        # --- StackGAN++ (variant v2): 3 branches trained jointly
        base_size=64, stages=3, image_size=256, augment=True,
        batch_size=24, epochs=600, steps_per_epoch=0,
        learning_rate_generator=2e-4, learning_rate_discriminator=2e-4, beta_1=0.5,
        learning_rate_decay=0.5, learning_rate_decay_every_epochs=0,   # v2: no decay
        noise_dim=100, condition_dim=128, generator_width=64, discriminator_width=64, residual_blocks=2,
        kl_weight=2.0, uncond_weight=1.0,
        colour_weight=0.0,        # StackGAN++ colour-consistency λ: 0 for birds, 50 in the unconditional configs
        ema_decay=0.999,          # v2 saves (and samples from) the averaged G
        captions_per_sample=1,    # v2: one random caption per step, no averaging
        # Our DS-SJE embeddings have RMS ≈ 0.03; CA adds unit noise to μ(t), so rescale them to RMS 1 (README §9).
        normalise_text_embeddings=True,
        # --- StackGAN-v1 (variant v1): stage I at base_size, then stage II at image_size
        stage_one_epochs=600, v1_generator_width=128, v1_residual_blocks=4,
        sample_every_epochs=1, log_every_steps=50, checkpoint_keep=3,
        shapes_train=10000, shapes_test=1000, shapes_compositional_split=False, oracle_epochs=0,
        datasets={"shapes": dict(augment=False)},   # flips/crops would move "top left" objects
    ),
}

# StackGAN-v1's own schedule (batch 64, mean of 4 captions, lr halved every 50 epochs in stage I)
# is selected with --variant=v1 on top of any profile (a key given with --set keeps the user's value);
# at ``paper`` also batch 64, at ``course`` 30 epochs (``variant_settings``).
VARIANT_V1 = dict(captions_per_sample=4, learning_rate_decay_every_epochs=50, ema_decay=0.0)

PROFILES["course"] = dict(
    PROFILES["paper"], **_text("course"),
    # Two stages, 16 → 32 px, half the paper's G width and a quarter of its D width:
    # 0.1–0.29 s per step on 2 CPU cores (AVX-512 or AVX2 only). 20 epochs (4,000 steps) with an EMA of
    # ≈ 100 steps (0.99, the paper's 0.999 averages ≈ 1,000): two seeds as good as 30 epochs at 0.999,
    # and 19.5 / 21.4 min on the slower CPU, where 30 epochs took 28–31 (README §9).
    base_size=16, stages=2, image_size=32, batch_size=32, epochs=20, steps_per_epoch=200,
    generator_width=32, discriminator_width=16, ema_decay=0.99,
    stage_one_epochs=10, v1_generator_width=16, v1_residual_blocks=2,
    log_every_steps=20,
)

PROFILES["smoke"] = dict(
    PROFILES["course"], **_text("smoke"),
    base_size=16, stages=2, image_size=32, batch_size=8, epochs=2, steps_per_epoch=2,
    generator_width=8, discriminator_width=8, condition_dim=16, noise_dim=16, stage_one_epochs=1,
    v1_generator_width=8, v1_residual_blocks=1, log_every_steps=1,
    shapes_train=64, shapes_test=16, oracle_epochs=1,
)


def variant_settings(variant: str, profile: str) -> dict:
    """The settings of ``--variant`` on top of ``profile``: none for StackGAN++ (v2), VARIANT_V1 for v1."""
    if variant != "v1":
        return {}
    # v1 keeps the 30 epochs (10 in stage I) it was given before v2's course moved to 20 with EMA 0.99.
    per_profile = {"paper": {"batch_size": 64}, "course": {"epochs": 30}}
    return dict(VARIANT_V1, **per_profile.get(profile, {}))
