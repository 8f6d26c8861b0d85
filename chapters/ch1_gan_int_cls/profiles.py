"""Chapter 1 profiles. ``paper`` is the official CUB/Flowers configuration (scripts/train_cub.sh)."""

_TEXT_PAPER = dict(
    doc_length=201,                      # characters read per caption (Reed: 201)
    text_conv_widths=[384, 512, 512],    # HybridCNNLong
    text_rnn_width=512,                  # FixedGRU
    text_dim=1024,                       # φ(t)
    image_encoder_widths=[64, 128, 256, 512],  # one stride-2 conv each: 64 px → 4×4, flattened
    pretrain_batch_size=40,              # 40 distinct classes per minibatch in train_sje_hybrid.lua
    pretrain_epochs=200,
    pretrain_steps_per_epoch=0,          # 0: one pass over the training images
    pretrain_learning_rate=7e-4,         # RMSprop, ×0.98 per epoch
    pretrain_learning_rate_decay=0.98,
    pretrain_hard_negatives=0.0,         # fraction of near-miss wrong pairs added to DS-SJE batches (README §5)
)

PROFILES = {
    "paper": dict(
        _TEXT_PAPER,
        image_size=64, augment=True, batch_size=64, epochs=600, steps_per_epoch=0,
        learning_rate_generator=2e-4, learning_rate_discriminator=2e-4, beta_1=0.5,
        learning_rate_decay=0.5, learning_rate_decay_every_epochs=100,
        noise_dim=100, projection_dim=128, generator_width=128, discriminator_width=64,
        conv_bias=False, missing_activations=True,
        matching_aware=True, interpolation=True, cls_weight=0.5, interp_beta=0.5, interp_weight=1.0,
        captions_per_sample=4, ema_decay=0.0,
        hard_negatives=0.0,   # fraction of D's wrong captions that are near misses (Reed: 0, random; README §5)
        normalise_text_embeddings=False,   # True: φ(t) × the stored factor that gives unit RMS (README §5)
        sample_every_epochs=1, log_every_steps=50, checkpoint_keep=3,
        shapes_train=10000, shapes_test=1000,
        shapes_compositional_split=False,   # True: some (colour, shape) pairs appear only in test
        oracle_epochs=0,                 # 0: the oracle's own default
        datasets={"shapes": dict(augment=False)},   # flips/crops would move "top left" objects
    ),
}

PROFILES["course"] = dict(
    PROFILES["paper"],
    doc_length=96, text_conv_widths=[128, 128, 128], text_rnn_width=128, text_dim=256,
    image_encoder_widths=[32, 64, 128], pretrain_batch_size=64, pretrain_epochs=10,
    pretrain_steps_per_epoch=100, pretrain_learning_rate=1e-3,
    # 32 px and 1/8 of the paper's widths: ≈ 0.18 s per step on 2 CPU cores, ≈ 3,300 steps in 10 minutes.
    # No decay (1000 passes over the data; the decay counts passes, 156 steps here, not these 110-step epochs).
    image_size=32, batch_size=64, epochs=30, steps_per_epoch=110, learning_rate_decay_every_epochs=1000,
    generator_width=16, discriminator_width=16, log_every_steps=20,
    # Samples and evaluation from an EMA of G over ≈ 100 steps (Reed samples the live G; the training is his):
    # two seeds, colour 0.59 / 0.84 → 0.71 / 0.87, oracle FID 537 / 605 → 233 / 184, the same time (README §5).
    ema_decay=0.99,
)

PROFILES["smoke"] = dict(
    PROFILES["course"],
    doc_length=64, text_conv_widths=[16, 16, 16], text_rnn_width=16, text_dim=32,
    image_encoder_widths=[8, 8, 16], pretrain_batch_size=8, pretrain_epochs=1, pretrain_steps_per_epoch=2,
    image_size=32, batch_size=8, epochs=2, steps_per_epoch=2, noise_dim=16, projection_dim=16,
    generator_width=8, discriminator_width=8, log_every_steps=1,
    shapes_train=64, shapes_test=16, oracle_epochs=1,
)
