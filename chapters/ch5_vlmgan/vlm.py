"""The run's VLM (``model.py`` §1–3): built as a copy of the run's DAMSM plus a Matching Score Block,
pretrained on real pairs (U7, U8) with the library's pretraining loop, stored in ``RUN/vlm`` (or reused
from ``--set vlm_dir=FOLDER``)."""

from __future__ import annotations

import json
import os

from chapters.ch5_vlmgan import model
from t2igan.errors import UserError


def vlm_folder(run, config) -> str:
    folder = config.get("vlm_dir") or os.path.join(run.path, "vlm")
    if config.get("vlm_dir") and not os.path.isfile(os.path.join(folder, "complete.json")):
        raise UserError(f"vlm_dir: {folder} holds no pretrained VLM. Point it at a chapter 5 run's vlm folder, "
                        "or leave it empty to pretrain one.")
    return folder


def build_vlm(config, damsm_encoders):
    """(text, image, MSB): copies of the DAMSM encoders (U1) and a fresh Matching Score Block (U6)."""
    import tensorflow as tf

    text, image = model.vlm_encoders_from_damsm(*damsm_encoders)
    size = image.input_size or config["image_size"]
    regions = model.flatten_regions(image(tf.zeros((1, size, size, 3)))[0]).shape[1]
    width = config["damsm_dim"]
    msb = model.MatchingScoreBlock(regions, config["words_num"], width, config["msb_depth"], config["msb_heads"],
                                   config["msb_ffn"], config["msb_dropout"])
    msb([tf.zeros((1, regions, width)), tf.zeros((1, width)), tf.zeros((1, config["words_num"], width)),
         tf.zeros((1, width)), tf.ones((1, config["words_num"]), tf.bool)])
    return text, image, msb


def weight_paths(folder):
    return [os.path.join(folder, f"{name}.weights.h5") for name in ("text", "image", "msb")]


def pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary, data_root: str):
    """Trains the VLM on real pairs (U7, U8): DAMSM's schedule (Adam β (0.5, 0.999) re-created each epoch,
    lr × decay per epoch down to the floor, text gradients clipped); keeps the epoch with the best held-out
    caption → image top-1 (by S_global). Writes ``vlm/`` and returns the report."""
    import keras

    from chapters.ch3_attngan import damsm
    from t2igan.cli import fit_verbosity
    from t2igan.data.records import caption_fingerprint
    from t2igan.training.harness import image_array
    from t2igan.training.pretrain import pretrain_encoders

    folder = os.path.join(run.path, "vlm")
    os.makedirs(folder, exist_ok=True)
    _, dataset, validation, steps = damsm.pair_datasets(config, index, vocabulary,
                                                        lambda split, size: image_array(index, config, split, data_root, size),
                                                        config["vlm_batch_size"], config["vlm_steps_per_epoch"])

    def build():
        text, image, msb = build_vlm(config, build_damsm())
        return model.VlmPretrainer(text, image, msb, config["gamma1"], config["gamma2"], config["gamma3"],
                                   config["vlm_local_form"], config["damsm_gradient_clip"],
                                   hard_negatives=config["vlm_hard_negatives"],
                                   freeze_backbone=config["vlm_freeze_backbone"])

    def save(pretrainer):
        def write():
            for network, path in zip((pretrainer.text_encoder, pretrainer.image_encoder, pretrainer.msb),
                                     weight_paths(folder)):
                network.save_weights(path)
        return write

    _, _, best = pretrain_encoders(
        strategy, build, lambda: keras.optimizers.Adam(config["vlm_learning_rate"], beta_1=0.5, beta_2=0.999),
        dataset, validation, epochs=config["vlm_epochs"], steps_per_epoch=steps, log_dir=os.path.join(run.logs, "vlm"),
        verbose=fit_verbosity(), epoch_learning_rate=lambda epoch: damsm.epoch_rate(config, "vlm", epoch),
        reset_optimizer_each_epoch=True, keep_best=save, jit_compile=config["pretrain_jit_compile"])
    report = {key: float(value) for key, value in best.best_logs.items()}
    report.update(best_epoch=best.best_epoch, data_fingerprint=caption_fingerprint(index))
    with open(os.path.join(folder, "complete.json"), "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    run.update_metrics("pretrain_vlm", report)
    print(f"VLM: held-out caption→image top-1 {report.get('val_retrieval_top1', float('nan')):.3f}, MSB accuracy "
          f"{report.get('val_msb_accuracy', float('nan')):.3f} (epoch {best.best_epoch}, kept); saved in {folder}")
    return report


def load_vlm(run, config, index, build_damsm, vocabulary, data_root: str, strategy=None):
    """→ build() giving the pretrained (text, image, MSB); pretrains the VLM first when training and absent."""
    folder = vlm_folder(run, config)
    if not os.path.isfile(os.path.join(folder, "complete.json")):
        if strategy is None:
            raise UserError(f"No pretrained VLM in {folder}. Train first: make chapter5-train RUN_DIR={run.path}")
        pretrain_vlm(strategy, run, config, index, build_damsm, vocabulary, data_root)

    def build():
        networks = build_vlm(config, build_damsm())
        for network, path in zip(networks, weight_paths(folder)):
            network.load_weights(path)
        return networks

    return build
