"""Chapter 5 commands: ``python -m chapters.05_vlmgan {pretrain,train,sample,eval,vlms} --variant=dfgan|attngan``.

(``make chapter5-train [VARIANT=dfgan|attngan]`` etc. call these.) ``pretrain`` trains the VLM (a copy of
the run's DAMSM, trained with the local, global and general matching objectives); ``train`` pretrains
DAMSM and the VLM first when the run has none (or reuses ``--set damsm_dir=…`` / ``--set vlm_dir=…``),
then trains chapter 3's AttnGAN or chapter 4's DF-GAN with λ2·L_VLM + λ1·L_VVM added to the generator
loss. ``vlms --score_run=RUN`` scores another chapter's run with this run's VLM. The networks and
losses are in ``model.py``.
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
from absl import flags

from t2igan import app
from t2igan.app import FLAGS, UserError
from t2igan.workflow import Chapter

flags.DEFINE_enum("variant", "dfgan", ["dfgan", "attngan"],
                  "dfgan: VLMGAN+DFGAN (chapter 4's DF-GAN); attngan: VLMGAN+AttnGAN (chapter 3's model).")
flags.DEFINE_string("score_run", None, "vlms: a chapter 3 or 4 run folder whose generator this run's VLM scores.")

chapter = Chapter("05_vlmgan", 5, "VLMGAN")
attngan_build = importlib.import_module("chapters.03_attngan.build")
dfgan_build = importlib.import_module("chapters.04_dfgan_ratgan.build")


def _setup(for_training):
    if not FLAGS.run_dir:
        FLAGS.run_dir = f"{app.default_run_dir(chapter.number, FLAGS.dataset, FLAGS.profile)}-{FLAGS.variant}"
    profiles = chapter.module("profiles").PROFILES[FLAGS.variant]

    def adjust(config):
        config["vlm_variant"] = FLAGS.variant

    strategy, run, config = chapter.setup(for_training, adjust, profiles=profiles if for_training else None)
    chapter.title = {"attngan": "VLMGAN+AttnGAN", "dfgan": "VLMGAN+DFGAN"}[config["vlm_variant"]]
    if config["vlm_variant"] == "attngan":
        from t2igan.stages import check_stage_sizes

        check_stage_sizes(config)
    return strategy, run, config


def noise_dim(config) -> int:
    return attngan_build.noise_width(config) if config["vlm_variant"] == "attngan" else config["noise_dim"]


# ----------------------------------------------------------------------------- the VLM
def vlm_folder(run, config) -> str:
    folder = config.get("vlm_dir") or os.path.join(run.path, "vlm")
    if config.get("vlm_dir") and not os.path.isfile(os.path.join(folder, "complete.json")):
        raise UserError(f"vlm_dir: {folder} holds no pretrained VLM. Point it at a chapter 5 run's vlm folder, "
                        "or leave it empty to pretrain one.")
    return folder


def build_vlm(config, damsm_encoders):
    """(text, image, MSB): copies of the DAMSM encoders (U1) and a fresh Matching Score Block (U6)."""
    import tensorflow as tf

    model = chapter.module("model")
    text, image = model.vlm_encoders_from_damsm(*damsm_encoders)
    size = image.input_size or config["image_size"]
    regions = model.flatten_regions(image(tf.zeros((1, size, size, 3)))[0]).shape[1]
    width = config["damsm_dim"]
    msb = model.MatchingScoreBlock(regions, config["words_num"], width, config["msb_depth"], config["msb_heads"],
                                   config["msb_ffn"], config["msb_dropout"])
    msb([tf.zeros((1, regions, width)), tf.zeros((1, width)), tf.zeros((1, config["words_num"], width)),
         tf.zeros((1, width)), tf.ones((1, config["words_num"]), tf.bool)])
    return text, image, msb


def _vlm_paths(folder):
    return [os.path.join(folder, f"{name}.weights.h5") for name in ("text", "image", "msb")]


def pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary):
    """Trains the VLM on real pairs (U7, U8): DAMSM's schedule (Adam β (0.5, 0.999) re-created each epoch,
    lr × decay per epoch down to the floor, text gradients clipped); keeps the epoch with the best held-out
    caption → image top-1 (by S_global). Writes ``vlm/`` and returns the report."""
    import keras

    from t2igan import char_cnn_rnn, damsm

    model = chapter.module("model")
    folder = os.path.join(run.path, "vlm")
    os.makedirs(folder, exist_ok=True)
    _, dataset, validation, steps = damsm.pair_datasets(config, index, vocabulary,
                                                        lambda split, size: chapter.images(index, config, split, size),
                                                        config["vlm_batch_size"], config["vlm_steps_per_epoch"])
    with strategy.scope():
        text, image, msb = build_vlm(config, build_damsm())
        pretrainer = model.VlmPretrainer(text, image, msb, config["gamma1"], config["gamma2"], config["gamma3"],
                                         config["vlm_local_form"], config["damsm_gradient_clip"],
                                         hard_negatives=config["vlm_hard_negatives"],
                                         freeze_backbone=config["vlm_freeze_backbone"])
        pretrainer.compile(optimizer=keras.optimizers.Adam(config["vlm_learning_rate"], beta_1=0.5, beta_2=0.999))
        pretrainer.build_optimizer()

    class Schedule(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_logs = -1.0, 0, {}

        def on_epoch_begin(self, epoch, logs=None):
            rate = max(config["vlm_learning_rate"] * config["vlm_learning_rate_decay"] ** epoch,
                       config["vlm_learning_rate_floor"])
            pretrainer.reset_optimizer_state()
            pretrainer.optimizer.learning_rate.assign(rate)

        def on_epoch_end(self, epoch, logs=None):
            score = float((logs or {}).get("val_retrieval_top1", -1.0))
            if score > self.best:
                self.best, self.best_epoch, self.best_logs = score, epoch + 1, dict(logs or {})
                for network, path in zip((text, image, msb), _vlm_paths(folder)):
                    network.save_weights(path)

    schedule = Schedule()
    pretrainer.fit(dataset, epochs=config["vlm_epochs"], steps_per_epoch=steps, validation_data=validation,
                   callbacks=[schedule, keras.callbacks.TensorBoard(os.path.join(run.logs, "vlm"), write_graph=False)],
                   verbose=app.fit_verbosity())
    report = {key: float(value) for key, value in schedule.best_logs.items()}
    report.update(best_epoch=schedule.best_epoch, data_fingerprint=char_cnn_rnn.fingerprint(index))
    with open(os.path.join(folder, "complete.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    run.update_metrics("pretrain_vlm", report)
    print(f"VLM: held-out caption→image top-1 {report.get('val_retrieval_top1', float('nan')):.3f}, MSB accuracy "
          f"{report.get('val_msb_accuracy', float('nan')):.3f} (epoch {schedule.best_epoch}, kept); saved in {folder}")
    return report


def load_vlm(run, config, index, build_damsm, vocabulary, strategy=None):
    """→ build() giving the pretrained (text, image, MSB); pretrains the VLM first when training and absent."""
    folder = vlm_folder(run, config)
    if not os.path.isfile(os.path.join(folder, "complete.json")):
        if strategy is None:
            raise UserError(f"No pretrained VLM in {folder}. Train first: make chapter5-train RUN_DIR={run.path}")
        pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary)

    def build():
        networks = build_vlm(config, build_damsm())
        for network, path in zip(networks, _vlm_paths(folder)):
            network.load_weights(path)
        return networks

    return build


# ----------------------------------------------------------------------------- the GAN
def build_gan(config, damsm_encoders, vlm):
    model = chapter.module("model")
    text, image, msb = vlm
    vlm_kwargs = dict(vlm_text_encoder=text, vlm_image_encoder=image, msb=msb, vvm_weight=config["vvm_weight"],
                      vlm_weight=config["vlm_weight"], vlm_gammas=(config["gamma1"], config["gamma2"], config["gamma3"]),
                      local_form=config["vlm_local_form"])
    if config["vlm_variant"] == "attngan":
        return attngan_build.build_gan(config, damsm_encoders, model.VlmAttnGan, **vlm_kwargs)
    return dfgan_build.build_gan(config, damsm_encoders[0], model.VlmDfGan, **vlm_kwargs)


def _noise(config, noise):
    return dfgan_build.sampling_noise(config, noise) if config["vlm_variant"] == "dfgan" else noise


def vlms_extra(vlm, config, ids, lengths, seed):
    """``evaluate_run``'s ``extra`` form: VLMS (mean S_general) of generated images and their captions."""
    model = chapter.module("model")
    text, image, msb = vlm

    def measure(plan, images):
        chosen = tuple(np.array(p) for p in zip(*plan))
        scores = model.vlm_score(msb, text, image, images, ids[chosen], lengths[chosen], gamma1=config["gamma1"],
                                 gamma2=config["gamma2"], local_form=config["vlm_local_form"])
        protocol = {"vlms": f"mean MSB score of {scores['pairs']} (generated image, its caption) pairs under this "
                            f"run's frozen VLM (seed {seed}); not comparable with the paper's values"}
        return {"vlms": scores["vlms"], "vlm_s_global": scores["s_global"], "vlm_s_local": scores["s_local"]}, protocol

    return measure


def train():
    from t2igan import damsm
    from t2igan.data.pipeline import make_dataset
    from t2igan.metrics.r_precision import damsm_r_precision
    from t2igan.training.run import Timer

    strategy, run, config = _setup(for_training=True)
    timer = Timer()
    index = chapter.load_data(config, for_training=True)
    vocabulary, build_damsm = chapter.damsm(strategy, run, config, index)
    build_vlm_networks = load_vlm(run, config, index, build_damsm, vocabulary, strategy)
    images = chapter.images(index, config, "train")
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size
    networks = {}

    def build():
        networks["damsm"], networks["vlm"] = build_damsm(), build_vlm_networks()
        return build_gan(config, networks["damsm"], networks["vlm"])

    gan, optimizers, checkpointer, initial_epoch = chapter.build_for_training(strategy, run, config, build,
                                                                              len(images) // batch_size)
    if chapter.already_trained(run.path, config["epochs"], initial_epoch):
        return
    class_ids = np.array([e.class_id for e in index.train], np.int32)
    dataset = make_dataset(images, class_ids, damsm.id_table(index.train, vocabulary), global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           words_num=config["words_num"], noise_shape=(1, noise_dim(config)),
                           start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = _noise(config, np.random.default_rng(1234).standard_normal((rows * columns, noise_dim(config))).astype(np.float32))

    def render():
        images = np.asarray(gan.generate(grid_noise, grid_ids, grid_lengths))
        return images.reshape(rows, columns, *images.shape[1:])

    def generate(example_indices, caption_indices, noise):
        return np.asarray(gan.generate(_noise(config, noise), test_ids[example_indices, caption_indices],
                                       test_lengths[example_indices, caption_indices]))

    vlms = vlms_extra(networks["vlm"], config, test_ids, test_lengths, 1234)

    def metrics(plan, generated):  # R-precision (the DAMSM) and VLMS (the VLM) during training
        results, protocol = damsm_r_precision(gan.text_encoder, networks["damsm"][1], index, test_ids, test_lengths,
                                              plan, generated, 1234)
        more, _ = vlms(plan, generated)
        return {**results, **more}, protocol

    chapter.fit(gan, run, config, strategy, dataset, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                checkpointer=checkpointer, render=render, grid_captions=[index.test[i].captions[0] for i in range(rows)],
                optimizers=optimizers, timer=timer, index=index, metrics_generate=generate,
                noise_dim=noise_dim(config), metrics_extra=metrics)


# ----------------------------------------------------------------------------- pretrain, sample, eval
def pretrain():
    """``chapter5-pretrain``: DAMSM (when the run has none) and the VLM for this run."""
    strategy, run, config = _setup(for_training=True)
    index = chapter.load_data(config, for_training=True)
    if config.get("vlm_dir"):
        raise UserError("This run reuses the VLM in vlm_dir; pretrain in the run that owns it.")
    vocabulary, build_damsm = chapter.damsm(strategy, run, config, index)
    pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary)


def _restored(run, config):
    index = chapter.load_data(config, for_training=False)
    vocabulary, build_damsm = chapter.damsm(None, run, config, index)
    encoders, vlm = build_damsm(), load_vlm(run, config, index, build_damsm, vocabulary)()
    gan = chapter.restore_generator(run, build_gan(config, encoders, vlm),
                                    train_command=f"make chapter5-train VARIANT={config['vlm_variant']}")
    return index, vocabulary, gan, encoders, vlm


def sample():
    from t2igan import damsm
    from t2igan.sampling import make_grid, save_png

    _, run, config = _setup(for_training=False)
    chapter.check_sample_count()
    if FLAGS.interpolate_to:
        raise UserError("--interpolate_to is chapter 1's (GAN-INT); it is not implemented for chapter 5.")
    _, vocabulary, gan, _, _ = _restored(run, config)
    ids, length = damsm.encode_user_caption(vocabulary, FLAGS.text, config["words_num"])
    n = FLAGS.n
    noise = _noise(config, chapter.sample_noise(n, noise_dim(config)))
    images = np.asarray(gan.generate(noise, np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)))
    path = chapter.sample_path(run)
    save_png(make_grid(images[None]), path, scale=2)
    print(path)


def _real_pair_references(vlm, config, index, ids, lengths, plan, seed):
    """VLMS of real test pairs (upper reference) and of mismatched real pairs (lower reference)."""
    model = chapter.module("model")
    text, image, msb = vlm
    size = image.input_size or config["image_size"]
    real = chapter.images(index, config, "test", size).astype(np.float32) / 127.5 - 1.0
    examples, captions = (np.array(p) for p in zip(*plan))
    pairs = (real[examples], ids[examples, captions], lengths[examples, captions])
    kwargs = dict(gamma1=config["gamma1"], gamma2=config["gamma2"], local_form=config["vlm_local_form"])
    matched = model.vlm_score(msb, text, image, *pairs, **kwargs)
    mismatched = model.vlm_score(msb, text, image, *pairs, shuffle_seed=seed, **kwargs)
    return {"vlms_real_pairs": matched["vlms"], "vlms_mismatched_real_pairs": mismatched["vlms"]}


def evaluate():
    from t2igan import damsm, evaluation
    from t2igan.metrics.r_precision import damsm_r_precision

    _, run, config = _setup(for_training=False)
    index, vocabulary, gan, encoders, vlm = _restored(run, config)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])

    def generate(example_indices, caption_indices, noise):
        return np.asarray(gan.generate(_noise(config, noise), ids[example_indices, caption_indices],
                                       lengths[example_indices, caption_indices]))

    vlms = vlms_extra(vlm, config, ids, lengths, FLAGS.sample_seed)

    def extra(plan, images):
        results, protocol = damsm_r_precision(gan.text_encoder, encoders[1], index, ids, lengths, plan, images,
                                              FLAGS.sample_seed)
        more, more_protocol = vlms(plan, images)
        results.update(more, **_real_pair_references(vlm, config, index, ids, lengths, plan, FLAGS.sample_seed))
        more_protocol["vlms_references"] = ("the same captions with their real test images (upper) and with the real "
                                            "images of a seeded derangement (lower)")
        return results, {**protocol, **more_protocol}

    weights = f"λ1 (VVM) {config['vvm_weight']}, λ2 (VLM) {config['vlm_weight']}"
    evaluation.evaluate_run(run, config, index, generate, noise_dim(config), FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name=f"{chapter.title} ({weights}; {config['image_size']} px)",
                            extra=extra)


def score_other_run():
    """``vlms --score_run=RUN``: VLMS, oracle metrics and R-precision of a chapter 3 (AttnGAN) or chapter 4
    (DF-GAN / RAT-GAN) run, scored with this run's VLM, so the README's table compares models."""
    from t2igan import damsm, evaluation
    from t2igan.training.run import RunDirectory

    if not FLAGS.score_run:
        raise UserError("vlms needs --score_run=RUN_DIR (a chapter 3 or 4 run).")
    _, run, config = _setup(for_training=False)
    with open(os.path.join(FLAGS.score_run, "config.json"), encoding="utf-8") as file:
        other_config = json.load(file)
    owner = other_config.get("chapter")
    if owner not in ("03_attngan", "04_dfgan_ratgan"):
        raise UserError(f"{FLAGS.score_run} is a {owner!r} run; vlms scores chapter 3 or 4 runs.")
    other = RunDirectory(FLAGS.score_run, owner)
    index, vocabulary, _, _, vlm = _restored(run, config)
    other_chapter = Chapter(owner, int(owner[:2]), owner)
    other_vocabulary, other_damsm = other_chapter.damsm(None, other, other_config, index)
    encoders = other_damsm()
    if owner == "03_attngan":
        gan, width = attngan_build.build_gan(other_config, encoders), attngan_build.noise_width(other_config)
    else:
        gan, width = dfgan_build.build_gan(other_config, encoders[0]), other_config["noise_dim"]
    other_chapter.restore_generator(other, gan)
    other_ids, other_lengths = damsm.test_ids(index, other_vocabulary, other_config["words_num"])
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    truncate = owner == "04_dfgan_ratgan" and other_config.get("truncation")

    def generate(example_indices, caption_indices, noise):
        noise = dfgan_build.sampling_noise(other_config, noise) if truncate else noise
        return np.asarray(gan.generate(noise, other_ids[example_indices, caption_indices],
                                       other_lengths[example_indices, caption_indices]))

    scored = RunDirectory(os.path.join(run.path, "scored", os.path.basename(os.path.normpath(FLAGS.score_run))), chapter.package)
    scored.create()
    evaluation.evaluate_run(scored, other_config, index, generate, width, FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name=f"{owner} run {FLAGS.score_run}",
                            extra=vlms_extra(vlm, config, ids, lengths, FLAGS.sample_seed))


if __name__ == "__main__":
    chapter.run({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "vlms": score_other_run})
