"""Chapter 1 commands: ``python -m chapters.01_gan_int_cls {pretrain,train,sample,eval} --flags``.

(``make chapter1-train`` etc. call these.) The networks and losses are in
``model.py``; this file wires them to the shared harness: data → text encoder →
GAN under tf.distribute → checkpoints → TensorBoard → evaluation.
"""

from __future__ import annotations

import importlib
import json
import os
import re

import numpy as np
from absl import logging

from t2igan import app
from t2igan.app import FLAGS, UserError

CHAPTER = "01_gan_int_cls"
NUMBER = 1
USAGE = "usage: python -m chapters.01_gan_int_cls {pretrain,train,sample,eval} [--dataset=shapes] [--profile=course] ..."


def _chapter(name):
    return importlib.import_module(f"chapters.{CHAPTER}.{name}")


# ----------------------------------------------------------------------------- set-up
def _setup(for_training: bool):
    """Strategy first (it must precede every TF op), then config and run folder."""
    from t2igan.training.distribute import make_strategy, worker_run_dir
    from t2igan.training.run import RunDirectory

    strategy = make_strategy(FLAGS.distribution, FLAGS.cpu_replicas) if for_training else None
    run_dir = FLAGS.run_dir or app.default_run_dir(NUMBER, FLAGS.dataset, FLAGS.profile)
    if strategy is not None:
        run_dir = worker_run_dir(strategy, run_dir)
    run = RunDirectory(run_dir, CHAPTER)
    if for_training:
        config = app.resolve_config(_chapter("profiles").PROFILES, FLAGS.profile, FLAGS.dataset, FLAGS.set, FLAGS.epochs)
        config["seed"] = FLAGS.seed
        # Where the data came from, so that sample/eval find it again without the flags.
        config.update(data_dir=FLAGS.data_dir, metadata_dir=FLAGS.metadata_dir)
        run.write_config(config)
    else:
        config = run.check_owner()
        if config is None:
            raise UserError(f"No trained run in {run_dir} (no config.json). Train first: make chapter{NUMBER}-train RUN_DIR={run_dir}")
    import keras

    keras.utils.set_random_seed(config["seed"])
    app.set_up_precision()
    return strategy, run, config


def _character_codec(config):
    from t2igan.text import CharacterCodec

    return CharacterCodec(doc_length=config["doc_length"])


def _text_encoder(config):
    model = _chapter("model")
    return model.CharCnnRnn(conv_widths=config["text_conv_widths"], rnn_width=config["text_rnn_width"],
                            embedding_dim=config["text_dim"])


def _char_table(examples, codec):
    from t2igan.data.pipeline import caption_tables

    def encode(caption):
        ids, _ = codec.encode(caption)
        return ids, int(np.count_nonzero(ids)) or 1

    return caption_tables(examples, encode, codec.doc_length)


def _images(index, config, split):
    from t2igan.data.pipeline import build_image_array, load_size_for

    load_size = load_size_for(config["image_size"], config["augment"])
    return build_image_array(index.split(split), load_size, index.crop_to_bbox, os.path.join(FLAGS.data_root, "cache"))


def _fingerprint(index):
    """Identifies the captions the stored embeddings belong to (a regenerated data set differs)."""
    import hashlib

    digest = hashlib.sha256()
    for split in ("train", "test"):
        for example in index.split(split):
            digest.update(example.key.encode() + b"\0" + "\n".join(example.captions).encode() + b"\1")
    return digest.hexdigest()[:16]


def _check_embeddings_match(run, index):
    with open(os.path.join(run.text_encoder, "complete.json"), encoding="utf-8") as file:
        stored = json.load(file).get("data_fingerprint")
    if stored is None:
        logging.warning("%s records no data fingerprint; cannot check that it matches the data set.", run.text_encoder)
    elif stored != _fingerprint(index):
        raise UserError(f"The data set's captions changed since the text encoder in {run.text_encoder} was trained, "
                        "so its stored caption embeddings no longer match. Use a new RUN_DIR (or delete that "
                        "text_encoder folder and the checkpoints to start over).")


def _class_ids(examples):
    return np.array([e.class_id for e in examples], dtype=np.int32)


# ----------------------------------------------------------------------------- pretrain
def pretrain(strategy=None, run=None, config=None, index=None):
    """Train φ(t) with DS-SJE, then embed every caption once (Reed precomputes them too)."""
    import keras
    import tensorflow as tf

    from t2igan.data.pipeline import make_dataset
    from t2igan.text import Vocabulary

    if run is None:
        strategy, run, config = _setup(for_training=True)
        index = app.load_data(config)
    model = _chapter("model")
    codec = _character_codec(config)
    tables = {split: _char_table(index.split(split), codec) for split in ("train", "test")}
    too_long = sum(len(c) > codec.doc_length for e in index.train for c in e.captions)
    if too_long:
        logging.warning("%d training captions are longer than %d characters; the encoder reads their start only.", too_long, codec.doc_length)
    images = _images(index, config, "train")
    batch_size = config["pretrain_batch_size"]
    steps = config["pretrain_steps_per_epoch"] or len(images) // batch_size
    dataset = make_dataset(images, _class_ids(index.train), tables["train"], global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           words_num=codec.doc_length)
    test_images = _images(index, config, "test")
    validation = make_dataset(test_images, _class_ids(index.test), tables["test"],
                              global_batch_size=min(batch_size, len(test_images)), image_size=config["image_size"],
                              augment=False, seed=12345, words_num=codec.doc_length, repeat=False)
    with strategy.scope():
        text_encoder = _text_encoder(config)
        image_encoder = model.ImageEncoder(config["text_dim"], config["image_encoder_widths"])
        joint = model.JointEmbedding(text_encoder, image_encoder)
        # Build eagerly inside the scope: lazy building inside a replica fails under tf.distribute.
        size = config["image_size"]
        image_encoder(tf.zeros((1, size, size, 3)))
        text_encoder(tf.zeros((1, codec.doc_length), tf.int32))
        joint.built = True
        schedule = keras.optimizers.schedules.ExponentialDecay(
            config["pretrain_learning_rate"], steps, config["pretrain_learning_rate_decay"], staircase=True)
        joint.compile(optimizer=keras.optimizers.RMSprop(schedule))
        joint.optimizer.build(joint.trainable_variables)
    logging.info("Pretraining the char-CNN-RNN text encoder (DS-SJE): %d epochs × %d steps.", config["pretrain_epochs"], steps)
    history = joint.fit(dataset, epochs=config["pretrain_epochs"], steps_per_epoch=steps, validation_data=validation,
                        callbacks=[keras.callbacks.TensorBoard(os.path.join(run.logs, "pretrain"), write_graph=False)],
                        verbose=app.fit_verbosity())
    os.makedirs(run.text_encoder, exist_ok=True)
    text_encoder.save_weights(os.path.join(run.text_encoder, "encoder.weights.h5"))
    Vocabulary.from_captions(c for e in index.train for c in e.captions).save(os.path.join(run.text_encoder, "vocabulary.json"))
    for split, table in tables.items():
        np.save(os.path.join(run.text_encoder, f"embeddings-{split}.npy"), _embed(text_encoder, table))
    report = {key: float(values[-1]) for key, values in history.history.items()}
    report["data_fingerprint"] = _fingerprint(index)
    with open(os.path.join(run.text_encoder, "complete.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)  # written last: its presence means the encoder is usable
    run.update_metrics("pretrain", {k: v for k, v in report.items() if k != "data_fingerprint"})
    print(f"Text encoder: held-out caption→image top-1 {report.get('val_retrieval_top1', float('nan')):.3f}; saved in {run.text_encoder}")


def _embed(text_encoder, table, batch_size=512):
    """φ(t) of every caption: (N, C, D) float16 (unused caption slots stay 0)."""
    import tensorflow as tf

    encode = tf.function(lambda ids: text_encoder(ids, training=False))
    flat = table.values.reshape(-1, table.values.shape[-1])
    out = np.concatenate([encode(flat[i : i + batch_size]).numpy() for i in range(0, len(flat), batch_size)])
    return out.reshape(table.values.shape[0], table.values.shape[1], -1).astype(np.float16)


def _load_embeddings(run, split):
    return np.load(os.path.join(run.text_encoder, f"embeddings-{split}.npy"))


# ----------------------------------------------------------------------------- train
def _build_gan(config):
    model = _chapter("model")

    def generator():
        return model.Generator(config["text_dim"], config["noise_dim"], config["projection_dim"],
                               config["generator_width"], config["image_size"], config["conv_bias"])

    discriminator = model.Discriminator(config["text_dim"], config["projection_dim"], config["discriminator_width"],
                                        config["image_size"], config["conv_bias"], config["missing_activations"])
    gan = model.GanIntCls(generator(), discriminator, config["matching_aware"], config["interpolation"],
                          config["cls_weight"], config["interp_beta"], config["interp_weight"], config["ema_decay"])
    import tensorflow as tf

    noise = tf.zeros((2, config["noise_dim"]))
    text = tf.zeros((2, config["text_dim"]))
    gan.generator([noise, text])
    gan.discriminator([tf.zeros((2, config["image_size"], config["image_size"], 3)), text])
    gan.enable_ema(lambda: _built(generator(), noise, text))
    return gan


def _built(generator, noise, text):
    generator([noise, text])
    return generator


def train():
    import keras
    import tensorflow as tf

    from t2igan.data.pipeline import TextTable, make_dataset
    from t2igan.training import callbacks as cb
    from t2igan.training.run import Checkpointer, Timer

    strategy, run, config = _setup(for_training=True)
    timer = Timer()
    index = app.load_data(config)
    if any(index.missing.values()):
        print("Missing images (listed in the split files, not found, skipped): "
              + ", ".join(f"{split} {count}" for split, count in index.missing.items()))
    if not os.path.exists(os.path.join(run.text_encoder, "complete.json")):
        logging.info("No pretrained text encoder in %s: running chapter1-pretrain first.", run.text_encoder)
        pretrain(strategy, run, config, index)
    _check_embeddings_match(run, index)
    embeddings = _load_embeddings(run, "train")
    counts = np.array([max(1, min(len(e.captions), embeddings.shape[1])) for e in index.train], np.int32)
    images = _images(index, config, "train")
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size
    steps_per_data_epoch = len(images) // batch_size

    with strategy.scope():
        gan = _build_gan(config)
        decay_steps = config["learning_rate_decay_every_epochs"] * steps_per_data_epoch
        def adam(rate):
            schedule = keras.optimizers.schedules.ExponentialDecay(rate, decay_steps, config["learning_rate_decay"], staircase=True)
            return keras.optimizers.Adam(schedule, beta_1=config["beta_1"], beta_2=0.999, epsilon=1e-8)
        generator_optimizer, discriminator_optimizer = adam(config["learning_rate_generator"]), adam(config["learning_rate_discriminator"])
        if FLAGS.mixed_precision:
            generator_optimizer = keras.optimizers.LossScaleOptimizer(generator_optimizer)
            discriminator_optimizer = keras.optimizers.LossScaleOptimizer(discriminator_optimizer)
        gan.compile(generator_optimizer, discriminator_optimizer, jit_compile=FLAGS.jit_compile)
        gan.build_optimizers()
    objects = dict(generator=gan.generator, discriminator=gan.discriminator,
                   generator_optimizer=generator_optimizer, discriminator_optimizer=discriminator_optimizer)
    if gan.ema_generator is not None:
        objects["ema_generator"] = gan.ema_generator
    checkpointer = Checkpointer(run.checkpoints, max_to_keep=config["checkpoint_keep"], **objects)
    initial_epoch = checkpointer.restore()
    if initial_epoch >= config["epochs"]:
        print(f"{run.path} already trained for {initial_epoch} epochs (profile asks for {config['epochs']}). "
              "Pass --epochs=N to train longer, or use another RUN_DIR.")
        return
    dataset = make_dataset(images, _class_ids(index.train), TextTable(embeddings, counts), global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           captions_per_sample=config["captions_per_sample"], noise_shape=(3, config["noise_dim"]),
                           start_step=initial_epoch * steps_per_epoch)

    # Fixed captions × fixed noise for the sample grid: the same every epoch.
    test_embeddings = _load_embeddings(run, "test")
    rows = min(8, len(index.test))
    grid_captions = [index.test[i].captions[0] for i in range(rows)]
    grid_text = np.repeat(test_embeddings[:rows, 0].astype(np.float32), 8, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * 8, config["noise_dim"])).astype(np.float32)
    size = config["image_size"]

    def render():
        return gan.generate(grid_noise, grid_text).numpy().reshape(rows, 8, size, size, 3)

    writer = tf.summary.create_file_writer(os.path.join(run.logs, "train"))
    nan_guard = cb.StopOnNonFinite()
    callbacks = [
        nan_guard,
        cb.CheckpointEachEpoch(checkpointer, nan_guard, lambda: gan.generator.weights + gan.discriminator.weights),
        cb.TensorBoardLogger(writer, gan.metric_tags, {"generator": generator_optimizer, "discriminator": discriminator_optimizer},
                             config["log_every_steps"]),
        cb.SampleGrid(render, grid_captions, run.samples, writer, config["sample_every_epochs"]),
    ]
    logging.info("Training GAN-INT-CLS: epochs %d → %d, %d steps each, global batch %d, %d replica(s).",
                 initial_epoch, config["epochs"], steps_per_epoch, batch_size, strategy.num_replicas_in_sync)
    history = gan.fit(dataset, epochs=config["epochs"], initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=app.fit_verbosity())
    if nan_guard.error is not None:
        raise nan_guard.error
    final = {key: float(values[-1]) for key, values in history.history.items()}
    run.update_metrics("train", {"epochs": config["epochs"], "steps": int(generator_optimizer.iterations.numpy()),
                                 "seconds_this_session": round(timer.elapsed(), 1), "final": final})
    print(f"Trained to epoch {config['epochs']} in {timer.elapsed():.0f} s. Samples: {run.samples}  TensorBoard: make tensorboard")


# ----------------------------------------------------------------------------- sample / eval
def _restore_generator(run, config):

    from t2igan.training.run import Checkpointer

    gan = _build_gan(config)
    objects = dict(generator=gan.generator)
    if gan.ema_generator is not None:
        objects["ema_generator"] = gan.ema_generator
    checkpointer = Checkpointer(run.checkpoints, **objects)
    if checkpointer.restore() == 0:
        raise UserError(f"No checkpoint in {run.checkpoints}. Train first: make chapter{NUMBER}-train RUN_DIR={run.path}")
    return gan


def _encode_user_caption(run, config, caption):
    """φ(t) of a caption typed by a user, with the checks users need."""
    import tensorflow as tf

    from t2igan.text import Vocabulary, tokenize

    if caption is None or not caption.strip():
        raise UserError('The caption is empty. Pass one with TEXT="a small red circle in the top left".')
    codec = _character_codec(config)
    if len(caption) > codec.doc_length:
        raise UserError(f"The caption has {len(caption)} characters; this model reads at most {codec.doc_length} "
                        f"(doc_length). Shorten it.")
    vocabulary = Vocabulary.load(os.path.join(run.text_encoder, "vocabulary.json"))
    words = tokenize(caption)
    unknown = [w for w in words if w not in vocabulary.index]
    if words and len(unknown) == len(words) or not words:
        raise UserError(f"None of the words of {caption!r} occur in the training captions; the model cannot draw it. "
                        f"Known words include: {', '.join(vocabulary.words[1:21])} …")
    if unknown:
        print(f"Words never seen in training (the encoder still reads their characters): {', '.join(unknown)}")
    encoder = _text_encoder(config)
    encoder(tf.zeros((1, codec.doc_length), tf.int32))
    encoder.load_weights(os.path.join(run.text_encoder, "encoder.weights.h5"))
    ids, _ = codec.encode(caption)
    return encoder(ids[None], training=False).numpy()[0]


def sample():
    from t2igan.sampling import interpolation_weights, make_grid, save_png

    _, run, config = _setup(for_training=False)
    if FLAGS.n < 1:
        raise UserError(f"N must be ≥ 1, got {FLAGS.n}.")
    gan = _restore_generator(run, config)
    first = _encode_user_caption(run, config, FLAGS.text)
    noise = np.random.default_rng(FLAGS.sample_seed).standard_normal((FLAGS.n, config["noise_dim"])).astype(np.float32)
    if FLAGS.interpolate_to:
        second = _encode_user_caption(run, config, FLAGS.interpolate_to)
        betas = interpolation_weights(8)
        text = np.stack([(1 - b) * first + b * second for b in betas])  # (8, D)
        images = gan.generate(np.repeat(noise, 8, axis=0), np.tile(text, (FLAGS.n, 1))).numpy()
        images = images.reshape(FLAGS.n, 8, *images.shape[1:])
    else:
        images = gan.generate(noise, np.repeat(first[None], FLAGS.n, axis=0)).numpy()[None]
    slug = re.sub(r"[^a-z0-9]+", "-", FLAGS.text.lower()).strip("-")[:60]
    path = FLAGS.output or os.path.join(run.samples, f"sample-{slug}-seed{FLAGS.sample_seed}.png")
    save_png(make_grid(images), path, scale=2)
    print(path)


def evaluate():
    from t2igan import evaluation

    _, run, config = _setup(for_training=False)
    FLAGS.dataset = config["dataset"]
    FLAGS.data_dir = FLAGS.data_dir or config.get("data_dir")
    FLAGS.metadata_dir = FLAGS.metadata_dir or config.get("metadata_dir")
    index = app.load_data(config)
    _check_embeddings_match(run, index)
    gan = _restore_generator(run, config)
    embeddings = _load_embeddings(run, "test")

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, embeddings[example_indices, caption_indices].astype(np.float32)).numpy()

    evaluation.evaluate_run(run, config, index, generate, config["noise_dim"], FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name="EMA generator" if gan.ema_generator is not None else "generator")


if __name__ == "__main__":
    app.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate}, USAGE)
