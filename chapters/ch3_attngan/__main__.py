"""Chapter 3 commands: ``python -m chapters.ch3_attngan {pretrain,train,sample,eval,import} --flags``.

(``make chapter3-train`` etc. call these.) ``pretrain`` trains DAMSM (text and image encoders,
``damsm.py``); ``train`` runs it first when the run has none, then trains AttnGAN (``model.py``,
config → networks in ``build.py``) with the frozen encoders. ``import`` makes a run folder from the
released official generator and DAMSM for ``sample`` and ``eval`` (``official.py``).
"""

from __future__ import annotations

from t2igan.startup import quiet_tensorflow

quiet_tensorflow()  # first: TensorFlow's C++ start-up notes are filtered out (--verbose shows them)

import numpy as np
from absl import flags

from chapters.ch2_stackgan.stages import check_stage_sizes
from chapters.ch3_attngan import damsm, official
from chapters.ch3_attngan.build import build_gan, check_networks, input_noise_dim
from chapters.ch3_attngan.profiles import PROFILES
from chapters.ch3_attngan.views import attention_maps_callback, word_attention_picture, words_of
from t2igan import cli
from t2igan.config import default_run_dir
from t2igan.errors import UserError
from t2igan.sampling import stages_side_by_side
from t2igan.training import harness

flags.adopt_module_key_flags(cli)  # the shared flags appear in --help too
CHAPTER = "ch3_attngan"
flags.DEFINE_bool("attention", False, "sample: also write the attention map of every word (ATTN=1).")
flags.DEFINE_string("generator", None, "import: the official AttnGAN generator (bird_AttnGAN2.pth, coco_AttnGAN2.pth, or .npz).")
flags.DEFINE_string("text_encoder", None, "import: the official DAMSM text encoder (text_encoder200.pth for birds), "
                    "converted into the run's text_encoder folder with --image_encoder; else --set damsm_dir=FOLDER.")
flags.DEFINE_string("image_encoder", None, "import: the official DAMSM image encoder (image_encoder200.pth for birds).")
flags.DEFINE_string("captions", None, "import: the data set's official captions.pickle (the DAMSM's word ids); "
                    "default: the data folder's, then --metadata_dir's.")


def run_dir(options) -> str:
    return options.run_dir or default_run_dir(3, options.dataset, options.profile)


def start_training(options):
    official.refuse_imported_run(run_dir(options))
    return harness.start_training(CHAPTER, options, PROFILES, check_networks=check_networks)


def pretrain(options):
    """``chapter3-pretrain``: (re)train DAMSM for this run."""
    strategy, run, config = start_training(options)
    index = harness.load_data(config, options.data_root)
    if config.get("damsm_dir"):
        raise UserError("This run reuses the DAMSM in damsm_dir; pretrain in the run that owns it.")
    damsm.pretrain_for_run(strategy, run, config, index, options.data_root)
    harness.commit_config(run)


def train(options):
    from t2igan.data.pipeline import make_dataset
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.training.run import Timer

    strategy, run, config = start_training(options)
    timer = Timer()
    index = harness.load_data(config, options.data_root)
    vocabulary, build_encoders = damsm.for_run(run, config, index, options.data_root, strategy)
    table = damsm.id_table(index.train, vocabulary)
    images = harness.image_array(index, config, "train", options.data_root)
    batch_size = config["batch_size"]
    steps_per_epoch = harness.steps_per_epoch(config, len(images), batch_size)
    gan, optimizers, checkpointer, initial_epoch = harness.build_for_training(
        strategy, run, config, lambda: build_gan(config, build_encoders()), len(images) // batch_size,
        mixed_precision=options.mixed_precision)
    if harness.already_trained(run.path, config["epochs"], initial_epoch):
        return
    dataset = make_dataset(images, harness.example_class_ids(index.train), table, global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           words_num=config["words_num"], noise_shape=(1, input_noise_dim(config)),
                           start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * columns, input_noise_dim(config))).astype(np.float32)
    size = config["image_size"]

    def render():
        return stages_side_by_side(gan.generate(grid_noise, grid_ids, grid_lengths, all_stages=True), rows, columns, size)

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(noise, test_ids[example_indices, caption_indices],
                            test_lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, generated):
        return damsm_r_precision(gan.text_encoder, gan.image_encoder, index, test_ids, test_lengths, plan, generated, 1234,
                                 config.get("r_precision_protocol", "dm-gan"))

    callbacks = harness.training_callbacks(run, config, gan, checkpointer, optimizers, render,
                                           [index.test[i].captions[0] for i in range(rows)])
    callbacks.append(attention_maps_callback(gan, grid_ids[::columns][:4], grid_lengths[::columns][:4],
                                             grid_noise[::columns][:4], vocabulary, size, callbacks.writer))
    metrics = harness.metrics_callback(config, index, options.data_root, generate, input_noise_dim(config),
                                       callbacks.writer, extra=r_precision)
    callbacks += [metrics] if metrics else []
    harness.fit(gan, dataset, run, config, strategy, callbacks, steps_per_epoch=steps_per_epoch,
                initial_epoch=initial_epoch, timer=timer, title="AttnGAN")


def restored(options):
    run, config = harness.open_run(CHAPTER, options)
    check_stage_sizes(config)
    index = harness.load_data(config, options.data_root, report_missing=False)
    vocabulary, build_encoders = damsm.for_run(run, config, index, options.data_root)
    gan = harness.restore_generator(run, build_gan(config, build_encoders()))
    return run, config, index, vocabulary, gan


def sample(options):
    harness.check_sample_count(options.n)
    run, config, _, vocabulary, gan = restored(options)
    ids, length = damsm.encode_user_caption(vocabulary, options.text, config["words_num"])
    n = options.n
    noise = harness.sample_noise(n, input_noise_dim(config), options.sample_seed)
    batch_ids, batch_lengths = np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)
    images, maps = gan.generate(noise, batch_ids, batch_lengths, return_attention=True)
    path = harness.save_sample_grid(images.numpy(), harness.sample_path(run, options.text, options.sample_seed,
                                                                        options.output), caption=options.text)
    if options.attention:
        words = words_of(vocabulary, ids, length)
        print("Columns: the image, then " + " | ".join(words))
        picture = word_attention_picture(images.numpy()[:4], maps[-1].numpy()[:4], words, config["image_size"], options.text)
        harness.save_sample_grid(picture, path[:-4] + "-attention.png")


def evaluate(options):
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.scoring import evaluate_run

    run, config, index, vocabulary, gan = restored(options)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, ids[example_indices, caption_indices], lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, images):
        """DM-GAN's R-precision with this run's DAMSM encoders (1 true + 99 mismatched captions)."""
        return damsm_r_precision(gan.text_encoder, gan.image_encoder, index, ids, lengths, plan, images, options.sample_seed,
                                 config.get("r_precision_protocol", "dm-gan"))

    evaluate_run(run, config, index, generate, input_noise_dim(config), options.eval_samples, options.sample_seed,
                 options.data_root, generator_name=f"EMA generator (largest stage, {config['image_size']} px)",
                 extra=r_precision)


def import_official(options):
    """``chapter3-import``: the released AttnGAN generator and DAMSM as a run folder (``official.py``)."""
    official.import_run(CHAPTER, options, PROFILES, run_dir(options))


if __name__ == "__main__":
    cli.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "import": import_official},
                     f"usage: python -m chapters.{CHAPTER} {{pretrain,train,sample,eval,import}} "
                     "[--dataset=shapes] [--profile=course] [--run_dir=...] ...")
