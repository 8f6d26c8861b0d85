"""Chapter 3 profiles. ``paper`` is AttnGAN's ``code/cfg/bird_attn2.yml`` with DAMSM's
``code/cfg/DAMSM/bird.yml``; the ``coco`` entry of ``datasets`` switches to ``coco_attn2.yml``."""

PROFILES = {
    "paper": dict(
        # --- DAMSM (pretrain_DAMSM.py)
        damsm_backbone="inception",     # Keras InceptionV3: mixed7 (= Mixed_6e) regions, mixed10 global;
                                        # "inception_torchvision": the official CNN_ENCODER's torchvision Inception3
        inception_weights="",           # a local .h5 (torchvision: .pth/.npz) with ImageNet weights; "" = random init (say so!)
        damsm_align_corners=False,      # resize to 299 as PyTorch 0.3 (True) or ≥ 0.4 (False); README §8
        damsm_dir="",                   # reuse a DAMSM (a run's text_encoder folder, or the converted official one)
        damsm_image_size=299, damsm_batch_size=48, damsm_epochs=600, damsm_steps_per_epoch=0,
        damsm_learning_rate=2e-3, damsm_learning_rate_decay=0.98, damsm_learning_rate_floor=2e-4,
        damsm_gradient_clip=0.25, damsm_reset_optimizer_each_epoch=True,
        word_embedding_dim=300, text_hidden=128, text_dropout=0.5, damsm_dim=256,
        damsm_small_widths=[32, 64, 128, 256],
        gamma1=4.0, gamma2=5.0, gamma3=10.0, paper_word_score=False,
        # --- AttnGAN (bird_attn2.yml)
        base_size=64, stages=3, image_size=256, augment=True,
        batch_size=20, epochs=600, steps_per_epoch=0,
        learning_rate_generator=2e-4, learning_rate_discriminator=2e-4, beta_1=0.5,
        learning_rate_decay=0.5, learning_rate_decay_every_epochs=0,   # no decay
        noise_dim=100, condition_dim=100, generator_width=32, discriminator_width=64, residual_blocks=2,
        damsm_weight=5.0, kl_weight=1.0, uncond_loss=True, words_num=18,
        faithful_mask_bug=False,        # True: the official misaligned attention mask (AttnGAN issue #93)
        ema_decay=0.999, captions_per_sample=1,
        sample_every_epochs=1, log_every_steps=50, checkpoint_keep=3,
        shapes_train=10000, shapes_test=1000, shapes_compositional_split=False, oracle_epochs=0,
        datasets={
            "shapes": dict(augment=False),   # flips/crops would move "top left" objects
            "coco": dict(batch_size=14, epochs=120, generator_width=48, discriminator_width=96,
                         residual_blocks=3, damsm_weight=50.0, words_num=12),
        },
    ),
}

PROFILES["course"] = dict(
    PROFILES["paper"],
    # DAMSM on a small CNN at 32 px (Inception at 299² is not CPU-trainable in a demo).
    damsm_backbone="small", damsm_image_size=32, damsm_batch_size=48, damsm_epochs=10, damsm_steps_per_epoch=100,
    # AttnGAN: 2 stages, 16 → 32 px (one attention stage), chapter 2's course widths.
    base_size=16, stages=2, image_size=32, batch_size=32, epochs=16, steps_per_epoch=200,
    generator_width=32, discriminator_width=16,
    log_every_steps=20,
    datasets={"shapes": dict(augment=False)},
)

PROFILES["smoke"] = dict(
    PROFILES["course"],
    word_embedding_dim=16, text_hidden=8, damsm_dim=16, damsm_small_widths=[8, 8, 16, 16],
    damsm_batch_size=8, damsm_epochs=1, damsm_steps_per_epoch=2,
    batch_size=8, epochs=2, steps_per_epoch=2, generator_width=8, discriminator_width=8,
    noise_dim=16, condition_dim=16, words_num=12, log_every_steps=1,
    shapes_train=64, shapes_test=16, oracle_epochs=1,
)
