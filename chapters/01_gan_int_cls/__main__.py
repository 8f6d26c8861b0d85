"""Chapter 1 commands: ``python -m chapters.01_gan_int_cls {pretrain,train,sample,eval} --flags``.

(``make chapter1-train`` etc. call these.) The networks and losses are in
``model.py``; the path data → text encoder → GAN under tf.distribute →
checkpoints → TensorBoard → evaluation is the shared one in ``t2igan.workflow``.
"""

from __future__ import annotations

import numpy as np

from t2igan import char_cnn_rnn
from t2igan.app import FLAGS
from t2igan.workflow import Chapter

chapter = Chapter("01_gan_int_cls", 1, "GAN-INT-CLS")


def build_gan(config):
    """G, D and the GAN-INT-CLS model, built (and the EMA copy made) with the profile's sizes."""
    import tensorflow as tf

    model = chapter.module("model")

    def generator():
        network = model.Generator(config["text_dim"], config["noise_dim"], config["projection_dim"],
                                  config["generator_width"], config["image_size"], config["conv_bias"])
        network([tf.zeros((2, config["noise_dim"])), tf.zeros((2, config["text_dim"]))])
        return network

    discriminator = model.Discriminator(config["text_dim"], config["projection_dim"], config["discriminator_width"],
                                        config["image_size"], config["conv_bias"], config["missing_activations"])
    discriminator([tf.zeros((2, config["image_size"], config["image_size"], 3)), tf.zeros((2, config["text_dim"]))])
    gan = model.GanIntCls(generator(), discriminator, config["matching_aware"], config["interpolation"],
                          config["cls_weight"], config["interp_beta"], config["interp_weight"], config["ema_decay"])
    gan.enable_ema(generator)
    return gan


def pretrain():
    """``chapter1-pretrain``: (re)train the char-CNN-RNN text encoder φ(t) with DS-SJE."""
    strategy, run, config = chapter.setup(for_training=True)
    chapter.pretrain_char_encoder(strategy, run, config, chapter.load_data(config, for_training=True))


def train():
    from t2igan.data import negatives
    from t2igan.data.pipeline import make_dataset
    from t2igan.training.run import Timer

    strategy, run, config = chapter.setup(for_training=True)
    timer = Timer()
    index = chapter.load_data(config, for_training=True)
    text = chapter.char_embeddings(strategy, run, config, index)
    images = chapter.images(index, config, "train")
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size

    gan, optimizers, checkpointer, initial_epoch = chapter.build_for_training(
        strategy, run, config, lambda: build_gan(config), len(images) // batch_size)
    if chapter.already_trained(run.path, config["epochs"], initial_epoch):
        return
    class_ids = np.array([e.class_id for e in index.train], np.int32)
    dataset = make_dataset(images, class_ids, text["train"], global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           captions_per_sample=config["captions_per_sample"], noise_shape=(3, config["noise_dim"]),
                           start_step=initial_epoch * steps_per_epoch,
                           **negatives.dataset_options(index.train, config["hard_negatives"]))

    # Fixed captions × fixed noise for the sample grid: the same every epoch.
    rows = min(8, len(index.test))
    grid_captions = [index.test[i].captions[0] for i in range(rows)]
    grid_text = np.repeat(text["test"].values[:rows, 0].astype(np.float32), 8, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * 8, config["noise_dim"])).astype(np.float32)
    size = config["image_size"]

    def render():
        return gan.generate(grid_noise, grid_text).numpy().reshape(rows, 8, size, size, 3)

    test_text = text["test"].values

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(noise, test_text[example_indices, caption_indices].astype(np.float32)).numpy()

    chapter.fit(gan, run, config, strategy, dataset, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                checkpointer=checkpointer, render=render, grid_captions=grid_captions, optimizers=optimizers, timer=timer,
                index=index, metrics_generate=generate, noise_dim=config["noise_dim"])


def sample():
    _, run, config = chapter.setup(for_training=False)
    chapter.check_sample_count()
    gan = chapter.restore_generator(run, build_gan(config))
    chapter.sample_captions(run, lambda noise, text: gan.generate(noise, text).numpy(),
                            lambda caption: char_cnn_rnn.encode_user_caption(run.text_encoder, config, caption),
                            config["noise_dim"])


def evaluate():
    from t2igan import evaluation

    _, run, config = chapter.setup(for_training=False)
    index = chapter.load_data(config, for_training=False)
    embeddings = chapter.char_embeddings(None, run, config, index)["test"].values
    gan = chapter.restore_generator(run, build_gan(config))

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, embeddings[example_indices, caption_indices].astype(np.float32)).numpy()

    evaluation.evaluate_run(run, config, index, generate, config["noise_dim"], FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name="EMA generator" if gan.ema_generator is not None else "generator")


if __name__ == "__main__":
    chapter.run({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate})
