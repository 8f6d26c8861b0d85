"""Chapter 4 commands: ``python -m chapters.ch4_dfgan_ratgan {pretrain,train,sample,eval,benchmark,import} --flags``.

(``make chapter4-train [VARIANT=ratgan|dfgan]`` etc. call these.) ``pretrain`` trains the DAMSM encoders
(chapter 3's ``damsm.py``); ``train`` runs it first when the run has none (or reuses ``--set
damsm_dir=...``), then trains DF-GAN or RAT-GAN (``model.py``, config → networks in ``build.py``) on the
frozen sentence features. ``benchmark`` times training steps at the official 256² configuration; ``import``
writes a run folder from DF-GAN's or RAT-GAN's released checkpoint (``official.py``).
"""

from __future__ import annotations

from t2igan.startup import quiet_tensorflow

quiet_tensorflow()  # first: TensorFlow's C++ start-up notes are filtered out (--verbose shows them)

import numpy as np
from absl import flags

from chapters.ch3_attngan import damsm
from chapters.ch4_dfgan_ratgan import official
from chapters.ch4_dfgan_ratgan.build import build_gan, build_networks, sampling_noise
from chapters.ch4_dfgan_ratgan.profiles import PROFILES, VARIANTS
from chapters.ch4_dfgan_ratgan.views import (discriminator_attention_callback, discriminator_attention_picture,
                                             modulation_statistics_callback)
from t2igan import cli
from t2igan.config import default_run_dir
from t2igan.errors import UserError
from t2igan.training import harness
from t2igan.training.run import refuse_imported_run

flags.adopt_module_key_flags(cli)  # the shared flags appear in --help too
CHAPTER = "ch4_dfgan_ratgan"
TITLES = {"dfgan": "DF-GAN", "ratgan": "RAT-GAN"}
flags.DEFINE_enum("variant", "ratgan", ["ratgan", "dfgan"],
                  "ratgan: RAT-GAN (recurrent affine controller, attention D); dfgan: the DF-GAN baseline.")
flags.DEFINE_bool("attention", False, "sample (RAT-GAN): also write the discriminator's attention over each image (ATTN=1).")
flags.DEFINE_integer("benchmark_batch", 8, "benchmark: batch size of the timed training steps.")
flags.DEFINE_integer("benchmark_steps", 3, "benchmark: timed steps after one warm-up (trace) step.")
flags.DEFINE_bool("benchmark_pytorch", False, "benchmark: the official PyTorch iteration beside ours, interleaved: the ratio.")
flags.DEFINE_bool("benchmark_sampling", False, "benchmark: time an evaluation instead (sampling and scoring, per image).")
flags.DEFINE_string("checkpoint", None, "import: DF-GAN's released state_epoch_*.pth or RAT-GAN's netG_*.pth (or their "
                    ".npz); official.py.")
flags.DEFINE_string("discriminator_checkpoint", None, "import (RAT-GAN): its netD_*.pth too (for ATTN=1); optional.")


def run_dir(options) -> str:
    """A DF-GAN run lives beside the RAT-GAN one: ``runs/ch4-<dataset>-<profile>-dfgan``."""
    return options.run_dir or default_run_dir(4, options.dataset, options.profile,
                                              "dfgan" if options.variant == "dfgan" else "")


def start_training(options, also=None):
    """Config, run folder and lock; ``also(config)``: the import's own checks (train refuses an imported run)."""
    if also is None:
        refuse_imported_run(run_dir(options))

    def adjust(config):
        config["variant"] = options.variant
        if also is not None:
            also(config)

    return harness.start_training(CHAPTER, options, PROFILES, run_dir=run_dir(options), adjust=adjust,
                                  variant_settings=VARIANTS[options.profile][options.variant],
                                  check_networks=build_networks)


def pretrain(options):
    """``chapter4-pretrain``: (re)train DAMSM for this run."""
    strategy, run, config = start_training(options)
    if config.get("damsm_dir"):
        raise UserError("This run reuses the DAMSM in damsm_dir; pretrain in the run that owns it.")
    damsm.pretrain_for_run(strategy, run, config, harness.load_data(config, options.data_root), options.data_root)
    harness.commit_config(run)


def train(options):
    from t2igan.data.pipeline import make_dataset
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.training.run import Timer

    strategy, run, config = start_training(options)
    timer = Timer()
    index = harness.load_data(config, options.data_root)
    vocabulary, build_encoders = damsm.for_run(run, config, index, options.data_root, strategy)
    images = harness.image_array(index, config, "train", options.data_root)
    batch_size = config["batch_size"]
    steps_per_epoch = harness.steps_per_epoch(config, len(images), batch_size)
    encoders = {}  # (text, image): the image encoder only scores R-precision during training
    gan, optimizers, checkpointer, initial_epoch = harness.build_for_training(
        strategy, run, config, lambda: build_gan(config, encoders.setdefault("damsm", build_encoders())[0]),
        len(images) // batch_size, mixed_precision=options.mixed_precision)
    if harness.already_trained(run.path, config["epochs"], initial_epoch):
        return
    dataset = make_dataset(images, harness.example_class_ids(index.train), damsm.id_table(index.train, vocabulary),
                           global_batch_size=batch_size, image_size=config["image_size"], augment=config["augment"],
                           seed=config["seed"], words_num=config["words_num"], noise_shape=(1, config["noise_dim"]),
                           start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * columns, config["noise_dim"])).astype(np.float32)
    grid_noise = sampling_noise(config, grid_noise)

    def render():
        images = gan.generate(grid_noise, grid_ids, grid_lengths).numpy()
        return images.reshape(rows, columns, *images.shape[1:])

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(sampling_noise(config, noise), test_ids[example_indices, caption_indices],
                            test_lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, generated):
        return damsm_r_precision(gan.text_encoder, encoders["damsm"][1], index, test_ids, test_lengths, plan, generated,
                                 1234, config.get("r_precision_protocol", "dm-gan"))

    grid_captions = [index.test[i].captions[0] for i in range(rows)]
    callbacks = harness.training_callbacks(run, config, gan, checkpointer, optimizers, render, grid_captions)
    callbacks.append(modulation_statistics_callback(gan, grid_noise, grid_ids, grid_lengths, callbacks.writer))
    if config["variant"] == "ratgan" and config["discriminator_head"] == "attention":
        callbacks.append(discriminator_attention_callback(gan, grid_noise[::columns], grid_ids[::columns],
                                                          grid_lengths[::columns], callbacks.writer, grid_captions))
    metrics = harness.metrics_callback(config, index, options.data_root, generate, config["noise_dim"],
                                       callbacks.writer, extra=r_precision)
    callbacks += [metrics] if metrics else []
    harness.fit(gan, dataset, run, config, strategy, callbacks, steps_per_epoch=steps_per_epoch,
                initial_epoch=initial_epoch, timer=timer, title=TITLES[config["variant"]])


def restored(options, image_encoder: bool = False):
    """The trained run: ``(run, config, index, vocabulary, gan, DAMSM image encoder or None)``."""
    run, config = harness.open_run(CHAPTER, options, run_dir(options), variant_key="variant")
    index = harness.load_data(config, options.data_root, report_missing=False)
    vocabulary, build_encoders = damsm.for_run(run, config, index, options.data_root)
    text, image = build_encoders()
    train_command = "make chapter4-train" + (" VARIANT=dfgan" if config.get("variant") == "dfgan" else "")
    gan = harness.restore_generator(run, build_gan(config, text), train_command=train_command)
    return run, config, index, vocabulary, gan, image if image_encoder else None


def sample(options):
    harness.check_sample_count(options.n)
    run, config, _, vocabulary, gan, _ = restored(options)
    official.check_attention_request(run.path, config, options.attention)
    ids, length = damsm.encode_user_caption(vocabulary, options.text, config["words_num"])
    n = options.n
    noise = sampling_noise(config, harness.sample_noise(n, config["noise_dim"], options.sample_seed))
    batch_ids, batch_lengths = np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)
    images = gan.generate(noise, batch_ids, batch_lengths).numpy()
    path = harness.save_sample_grid(images, harness.sample_path(run, options.text, options.sample_seed, options.output),
                                    caption=options.text)
    if options.attention:
        maps = gan.discriminator_attention(images, batch_ids, batch_lengths)
        picture = discriminator_attention_picture(images, maps.numpy(), caption=options.text)
        harness.save_sample_grid(picture, path[:-4] + "-attention.png")


def evaluate(options):
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.scoring import evaluate_run

    run, config, index, vocabulary, gan, image_encoder = restored(options, image_encoder=True)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])

    def generate(example_indices, caption_indices, noise):
        noise = sampling_noise(config, noise)
        return gan.generate(noise, ids[example_indices, caption_indices], lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, images):
        return damsm_r_precision(gan.text_encoder, image_encoder, index, ids, lengths, plan, images, options.sample_seed,
                                 config.get("r_precision_protocol", "dm-gan"))

    truncation = ", noise 0.88×N(0,1) truncated at ±2" if config["truncation"] else ""
    name = "EMA generator" if config["ema_decay"] > 0 else "generator"
    evaluate_run(run, config, index, generate, config["noise_dim"], options.eval_samples, options.sample_seed,
                 options.data_root, generator_name=f"{config['variant']} {name} ({config['image_size']} px{truncation})",
                 extra=r_precision)


def benchmark(options):
    """Seconds per training step at a profile's networks (``benchmark.py``); no data, no run folder."""
    from chapters.ch4_dfgan_ratgan.benchmark import benchmark as time_steps, compare_with_pytorch, sampling_cost
    from t2igan.config import resolve_config

    config = resolve_config(PROFILES, options.profile, options.dataset, options.set, None,
                            VARIANTS[options.profile][options.variant])
    config["variant"] = options.variant
    if options.benchmark_sampling:
        return sampling_cost(config, options.benchmark_batch, options.benchmark_steps)
    if options.benchmark_pytorch:
        return compare_with_pytorch(config, options.benchmark_batch, options.benchmark_steps)
    harness.apply_jit_compile_flag(config, options)
    time_steps(config, options.benchmark_batch, options.benchmark_steps, config["jit_compile"])


if __name__ == "__main__":
    cli.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "benchmark": benchmark,
                      "import": lambda options: official.import_run(start_training, options, run_dir(options))},
                     f"usage: python -m chapters.{CHAPTER} {{pretrain,train,sample,eval,benchmark,import}} "
                     "[--variant=ratgan|dfgan] [--dataset=shapes] [--profile=course] [--run_dir=...] ...")
