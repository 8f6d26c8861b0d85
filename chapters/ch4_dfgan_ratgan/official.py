"""DF-GAN's released checkpoints (``tobran/DF-GAN``, the CVPR 2022 code) in chapter 4's Keras networks.

The released files (``state_epoch_*.pth`` for birds and COCO) hold one dict::

    {"model": {"netG": …, "netD": …, "netC": …}, "optimizers": {…}, "epoch": N}

read here through :func:`t2igan.torch_weights.read_state_dict` (torch with ``weights_only=True``, or the
``.npz`` that ``python -m t2igan.torch_weights convert`` writes, with keys ``model.netG.fc.weight`` …), so
torch is needed once, anywhere. A DataParallel ``module.`` inside a part is stripped. Every key of the three
parts is checked against the networks built from the file's own sizes (``checkpoint_configuration``)
before anything is assigned; the first mismatches are named with the file.

Key map (official → here), for the generator ``NetG``:

* ``fc`` → ``DfGanGenerator.fc`` (its output is viewed as (C, 4, 4) like PyTorch, so it maps 1:1);
* ``GBlocks.i.c1``, ``.c2``, ``.c_sc`` → ``blocks[i].conv1``, ``.conv2``, ``.shortcut``;
* ``GBlocks.i.fuse{1,2}.affine{0,1}.fc_{gamma,beta}.linear{1,2}`` → ``blocks[i].affines[2·(f − 1) + a]``
  ``.{gamma,beta}_{hidden,out}``;
* ``to_rgb.1`` → ``to_rgb``.

Discriminator ``NetD`` and head ``NetC``: ``conv_img`` → ``stem``; ``DBlocks.i.conv_r.0`` / ``.conv_r.2`` →
``blocks[i].conv1`` / ``.conv2``; ``DBlocks.i.conv_s`` → ``blocks[i].shortcut`` where the widths differ
(the official block builds ``conv_s`` also where they are equal and never uses it: those keys are checked
and left out); ``DBlocks.i.gamma`` → ``blocks[i].gate``; ``joint_conv.0`` / ``.2`` → ``head.joint`` / ``.out``.
The sentence comes from the DAMSM text encoder DF-GAN ships (AttnGAN's): chapter 3's ``damsm-import``.
"""

from __future__ import annotations

import numpy as np

from t2igan.errors import UserError
from t2igan.torch_weights import check_state, conv_kernel, dense_kernel, without_counters

PARTS = ("netG", "netD", "netC")
WHAT = "a DF-GAN checkpoint of the CVPR 2022 code (tobran/DF-GAN: model.netG / netD / netC)"


def split_checkpoint(state: dict[str, np.ndarray], path: str) -> dict[str, dict[str, np.ndarray]]:
    """The three parts of a released file (``model.netG.…``), each without a DataParallel ``module.``."""
    parts = {part: {} for part in PARTS}
    for key, value in state.items():
        for part in PARTS:
            prefix = f"model.{part}."
            if key.startswith(prefix):
                name = key[len(prefix):]
                parts[part][name[len("module."):] if name.startswith("module.") else name] = value
    missing = [part for part in PARTS if not parts[part]]
    if missing:
        found = sorted({key.split(".", 2)[0] + "." + key.split(".", 2)[1] if key.count(".") else key for key in state})
        raise UserError(f"{path} is not {WHAT}: it has no {', '.join('model.' + m for m in missing)} "
                        f"(its entries begin with {', '.join(found[:6])}). Pass the state_epoch_*.pth file of DF-GAN.")
    return {part: without_counters(values) for part, values in parts.items()}


def checkpoint_configuration(parts: dict[str, dict[str, np.ndarray]], path: str) -> dict:
    """The sizes a file was trained with, read off its shapes: nf, noise and sentence widths, image size."""
    generator = parts["netG"]
    try:
        noise_dim = generator["fc.weight"].shape[1]
        base_width = generator["to_rgb.1.weight"].shape[1]  # the last block's width is nf
        blocks = len({key.split(".")[1] for key in generator if key.startswith("GBlocks.")})
        condition = generator["GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight"].shape[1]
        discriminator_width = parts["netD"]["conv_img.weight"].shape[0]
    except KeyError as error:
        raise UserError(f"{path} is not {WHAT}: it has no {error.args[0]} in model.netG / netD.") from None
    return dict(generator_width=base_width, discriminator_width=discriminator_width, noise_dim=noise_dim,
                sentence_dim=condition - noise_dim, image_size=2 ** (blocks + 2))


def check_configuration(found: dict, config: dict, path: str) -> None:
    """The run's settings must be the file's (the networks are built from them)."""
    wanted = {"generator_width": config["generator_width"], "discriminator_width": config["discriminator_width"],
              "noise_dim": config["noise_dim"], "image_size": config["image_size"],
              "sentence_dim": 2 * config["text_hidden"]}
    differing = [f"{key} {found[key]} (the run has {wanted[key]})" for key in wanted if found[key] != wanted[key]]
    if differing:
        raise UserError(f"{path} was trained with other sizes than this run's: {', '.join(differing)}. Use the "
                        "paper profile (PROFILE=paper) of the data set the file is for, or --set those values.")


# --------------------------------------------------------------------------------------------- key map
def _dense(prefix, layer):
    return [(f"{prefix}.weight", layer.kernel, dense_kernel), (f"{prefix}.bias", layer.bias, _same)]


def _conv(prefix, layer):
    entries = [(f"{prefix}.weight", layer.kernel, conv_kernel)]
    return entries + ([(f"{prefix}.bias", layer.bias, _same)] if layer.use_bias else [])


def _same(value):
    return value


def generator_entries(generator) -> list[tuple]:
    """(official ``NetG`` key, our variable, conversion) for every weight of a built DfGanGenerator."""
    entries = _dense("fc", generator.fc)
    for i, block in enumerate(generator.blocks):
        entries += _conv(f"GBlocks.{i}.c1", block.conv1) + _conv(f"GBlocks.{i}.c2", block.conv2)
        if block.shortcut is not None:
            entries += _conv(f"GBlocks.{i}.c_sc", block.shortcut)
        for k, affine in enumerate(block.affines):
            prefix = f"GBlocks.{i}.fuse{k // 2 + 1}.affine{k % 2}"
            entries += (_dense(f"{prefix}.fc_gamma.linear1", affine.gamma_hidden)
                        + _dense(f"{prefix}.fc_gamma.linear2", affine.gamma_out)
                        + _dense(f"{prefix}.fc_beta.linear1", affine.beta_hidden)
                        + _dense(f"{prefix}.fc_beta.linear2", affine.beta_out))
    return entries + _conv("to_rgb.1", generator.to_rgb)


def discriminator_entries(discriminator) -> tuple[list[tuple], list[tuple], dict[str, tuple]]:
    """(``NetD`` entries, ``NetC`` entries, the unused ``conv_s`` keys with their official shapes)."""
    entries, unused = _conv("conv_img", discriminator.stem), {}
    for i, block in enumerate(discriminator.blocks):
        entries += [(f"DBlocks.{i}.conv_r.0.weight", block.conv1.kernel, conv_kernel),
                    (f"DBlocks.{i}.conv_r.2.weight", block.conv2.kernel, conv_kernel),
                    (f"DBlocks.{i}.gamma", block.gate, lambda value: np.reshape(value, ()))]
        if block.shortcut is not None:
            entries += _conv(f"DBlocks.{i}.conv_s", block.shortcut)
        else:  # equal widths: built by the official block, never used
            width = block.conv2.kernel.shape[-1]
            unused.update({f"DBlocks.{i}.conv_s.weight": (width, width, 1, 1), f"DBlocks.{i}.conv_s.bias": (width,)})
    head = [("joint_conv.0.weight", discriminator.head.joint.kernel, conv_kernel),
            ("joint_conv.2.weight", discriminator.head.out.kernel, conv_kernel)]
    return entries, head, unused


def _official_shape(key: str, variable) -> tuple:
    shape = tuple(variable.shape)
    if len(shape) == 4:                     # conv HWIO → OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:                     # Dense (in, out) → Linear (out, in)
        return (shape[1], shape[0])
    return (1,) if key.endswith(".gamma") else shape


def expected_shapes(entries) -> dict[str, tuple]:
    return {key: _official_shape(key, variable) for key, variable, _ in entries}


def load_dfgan(generator, discriminator, state: dict[str, np.ndarray], path: str) -> dict:
    """Copy a released DF-GAN file into built networks of its configuration; returns what it held beside
    the weights (the epoch where known). Every key of the three parts is checked before anything changes."""
    if not generator.weights or not discriminator.weights:
        raise ValueError("Build the generator and the discriminator (call each once) before loading weights.")
    parts = split_checkpoint(state, path)
    d_entries, c_entries, unused = discriminator_entries(discriminator)
    plan = {"netG": generator_entries(generator), "netD": d_entries, "netC": c_entries}
    fix = "Check that the run's settings match the file (PROFILE=paper, DATASET=birds or coco) and VARIANT=dfgan."
    for part, entries in plan.items():
        check_state(parts[part], {**expected_shapes(entries), **(unused if part == "netD" else {})},
                    f"{path} (model.{part})", WHAT, fix)
    for part, entries in plan.items():
        for key, variable, convert in entries:
            variable.assign(convert(np.asarray(parts[part][key], np.float32)))
    epoch = state.get("epoch")
    return {"epoch": int(epoch) if epoch is not None and np.ndim(epoch) == 0 else None,
            "unused_official_keys": sorted(unused)}



# ---------------------------------------------------------------------------------- chapter4-import
def import_run(start_training, options, run_dir: str) -> None:
    """A run folder holding a released DF-GAN (G, and D with its head) that ``chapter4-sample`` and
    ``chapter4-eval`` use as a trained run; train refuses it (chapter 3's ``imported.json`` marker).
    ``start_training(options, adjust)`` is the chapter's own start (config, run folder, lock). The DAMSM
    text encoder DF-GAN ships is AttnGAN's: convert it once with ``make damsm-import`` and pass its folder
    as ``--set damsm_dir=…``."""
    import json
    import os

    from chapters.ch3_attngan.official import IMPORTED
    from chapters.ch4_dfgan_ratgan.build import build_networks
    from t2igan.torch_weights import read_state_dict, sha256
    from t2igan.training import harness
    from t2igan.training.run import Checkpointer

    if options.variant != "dfgan":
        raise UserError("Only DF-GAN's released checkpoints import so far: pass VARIANT=dfgan (RAT-GAN's are not "
                        "supported yet).")
    if not options.checkpoint:
        raise UserError("Pass the released file: --checkpoint=state_epoch_NNN.pth, the downloaded file (make chapter4-import CHECKPOINT=…).")
    if os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")):
        raise UserError(f"{run_dir} already holds a generator; import into a new RUN_DIR.")
    state = read_state_dict(options.checkpoint)  # read and checked before anything is written
    found = checkpoint_configuration(split_checkpoint(state, options.checkpoint), options.checkpoint)

    def adjust(config):
        if not config.get("damsm_dir"):
            raise UserError("DF-GAN needs the DAMSM text encoder it was trained with: convert the released one with "
                            "make damsm-import (DAMSM_DIR=folder) and pass ARGS=\"--set damsm_dir=folder\".")
        check_configuration(found, config, options.checkpoint)

    _, run, config = start_training(options, adjust)
    generator, discriminator = build_networks(config)
    report = load_dfgan(generator, discriminator, state, options.checkpoint)
    objects = dict(generator=generator, discriminator=discriminator)
    if config["ema_decay"] > 0:  # the official code keeps no average: the released G is also the "EMA" one
        objects["ema_generator"] = build_networks(config)[0]
        objects["ema_generator"].set_weights(generator.get_weights())
    Checkpointer(run.checkpoints, **objects).save(config["epochs"], generator.weights + discriminator.weights)
    harness.commit_config(run)
    record = dict(checkpoint={"file": os.path.basename(options.checkpoint), "sha256": sha256(options.checkpoint)},
                  architecture="tobran/DF-GAN, CVPR 2022 code (code/models/GAN.py: NetG, NetD, NetC)",
                  configuration=found, epoch=report["epoch"], damsm=config["damsm_dir"],
                  unused_official_keys=report["unused_official_keys"])
    with open(os.path.join(run.path, IMPORTED), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    print(f"Imported {os.path.basename(options.checkpoint)} (DF-GAN, nf {found['generator_width']}, "
          f"{found['image_size']} px{', epoch ' + str(report['epoch']) if report['epoch'] else ''}) into {run.path}, "
          f"with the DAMSM in {config['damsm_dir']}.\nSample: make chapter4-sample VARIANT=dfgan "
          f"DATASET={config['dataset']} PROFILE={config['profile']} RUN_DIR={run.path} TEXT=\"a small red bird\"")
