"""Chapter 5 commands: ``python -m chapters.ch5_vlmgan {pretrain,train,sample,eval,vlms} --variant=dfgan|attngan``.

(``make chapter5-train [VARIANT=dfgan|attngan]`` etc. call these.) ``pretrain`` trains the VLM (``vlm.py``:
a copy of the run's DAMSM, trained with the local, global and general matching objectives); ``train``
pretrains DAMSM and the VLM first when the run has none (or reuses ``--set damsm_dir=…`` / ``--set
vlm_dir=…``), then trains chapter 3's AttnGAN or chapter 4's DF-GAN with λ2·L_VLM + λ1·L_VVM added to
the generator loss (``model.py``; config → GAN in ``build.py``). ``vlms --score_run=RUN`` scores another
chapter's run with this run's VLM (``score_run.py``).
"""

from __future__ import annotations

from t2igan.startup import quiet_tensorflow

quiet_tensorflow()  # first: TensorFlow's C++ start-up notes are filtered out (--verbose shows them)

import numpy as np
from absl import flags

from chapters.ch2_stackgan.stages import check_stage_sizes
from chapters.ch3_attngan import damsm
from chapters.ch5_vlmgan.build import (TITLES, build_gan, check_networks, input_noise_dim, real_pair_references,
                                       sampling_noise, vlms_extra)
from chapters.ch5_vlmgan.profiles import PROFILES
from chapters.ch5_vlmgan.vlm import load_vlm, pretrain_vlm
from t2igan import cli
from t2igan.config import default_run_dir
from t2igan.errors import UserError
from t2igan.training import harness

flags.adopt_module_key_flags(cli)  # the shared flags appear in --help too
CHAPTER = "ch5_vlmgan"
flags.DEFINE_enum("variant", "dfgan", ["dfgan", "attngan"],
                  "dfgan: VLMGAN+DFGAN (chapter 4's DF-GAN); attngan: VLMGAN+AttnGAN (chapter 3's model).")
flags.DEFINE_string("score_run", None, "vlms: a chapter 3 or 4 run folder whose generator this run's VLM scores.")


def run_dir(options) -> str:
    return options.run_dir or default_run_dir(5, options.dataset, options.profile, options.variant)


def checked(config):
    if config["vlm_variant"] == "attngan":
        check_stage_sizes(config)
    return config


def start_training(options):
    def adjust(config):
        config["vlm_variant"] = options.variant

    return harness.start_training(CHAPTER, options, PROFILES[options.variant], run_dir=run_dir(options),
                                  adjust=adjust, check_networks=check_networks)


def pretrain(options):
    """``chapter5-pretrain``: DAMSM (when the run has none) and the VLM for this run."""
    strategy, run, config = start_training(options)
    index = harness.load_data(config, options.data_root)
    if config.get("vlm_dir"):
        raise UserError("This run reuses the VLM in vlm_dir; pretrain in the run that owns it.")
    vocabulary, build_damsm = damsm.for_run(run, config, index, options.data_root, strategy)
    pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary, options.data_root)
    harness.commit_config(run)


def train(options):
    from t2igan.data.pipeline import make_dataset
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.training.run import Timer

    strategy, run, config = start_training(options)
    timer = Timer()
    index = harness.load_data(config, options.data_root)
    vocabulary, build_damsm = damsm.for_run(run, config, index, options.data_root, strategy)
    build_vlm_networks = load_vlm(run, config, index, build_damsm, vocabulary, options.data_root, strategy)
    images = harness.image_array(index, config, "train", options.data_root)
    batch_size = config["batch_size"]
    steps_per_epoch = harness.steps_per_epoch(config, len(images), batch_size)
    networks = {}

    def build():
        networks["damsm"], networks["vlm"] = build_damsm(), build_vlm_networks()
        return build_gan(config, networks["damsm"], networks["vlm"])

    gan, optimizers, checkpointer, initial_epoch = harness.build_for_training(
        strategy, run, config, build, len(images) // batch_size, mixed_precision=options.mixed_precision)
    if harness.already_trained(run.path, config["epochs"], initial_epoch):
        return
    dataset = make_dataset(images, harness.example_class_ids(index.train), damsm.id_table(index.train, vocabulary),
                           global_batch_size=batch_size, image_size=config["image_size"], augment=config["augment"],
                           seed=config["seed"], words_num=config["words_num"], noise_shape=(1, input_noise_dim(config)),
                           start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = sampling_noise(config, np.random.default_rng(1234).standard_normal(
        (rows * columns, input_noise_dim(config))).astype(np.float32))

    def render():
        images = np.asarray(gan.generate(grid_noise, grid_ids, grid_lengths))
        return images.reshape(rows, columns, *images.shape[1:])

    def generate(example_indices, caption_indices, noise):
        return np.asarray(gan.generate(sampling_noise(config, noise), test_ids[example_indices, caption_indices],
                                       test_lengths[example_indices, caption_indices]))

    vlms = vlms_extra(networks["vlm"], config, test_ids, test_lengths, 1234)

    def metrics(plan, generated):  # R-precision (the DAMSM) and VLMS (the VLM) during training
        results, protocol = damsm_r_precision(gan.text_encoder, networks["damsm"][1], index, test_ids, test_lengths,
                                              plan, generated, 1234, config.get("r_precision_protocol", "dm-gan"))
        more, _ = vlms(plan, generated)
        return {**results, **more}, protocol

    callbacks = harness.training_callbacks(run, config, gan, checkpointer, optimizers, render,
                                           [index.test[i].captions[0] for i in range(rows)])
    periodic = harness.metrics_callback(config, index, options.data_root, generate, input_noise_dim(config),
                                        callbacks.writer, extra=metrics)
    callbacks += [periodic] if periodic else []
    harness.fit(gan, dataset, run, config, strategy, callbacks, steps_per_epoch=steps_per_epoch,
                initial_epoch=initial_epoch, timer=timer, title=TITLES[config["vlm_variant"]])


def restored(options):
    """The trained run: ``(run, config, index, vocabulary, gan, DAMSM encoders, VLM networks)``."""
    run, config = harness.open_run(CHAPTER, options, run_dir(options), variant_key="vlm_variant")
    checked(config)
    index = harness.load_data(config, options.data_root, report_missing=False)
    vocabulary, build_damsm = damsm.for_run(run, config, index, options.data_root)
    encoders, vlm = build_damsm(), load_vlm(run, config, index, build_damsm, vocabulary, options.data_root)()
    gan = harness.restore_generator(run, build_gan(config, encoders, vlm),
                                    train_command=f"make chapter5-train VARIANT={config['vlm_variant']}")
    return run, config, index, vocabulary, gan, encoders, vlm


def sample(options):
    harness.check_sample_count(options.n)
    run, config, _, vocabulary, gan, _, _ = restored(options)
    ids, length = damsm.encode_user_caption(vocabulary, options.text, config["words_num"])
    n = options.n
    noise = sampling_noise(config, harness.sample_noise(n, input_noise_dim(config), options.sample_seed))
    images = np.asarray(gan.generate(noise, np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)))
    harness.save_sample_grid(images, harness.sample_path(run, options.text, options.sample_seed, options.output),
                             caption=options.text)


def evaluate(options):
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.scoring import evaluate_run

    run, config, index, vocabulary, gan, encoders, vlm = restored(options)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    seed = options.sample_seed

    def generate(example_indices, caption_indices, noise):
        return np.asarray(gan.generate(sampling_noise(config, noise), ids[example_indices, caption_indices],
                                       lengths[example_indices, caption_indices]))

    vlms = vlms_extra(vlm, config, ids, lengths, seed)

    def extra(plan, images):
        results, protocol = damsm_r_precision(gan.text_encoder, encoders[1], index, ids, lengths, plan, images, seed,
                                              config.get("r_precision_protocol", "dm-gan"))
        more, more_protocol = vlms(plan, images)
        real = harness.image_array(index, config, "test", options.data_root, vlm[1].input_size or config["image_size"])
        results.update(more, **real_pair_references(vlm, config, real, ids, lengths, plan, seed))
        more_protocol["vlms_references"] = ("the same captions with their real test images (upper) and with the real "
                                            "images of a seeded derangement (lower)")
        return results, {**protocol, **more_protocol}

    weights = f"λ1 (VVM) {config['vvm_weight']}, λ2 (VLM) {config['vlm_weight']}"
    evaluate_run(run, config, index, generate, input_noise_dim(config), options.eval_samples, seed, options.data_root,
                 generator_name=f"{TITLES[config['vlm_variant']]} ({weights}; {config['image_size']} px)", extra=extra)


def score_other_run(options):
    """``vlms --score_run=RUN``: a chapter 3 or 4 run scored with this run's VLM (``score_run.py``)."""
    from chapters.ch5_vlmgan.score_run import score_run

    if not options.score_run:
        raise UserError("vlms needs --score_run=RUN_DIR (a chapter 3 or 4 run).")
    run, config, index, vocabulary, _, _, vlm = restored(options)
    score_run(options.score_run, run, config, index, vocabulary, vlm, options)


if __name__ == "__main__":
    cli.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "vlms": score_other_run},
                     f"usage: python -m chapters.{CHAPTER} {{pretrain,train,sample,eval,vlms}} [--variant=dfgan|attngan] "
                     "[--dataset=shapes] [--profile=course] [--run_dir=...] ...")
