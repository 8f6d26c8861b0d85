"""Chapter 4 profiles. ``paper`` is DF-GAN's ``code/cfg/bird.yml`` (CVPR 2022 code) and, with
``VARIANTS["ratgan"]``, RAT-GAN's ``code/cfg/bird.yml`` (paper-version code); the DAMSM keys are chapter
3's (``pretrain_DAMSM.py``, ``cfg/DAMSM/bird.yml``), because both models use AttnGAN's frozen text encoder.

A variant's settings (``VARIANTS``) apply unless the same key is given with ``--set`` (``t2igan.config.Config``).
"""


from chapters.ch3_attngan.profiles import PROFILES as _attngan
DAMSM_KEYS = ("damsm_backbone", "inception_weights", "damsm_image_size", "damsm_batch_size", "damsm_epochs",
              "damsm_steps_per_epoch", "damsm_learning_rate", "damsm_learning_rate_decay", "damsm_learning_rate_floor",
              "damsm_gradient_clip", "damsm_reset_optimizer_each_epoch", "word_embedding_dim", "text_hidden",
              "text_dropout", "damsm_dim", "damsm_small_widths", "gamma1", "gamma2", "gamma3", "paper_word_score")


def _damsm(profile):
    return {key: _attngan[profile][key] for key in DAMSM_KEYS}


PROFILES = {
    "paper": dict(
        **_damsm("paper"),
        damsm_dir="",                   # reuse a trained DAMSM (a run's text_encoder folder); "" = pretrain one
        words_num=18,
        # --- DF-GAN (code/cfg/bird.yml, scripts/train.sh)
        image_size=256, augment=True,   # load at 304, random crop 256, flip (the 76/64 rule)
        batch_size=32, epochs=1301, steps_per_epoch=0,
        learning_rate_generator=1e-4, learning_rate_discriminator=4e-4, beta_1=0.0, beta_2=0.9,
        noise_dim=100, generator_width=32, discriminator_width=32,
        controller_units=256,           # RAT-GAN: the LSTM that drives every affine (CustomLSTM(256, 256))
        condition_on_noise=True,        # DF-GAN'22: affines see [z, s]; False = the 2020 code (s only)
        mismatch="roll",                # image i+1 with caption i (B pairs); "shift": B−1 pairs (RAT-GAN, DF-GAN'20)
        penalty_step="joint",           # MA-GP inside the one D step; "separate": a second D step (RAT-GAN)
        penalty_weight=2.0, penalty_power=6.0,
        discriminator_head="attention",  # RAT-GAN only: "attention" (paper) or "plain" (repository HEAD)
        truncation=0.88,                # sampling noise: 0.88 × N(0,1) truncated to ±2; 0 = plain N(0,1)
        ema_decay=0.0,                  # neither official code averages G; > 0 samples from an EMA generator
        sample_every_epochs=1, log_every_steps=50, checkpoint_keep=3, captions_per_sample=1,
        shapes_train=10000, shapes_test=1000, shapes_compositional_split=False, oracle_epochs=0,
        datasets={
            "shapes": dict(augment=False),  # flips/crops would move "top left" objects
            "coco": dict(epochs=301),
        },
    ),
}

#: RAT-GAN's own settings (``code/cfg/bird.yml``, ``code/main.py``), per profile.
VARIANTS = {
    "paper": {
        "dfgan": {},
        "ratgan": dict(batch_size=24, epochs=601, generator_width=64, discriminator_width=64, mismatch="shift",
                       penalty_step="separate", truncation=0.0),
    },
}

PROFILES["course"] = dict(
    PROFILES["paper"],
    **_damsm("course"),                 # DAMSM on a small CNN at 32 px, 10 × 100 steps (1.5–7 min on 2 cores)
    image_size=32, batch_size=32, epochs=13, steps_per_epoch=200,
    generator_width=16, discriminator_width=16,
    # Four times the official rates (same 1 : 4 ratio). At 1e-4 / 4e-4 the samples were still all background
    # after 600 steps; at 2e-4 / 8e-4 they followed colour and position but not shape (0.40–0.43); at these,
    # DF-GAN reached shape 0.66 in the same 2,600 steps (README §9).
    learning_rate_generator=4e-4, learning_rate_discriminator=1.6e-3,
    log_every_steps=20,
    # XLA: RAT-GAN's GAN steps took 20 min instead of 28 on a 2-core AVX2-only CPU, with the same quality
    # (two seeds, README §9); its 10–55 s of compiling pay for themselves in a course run.
    jit_compile=True,
    datasets={"shapes": dict(augment=False)},
)
VARIANTS["course"] = {
    "dfgan": {},
    "ratgan": dict(mismatch="shift", penalty_step="separate", truncation=0.0),
}

PROFILES["smoke"] = dict(
    PROFILES["course"],
    **_damsm("smoke"),
    image_size=16, batch_size=8, epochs=2, steps_per_epoch=2, generator_width=4, discriminator_width=4,
    noise_dim=16, controller_units=16, words_num=12, log_every_steps=1,
    shapes_train=64, shapes_test=16, oracle_epochs=1, jit_compile=False,  # seconds: compiling would double them
)
VARIANTS["smoke"] = VARIANTS["course"]
