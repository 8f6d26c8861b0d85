"""Chapter 3 commands: ``python -m chapters.03_attngan {pretrain,train,sample,eval,import} --flags``.

(``make chapter3-train`` etc. call these.) ``pretrain`` trains DAMSM (text and image
encoders); ``train`` runs it first when the run has no encoders, then trains AttnGAN
with the frozen encoders. The networks and losses are in ``model.py``. ``import`` makes a
run folder from the released official generator (and DAMSM) for ``sample`` and ``eval``
(``official.py``, ``t2igan.official``).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from t2igan import app
from t2igan.app import FLAGS, UserError
from t2igan.sampling import stages_side_by_side
from t2igan.stages import check_stage_sizes
from t2igan.workflow import Chapter

from .build import build_gan, noise_width  # config → networks

flags.DEFINE_bool("attention", False, "sample: also write the attention map of every word (ATTN=1).")
flags.DEFINE_string("generator", None, "import: the official AttnGAN generator (bird_AttnGAN2.pth, coco_AttnGAN2.pth, or .npz).")
flags.DEFINE_string("text_encoder", None, "import: the official DAMSM text encoder (text_encoder200.pth for birds), "
                    "converted into the run's text_encoder folder with --image_encoder; else --set damsm_dir=FOLDER.")
flags.DEFINE_string("image_encoder", None, "import: the official DAMSM image encoder (image_encoder200.pth for birds).")
flags.DEFINE_string("captions", None, "import: the data set's official captions.pickle (the DAMSM's word ids); "
                    "default: the data folder's, then --metadata_dir's.")

chapter = Chapter("03_attngan", 3, "AttnGAN")


def _setup(for_training):
    strategy, run, config = chapter.setup(for_training)
    check_stage_sizes(config)
    return strategy, run, config


# ----------------------------------------------------------------------------- text
def load_damsm(run, config, index, strategy=None):
    """The run's pretrained DAMSM encoders (``t2igan.damsm``; pretrained first when training and absent)."""
    return chapter.damsm(strategy, run, config, index)


# ----------------------------------------------------------------------------- AttnGAN
def attention_grid(image, maps, length, size):
    """One row: the image, then each word's attention map (last attention stage) over it."""
    from t2igan.sampling import heat_overlay

    return np.stack([image] + [heat_overlay(image, maps[t]) for t in range(length)])


def refuse_imported_run():
    """An imported run has the official generator and no discriminators or optimizer state: nothing to resume."""
    run_dir = FLAGS.run_dir or app.default_run_dir(chapter.number, FLAGS.dataset, FLAGS.profile)
    if os.path.exists(os.path.join(run_dir, IMPORTED)):
        raise UserError(f"{run_dir} holds an imported official generator (for sample and eval); it has no "
                        "discriminators to train on. Train in another RUN_DIR.")


def train():
    from t2igan import damsm
    from t2igan.data.pipeline import make_dataset
    from t2igan.training.run import Timer

    refuse_imported_run()
    strategy, run, config = _setup(for_training=True)
    timer = Timer()
    index = chapter.load_data(config, for_training=True)
    vocabulary, build_encoders = load_damsm(run, config, index, strategy)
    table = damsm.id_table(index.train, vocabulary)
    images = chapter.images(index, config, "train")
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size
    gan, optimizers, checkpointer, initial_epoch = chapter.build_for_training(
        strategy, run, config, lambda: build_gan(config, build_encoders()), len(images) // batch_size)
    if chapter.already_trained(run.path, config["epochs"], initial_epoch):
        return
    class_ids = np.array([e.class_id for e in index.train], np.int32)
    dataset = make_dataset(images, class_ids, table, global_batch_size=batch_size, image_size=config["image_size"],
                           augment=config["augment"], seed=config["seed"], words_num=config["words_num"],
                           noise_shape=(1, noise_width(config)), start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * columns, noise_width(config))).astype(np.float32)
    size = config["image_size"]

    def render():
        return stages_side_by_side(gan.generate(grid_noise, grid_ids, grid_lengths, all_stages=True), rows, columns, size)

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(noise, test_ids[example_indices, caption_indices],
                            test_lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, generated):
        from t2igan.metrics.r_precision import damsm_r_precision

        return damsm_r_precision(gan.text_encoder, gan.image_encoder, index, test_ids, test_lengths, plan, generated, 1234)

    chapter.fit(gan, run, config, strategy, dataset, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                checkpointer=checkpointer, render=render, grid_captions=[index.test[i].captions[0] for i in range(rows)],
                optimizers=optimizers, timer=timer, index=index, metrics_generate=generate,
                noise_dim=noise_width(config), metrics_extra=r_precision,
                extra_callbacks=lambda writer: [AttentionMaps(gan, grid_ids[::columns][:4], grid_lengths[::columns][:4],
                                                              grid_noise[::columns][:4], vocabulary, size, writer)])


def AttentionMaps(gan, ids, lengths, noise, vocabulary, size, writer):  # noqa: N802 (a callback factory)
    """TensorBoard ``attention/words``: per fixed caption, the image and each word's attention map."""
    import keras
    import tensorflow as tf

    from t2igan.sampling import make_grid

    class Callback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images, maps = gan.generate(noise, ids, lengths, return_attention=True)
            images, maps = images.numpy(), maps[-1].numpy()
            longest = int(lengths.max())
            rows = []
            for b in range(len(ids)):
                row = attention_grid(images[b], maps[b], int(lengths[b]), size)
                pad = np.full((longest + 1 - len(row), size, size, 3), -1.0, np.float32)
                rows.append(np.concatenate([row, pad]))
            grid = make_grid(np.stack(rows))
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                tf.summary.image("attention/words", grid[None].astype(np.float32) / 255.0)
                if epoch == 0:
                    tf.summary.text("attention/captions", "\n\n".join(
                        f"{i}. " + " | ".join(vocabulary.words[t] for t in row[: int(n)]) for i, (row, n) in enumerate(zip(ids, lengths))))

    return Callback()


def _restored(run, config):
    index = chapter.load_data(config, for_training=False)
    vocabulary, build_encoders = load_damsm(run, config, index)
    gan = chapter.restore_generator(run, build_gan(config, build_encoders()))
    return index, vocabulary, gan


def sample():
    from t2igan import damsm
    from t2igan.sampling import make_grid, save_png

    _, run, config = _setup(for_training=False)
    chapter.check_sample_count()
    _, vocabulary, gan = _restored(run, config)
    words_num = config["words_num"]
    ids, length = damsm.encode_user_caption(vocabulary, FLAGS.text, words_num)
    n = FLAGS.n
    noise = chapter.sample_noise(n, noise_width(config))
    if FLAGS.interpolate_to:
        raise UserError("--interpolate_to is chapter 1's (GAN-INT); AttnGAN conditions on words, not one vector.")
    batch_ids, batch_lengths = np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)
    images, maps = gan.generate(noise, batch_ids, batch_lengths, return_attention=True)
    path = chapter.sample_path(run)
    save_png(make_grid(images.numpy()[None]), path, scale=2)
    print(path)
    if FLAGS.attention:
        size = config["image_size"]
        rows = np.stack([attention_grid(images.numpy()[b], maps[-1].numpy()[b], length, size) for b in range(min(n, 4))])
        attention_path = path[:-4] + "-attention.png"
        save_png(make_grid(rows), attention_path, scale=2)
        print("Columns: the image, then " + " | ".join(vocabulary.words[t] for t in ids[:length]))
        print(attention_path)


def evaluate():
    from t2igan import damsm, evaluation

    _, run, config = _setup(for_training=False)
    index, vocabulary, gan = _restored(run, config)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, ids[example_indices, caption_indices], lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, images):
        """DM-GAN's R-precision with this run's DAMSM encoders (1 true + 99 mismatched captions)."""
        from t2igan.metrics.r_precision import damsm_r_precision

        return damsm_r_precision(gan.text_encoder, gan.image_encoder, index, ids, lengths, plan, images, FLAGS.sample_seed)

    evaluation.evaluate_run(run, config, index, generate, noise_width(config), FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name=f"EMA generator (largest stage, {config['image_size']} px)",
                            extra=r_precision)


def pretrain():
    """``chapter3-pretrain``: (re)train DAMSM for this run."""
    refuse_imported_run()
    strategy, run, config = _setup(for_training=True)
    index = chapter.load_data(config, for_training=True)
    if config.get("damsm_dir"):
        raise UserError("This run reuses the DAMSM in damsm_dir; pretrain in the run that owns it.")
    chapter.pretrain_damsm(strategy, run, config, index)


# ----------------------------------------------------------------------------- the official checkpoints
IMPORTED = "imported.json"


def import_official():
    """``chapter3-import``: a run folder holding the released AttnGAN generator (as G and as its EMA, which
    is what the official code saved), and the released DAMSM converted into its ``text_encoder`` folder
    (``--text_encoder``, ``--image_encoder``) or reused from ``--set damsm_dir=FOLDER``. Then
    ``chapter3-sample`` and ``chapter3-eval`` work on it as on a trained run."""
    from t2igan import official as shared
    from t2igan.training.run import Checkpointer

    from .build import build_generator

    official = chapter.module("official")
    if not FLAGS.generator:
        raise UserError("Pass the official generator: --generator=bird_AttnGAN2.pth (make chapter3-import GENERATOR=…).")
    if bool(FLAGS.text_encoder) != bool(FLAGS.image_encoder):
        raise UserError("Pass both --text_encoder and --image_encoder (the DAMSM released with the generator), "
                        "or neither and --set damsm_dir=FOLDER.")
    converting = bool(FLAGS.text_encoder)
    state = shared.read_state_dict(FLAGS.generator)  # read and checked before anything is written
    found = official.checkpoint_configuration(state, FLAGS.generator)
    explicit = {item.split("=", 1)[0] for item in FLAGS.set}

    def adjust(config):
        if converting and config.get("damsm_dir"):
            raise UserError("--set damsm_dir and --text_encoder/--image_encoder both name a DAMSM; keep one.")
        if not converting and not config.get("damsm_dir"):
            raise UserError("The generator needs the DAMSM it was trained with: pass --text_encoder=text_encoder200.pth "
                            "--image_encoder=image_encoder200.pth (birds), or --set damsm_dir=FOLDER written by "
                            "python -m t2igan.official damsm.")
        official.check_configuration(found, config, FLAGS.generator, 2 * config["text_hidden"])
        if "faithful_mask_bug" not in explicit:
            config["faithful_mask_bug"] = True  # the released generators were trained with it (README §3)
        if converting:
            config["damsm_backbone"] = "inception_torchvision"

    run_dir = FLAGS.run_dir or app.default_run_dir(chapter.number, FLAGS.dataset, FLAGS.profile)
    if os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")):
        raise UserError(f"{run_dir} already holds a generator; import into a new RUN_DIR.")
    _, run, config = chapter.setup(for_training=True, adjust=adjust)
    check_stage_sizes(config)
    index = chapter.load_data(config, for_training=True)
    if converting:
        if index.vocabulary_words and not FLAGS.captions:
            words, source = list(index.vocabulary_words), "the data set's captions.pickle"
        else:
            source = shared.find_captions(config["dataset"], FLAGS.captions, FLAGS.data_dir, FLAGS.data_root,
                                          FLAGS.metadata_dir)
            words = shared.official_vocabulary(source)
        shared.convert_damsm(FLAGS.text_encoder, FLAGS.image_encoder, words, run.text_encoder, config["dataset"],
                             source, config.get("damsm_align_corners", False))
    vocabulary, build_encoders = chapter.damsm(None, run, config, index)
    text, _ = build_encoders()
    official.check_configuration(found, config, FLAGS.generator, text.feature_dim)
    generator, average = build_generator(config, text.feature_dim), build_generator(config, text.feature_dim)
    official.load_generator(generator, state, FLAGS.generator)
    average.set_weights(generator.get_weights())
    Checkpointer(run.checkpoints, generator=generator, ema_generator=average).save(config["epochs"], generator.weights)
    record = dict(generator={"file": os.path.basename(FLAGS.generator), "sha256": shared.sha256(FLAGS.generator)},
                  configuration=found, faithful_mask_bug=config["faithful_mask_bug"],
                  damsm=config.get("damsm_dir") or run.text_encoder, vocabulary_size=len(vocabulary))
    with open(os.path.join(run.path, IMPORTED), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    print(f"Imported {os.path.basename(FLAGS.generator)} (gf {found['generator_width']}, {found['stages']} stages, "
          f"{found['residual_blocks']} residual blocks) into {run.path}, with the DAMSM in {record['damsm']}.\n"
          f"Sample: make chapter3-sample DATASET={config['dataset']} PROFILE={config['profile']} RUN_DIR={run.path} "
          'TEXT="this bird is red with white wings and a short beak"')


if __name__ == "__main__":
    chapter.run({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "import": import_official})
