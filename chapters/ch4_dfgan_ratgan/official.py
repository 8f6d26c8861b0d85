"""The released checkpoints of DF-GAN (``tobran/DF-GAN``, the CVPR 2022 code) and RAT-GAN
(``senmaoy/RAT-GAN``) in chapter 4's Keras networks.

DF-GAN
------

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

RAT-GAN
-------
The released files are ``netG_NNN.pth`` (``netG.state_dict()``, what ``code/main.py`` samples from) and,
where a user has it, ``netD_NNN.pth``. Key map for ``NetG`` (``code/model.py``, identical in every revision):

* ``lstm.W`` / ``.U`` / ``.bias`` → ``controller.kernel`` / ``.recurrent_kernel`` / ``.bias`` (x·W, gate order
  i, f, g, o in both); ``lstm.noise2h`` / ``lstm.noise2c`` → ``h0`` / ``c0``. The one ``CustomLSTM`` is a
  submodule of NetG and of every block, so PyTorch writes it 8 times (``block{i}.lstm.…``): the copies
  must equal ``lstm.…`` and are checked, not loaded twice;
* ``fc`` → ``fc``; ``block{i}.c1`` / ``.c2`` / ``.c_sc`` / ``.gamma`` → ``blocks[i].conv1`` / ``.conv2`` /
  ``.shortcut`` / ``.gate``; ``block{i}.affine{k}`` (k = 0..3, in call order) → ``blocks[i].affines[k]``;
* ``conv_img.1`` → ``to_rgb``;
* built by the official block and never called (6,034,560 parameters at nf 64): ``affine4``, ``affine5``,
  ``fea_l``, ``fea_ll``: checked and left out. Never called, they keep their initial values, so the output
  layers of ``affine4`` / ``affine5`` are exactly zero; where they are not, the file is the flowers model
  (``code/model_flower.py`` calls them: six affines per block), which chapter 4 does not build: refused.

``NetD``: ``conv_img`` → ``stem``; ``block{i}`` (resD) as DF-GAN's ``DBlocks.i``. Which discriminator
revision a file carries is read off its keys: ``COND_DNET.joint_conv_att`` is the paper revision
(e265c7a … 39c5135, attention head on 8×8, ``block5`` built and unused), its absence the repository HEAD
(471d5ab and later, plain head on 4×4 after ``block5``). ``COND_DNET.joint_conv_att.0`` / ``.2`` →
``head.attention_joint`` / ``.attention_out``; ``COND_DNET.block`` → ``head.block``;
``COND_DNET.joint_conv.0`` / ``.2`` → ``head.head.joint`` / ``.out`` (plain: ``head.joint`` / ``.out``).
"""

from __future__ import annotations

import numpy as np

from t2igan.errors import UserError
from t2igan.torch_weights import check_state, conv_kernel, dense_kernel, torch_shape, without_counters

PARTS = ("netG", "netD", "netC")
WHAT = "a DF-GAN checkpoint of the CVPR 2022 code (tobran/DF-GAN: model.netG / netD / netC)"


RATGAN_WHAT = "a RAT-GAN generator (senmaoy/RAT-GAN code/model.py NetG, the netG_NNN.pth files)"
RATGAN_D_WHAT = "a RAT-GAN discriminator (senmaoy/RAT-GAN code/model.py NetD, the netD_NNN.pth files)"
REVISIONS = {"attention": "paper revision (e265c7a … 39c5135): attention head on the 8×8 features, block5 unused",
             "plain": "repository HEAD (471d5ab and later): plain head on 4×4 after block5"}


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
                        f"(its entries begin with {', '.join(found[:6])}). Pass the state_epoch_*.pth file of DF-GAN"
                        + (", or VARIANT=ratgan for this RAT-GAN generator." if "lstm.W" in state else "."))
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
    if key.endswith(("lstm.W", "lstm.U")):  # CustomLSTM computes x·W as Keras does: no transpose
        return tuple(variable.shape)
    if key.endswith(".gamma"):              # the scalar gate of DF-GAN's fusion blocks: a (1,) parameter
        return (1,)
    return torch_shape(variable)


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



# ------------------------------------------------------------------------------------------ RAT-GAN
def _strip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return without_counters({key[len("module."):] if key.startswith("module.") else key: value
                             for key, value in state.items()})


LSTM_KEYS = ("W", "U", "bias", "noise2h.weight", "noise2h.bias", "noise2c.weight", "noise2c.bias")


def ratgan_configuration(generator_state: dict, discriminator_state: dict | None, path: str,
                         discriminator_path: str = "") -> dict:
    """The sizes a RAT-GAN file was trained with, read off its shapes, and the discriminator's revision."""
    try:
        blocks = len({key.split(".")[0] for key in generator_state if key.startswith("block")})
        found = dict(generator_width=generator_state["conv_img.1.weight"].shape[1],
                     noise_dim=generator_state["fc.weight"].shape[1],
                     controller_units=generator_state["lstm.U"].shape[0],
                     sentence_dim=generator_state["lstm.W"].shape[0], image_size=2 ** (blocks + 1))
    except KeyError as error:
        keys = ", ".join(sorted(generator_state)[:4])
        raise UserError(f"{path} is not {RATGAN_WHAT}: it has no {error.args[0]} (its keys begin {keys}). "
                        "Pass the netG_NNN.pth file of RAT-GAN (VARIANT=dfgan for DF-GAN's state_epoch files).") from None
    if discriminator_state is not None:
        if "conv_img.weight" not in discriminator_state or not any(k.startswith("COND_DNET.") for k in discriminator_state):
            raise UserError(f"{discriminator_path} is not {RATGAN_D_WHAT}: it has no conv_img.weight or COND_DNET. "
                            "Pass the netD_NNN.pth saved beside the generator, or leave --discriminator_checkpoint out.")
        found["discriminator_width"] = discriminator_state["conv_img.weight"].shape[0]
        found["discriminator_head"] = "attention" if "COND_DNET.joint_conv_att.0.weight" in discriminator_state else "plain"
    return found


def check_ratgan_configuration(found: dict, config: dict, path: str) -> None:
    wanted = {key: config[key] for key in ("generator_width", "noise_dim", "controller_units", "image_size")}
    wanted["sentence_dim"] = 2 * config["text_hidden"]
    for key in ("discriminator_width", "discriminator_head"):
        if key in found:
            wanted[key] = config[key]
    differing = [f"{key} {found[key]} (the run has {wanted[key]})" for key in wanted if found[key] != wanted[key]]
    if differing:
        raise UserError(f"{path} was trained with other settings than this run's: {', '.join(differing)}. Use the "
                        "paper profile (PROFILE=paper) of the file's data set, or --set those values "
                        "(discriminator_head=plain for a file of the repository HEAD).")


def ratgan_generator_entries(generator) -> tuple[list[tuple], dict[str, tuple]]:
    """(official ``NetG`` key, our variable, conversion) for every weight of a built RatGanGenerator, and the
    keys the official network builds but never calls, with their official shapes."""
    controller = generator.controller
    entries = [("lstm.W", controller.kernel, _same), ("lstm.U", controller.recurrent_kernel, _same),
               ("lstm.bias", controller.bias, _same)]
    entries += _dense("lstm.noise2h", generator.h0) + _dense("lstm.noise2c", generator.c0) + _dense("fc", generator.fc)
    unused, units = {}, controller.units
    for i, block in enumerate(generator.blocks):
        prefix = f"block{i}"
        entries += _conv(f"{prefix}.c1", block.conv1) + _conv(f"{prefix}.c2", block.conv2)
        if block.shortcut is not None:
            entries += _conv(f"{prefix}.c_sc", block.shortcut)
        entries.append((f"{prefix}.gamma", block.gate, lambda value: np.reshape(value, ())))
        for k, affine in enumerate(block.affines):
            entries += (_dense(f"{prefix}.affine{k}.fc_gamma.linear1", affine.gamma_hidden)
                        + _dense(f"{prefix}.affine{k}.fc_gamma.linear2", affine.gamma_out)
                        + _dense(f"{prefix}.affine{k}.fc_beta.linear1", affine.beta_hidden)
                        + _dense(f"{prefix}.affine{k}.fc_beta.linear2", affine.beta_out))
        fin, fout = block.affines[0].gamma_out.units, block.affines[2].gamma_out.units
        for k, width in ((4, fin), (5, fout)):  # the flowers model's fifth and sixth affine
            for mlp in ("fc_gamma", "fc_beta"):
                hidden = block.affines[0].gamma_hidden.units
                unused.update({f"{prefix}.affine{k}.{mlp}.linear1.weight": (hidden, units),
                               f"{prefix}.affine{k}.{mlp}.linear1.bias": (hidden,),
                               f"{prefix}.affine{k}.{mlp}.linear2.weight": (width, hidden),
                               f"{prefix}.affine{k}.{mlp}.linear2.bias": (width,)})
        for name, width in (("fea_l", fin), ("fea_ll", fout)):  # a disabled idea: Linear(width → 256)
            unused.update({f"{prefix}.{name}.weight": (256, width), f"{prefix}.{name}.bias": (256,)})
    return entries + _conv("conv_img.1", generator.to_rgb), unused


def _down_block(prefix, block) -> tuple[list[tuple], dict[str, tuple]]:
    entries = [(f"{prefix}.conv_r.0.weight", block.conv1.kernel, conv_kernel),
               (f"{prefix}.conv_r.2.weight", block.conv2.kernel, conv_kernel),
               (f"{prefix}.gamma", block.gate, lambda value: np.reshape(value, ()))]
    if block.shortcut is not None:
        return entries + _conv(f"{prefix}.conv_s", block.shortcut), {}
    width = block.conv2.kernel.shape[-1]  # equal widths: resD builds conv_s and never uses it
    return entries, {f"{prefix}.conv_s.weight": (width, width, 1, 1), f"{prefix}.conv_s.bias": (width,)}


def ratgan_discriminator_entries(discriminator) -> tuple[list[tuple], dict[str, tuple]]:
    """(official ``NetD`` key, our variable, conversion) for a built RatGanDiscriminator, and the unused keys:
    the equal-width ``conv_s`` and, in the paper revision, the whole ``block5``."""
    entries, unused = _conv("conv_img", discriminator.stem), {}
    for i, block in enumerate(discriminator.blocks):
        more, dead = _down_block(f"block{i}", block)
        entries, unused = entries + more, {**unused, **dead}
    head = discriminator.head
    if discriminator.head_kind == "attention":
        entries += [("COND_DNET.joint_conv_att.0.weight", head.attention_joint.kernel, conv_kernel),
                    ("COND_DNET.joint_conv_att.2.weight", head.attention_out.kernel, conv_kernel)]
        more, dead = _down_block("COND_DNET.block", head.block)
        entries, unused, head = entries + more, {**unused, **dead}, head.head
        width = discriminator.blocks[-1].conv2.kernel.shape[-1]
        block5 = f"block{len(discriminator.blocks)}"  # built after the trunk, never called
        unused.update({f"{block5}.conv_r.0.weight": (width, width, 4, 4), f"{block5}.conv_r.2.weight": (width, width, 3, 3),
                       f"{block5}.conv_s.weight": (width, width, 1, 1), f"{block5}.conv_s.bias": (width,),
                       f"{block5}.gamma": (1,)})
    entries += [("COND_DNET.joint_conv.0.weight", head.joint.kernel, conv_kernel),
                ("COND_DNET.joint_conv.2.weight", head.out.kernel, conv_kernel)]
    return entries, unused


def load_ratgan(generator, discriminator, generator_state: dict, discriminator_state: dict | None, path: str,
                discriminator_path: str = "") -> dict:
    """Copy released RAT-GAN files into built networks of their configuration (the discriminator only where
    its file is given). Every key is checked before anything changes; returns the unused keys."""
    if not generator.weights or (discriminator_state is not None and not discriminator.weights):
        raise ValueError("Build the networks (call each once) before loading weights.")
    generator_state = _strip(generator_state)
    entries, unused = ratgan_generator_entries(generator)
    shapes = expected_shapes(entries)
    copies = {f"block{i}.lstm.{key}": f"lstm.{key}" for i in range(len(generator.blocks)) for key in LSTM_KEYS}
    check_state(generator_state, {**shapes, **unused, **{copy: shapes[key] for copy, key in copies.items()}},
                path, RATGAN_WHAT, "Check that the run's settings match the file (PROFILE=paper) and VARIANT=ratgan.")
    for copy, key in copies.items():
        if not np.array_equal(generator_state[copy], generator_state[key]):
            raise UserError(f"{path} is not {RATGAN_WHAT}: {copy} differs from {key}, but the official network "
                            "shares one LSTM between NetG and every block. Re-download the file.")
    flowers_layers = [key for key in unused if key.endswith("linear2.weight") and (".affine4." in key or ".affine5." in key)]
    if any(np.any(generator_state[key]) for key in flowers_layers):
        raise UserError(f"{path} is RAT-GAN's flowers model (code/model_flower.py: six affines per block, its affine4 "
                        "and affine5 are trained), which chapter 4 does not build: import a birds or COCO generator.")
    plan = [(entries, generator_state)]
    if discriminator_state is not None:
        discriminator_state = _strip(discriminator_state)
        d_entries, d_unused = ratgan_discriminator_entries(discriminator)
        check_state(discriminator_state, {**expected_shapes(d_entries), **d_unused}, discriminator_path, RATGAN_D_WHAT,
                    "Check the run's discriminator_head and sizes against the file (PROFILE=paper).")
        plan.append((d_entries, discriminator_state))
        unused = {**unused, **{f"netD:{key}": shape for key, shape in d_unused.items()}}
    for entries_of_part, state in plan:
        for key, variable, convert in entries_of_part:
            variable.assign(convert(np.asarray(state[key], np.float32)))
    import os
    import re

    epoch = re.fullmatch(r"netG_(\d+)\.(pth|npz)", os.path.basename(path))  # the file names the epoch it was saved at
    return {"unused_official_keys": sorted(unused), "epoch": int(epoch.group(1)) if epoch else None}


def check_attention_request(run_dir: str, config: dict, attention: bool) -> None:
    """``--attention`` (ATTN=1) needs RAT-GAN's attention head and a trained one: refuse it otherwise."""
    from t2igan.training.run import imported_record

    if not attention:
        return
    if config["variant"] != "ratgan" or config["discriminator_head"] != "attention":
        raise UserError("--attention (ATTN=1) shows RAT-GAN's discriminator attention: this run has "
                        f"{'DF-GAN' if config['variant'] == 'dfgan' else 'the plain head'}, which has none. Leave it out.")
    record = imported_record(run_dir)
    if record is not None and record.get("discriminator") is None:
        raise UserError(f"{run_dir} was imported without a discriminator (--discriminator_checkpoint): its "
                        "attention would be a random network's. Import netD_NNN.pth too, or leave ATTN out.")


# ---------------------------------------------------------------------------------- chapter4-import
def _read_release(options) -> tuple[dict, dict]:
    """The released file(s) read, checked for the variant, and the sizes they were trained with."""
    from t2igan.torch_weights import read_state_dict

    if not options.checkpoint:
        file = "state_epoch_NNN.pth" if options.variant == "dfgan" else "netG_NNN.pth"
        raise UserError(f"Pass the released file: --checkpoint={file}, the downloaded file (make chapter4-import "
                        "CHECKPOINT=…).")
    state = read_state_dict(options.checkpoint)  # read and checked before anything is written
    if options.variant == "dfgan":
        if options.discriminator_checkpoint:
            raise UserError("DF-GAN's released file holds its discriminator already: leave --discriminator_checkpoint "
                            "(DISCRIMINATOR=) out.")
        return {"state": state}, checkpoint_configuration(split_checkpoint(state, options.checkpoint), options.checkpoint)
    if any(key.startswith("model.netG.") for key in state):
        raise UserError(f"{options.checkpoint} is DF-GAN's (model.netG / netD / netC), not RAT-GAN's: pass VARIANT=dfgan.")
    discriminator = read_state_dict(options.discriminator_checkpoint) if options.discriminator_checkpoint else None
    release = {"state": _strip(state), "discriminator": None if discriminator is None else _strip(discriminator)}
    return release, ratgan_configuration(release["state"], release["discriminator"], options.checkpoint,
                                         options.discriminator_checkpoint or "")


def import_run(start_training, options, run_dir: str) -> None:
    """A run folder holding a released DF-GAN (G, D and its head) or RAT-GAN (G, and D where its file is
    given) that ``chapter4-sample`` and ``chapter4-eval`` use as a trained run; train refuses it (chapter
    3's ``imported.json`` marker). ``start_training(options, adjust)`` is the chapter's own start (config,
    run folder, lock). The DAMSM text encoder both ship is AttnGAN's: convert it once with
    ``make damsm-import`` and pass its folder as ``--set damsm_dir=…``."""
    import json
    import os

    from t2igan.training.run import IMPORTED
    from chapters.ch4_dfgan_ratgan.build import build_networks
    from t2igan.torch_weights import sha256
    from t2igan.training import harness
    from t2igan.training.run import Checkpointer

    if os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")):
        raise UserError(f"{run_dir} already holds a generator; import into a new RUN_DIR.")
    release, found = _read_release(options)

    def adjust(config):
        if not config.get("damsm_dir"):
            raise UserError(f"{'DF-GAN' if options.variant == 'dfgan' else 'RAT-GAN'} needs the DAMSM text encoder it "
                            "was trained with: convert the released one with make damsm-import (DAMSM_DIR=folder) and "
                            "pass ARGS=\"--set damsm_dir=folder\".")
        (check_configuration if options.variant == "dfgan" else check_ratgan_configuration)(found, config,
                                                                                             options.checkpoint)

    _, run, config = start_training(options, adjust)
    generator, discriminator = build_networks(config)
    if options.variant == "dfgan":
        report = load_dfgan(generator, discriminator, release["state"], options.checkpoint)
        architecture = "tobran/DF-GAN, CVPR 2022 code (code/models/GAN.py: NetG, NetD, NetC)"
        discriminator_record = "in the same file (model.netD, model.netC)"
    else:
        report = load_ratgan(generator, discriminator, release["state"], release["discriminator"], options.checkpoint,
                             options.discriminator_checkpoint or "")
        architecture = "senmaoy/RAT-GAN code/model.py NetG (the same in every revision)"
        discriminator_record = None if release["discriminator"] is None else {
            "file": os.path.basename(options.discriminator_checkpoint),
            "sha256": sha256(options.discriminator_checkpoint), "revision": REVISIONS[found["discriminator_head"]]}
    objects = dict(generator=generator, discriminator=discriminator)
    if config["ema_decay"] > 0:  # neither official code keeps an average: the released G is also the "EMA" one
        objects["ema_generator"] = build_networks(config)[0]
        objects["ema_generator"].set_weights(generator.get_weights())
    Checkpointer(run.checkpoints, **objects).save(config["epochs"], generator.weights + discriminator.weights)
    harness.commit_config(run)
    record = dict(checkpoint={"file": os.path.basename(options.checkpoint), "sha256": sha256(options.checkpoint)},
                  architecture=architecture, configuration=found, epoch=report.get("epoch"),
                  discriminator=discriminator_record, damsm=config["damsm_dir"],
                  unused_official_keys=report["unused_official_keys"])
    with open(os.path.join(run.path, IMPORTED), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    name = "DF-GAN" if options.variant == "dfgan" else "RAT-GAN"
    epoch = f", epoch {report['epoch']}" if report.get("epoch") else ""
    without = "" if discriminator_record is not None else "; no discriminator (sample and eval do not need one)"
    print(f"Imported {os.path.basename(options.checkpoint)} ({name}, nf {found['generator_width']}, "
          f"{found['image_size']} px{epoch}{without}) into {run.path}, with the DAMSM in {config['damsm_dir']}.\n"
          f"Sample: make chapter4-sample VARIANT={options.variant} DATASET={config['dataset']} "
          f"PROFILE={config['profile']} RUN_DIR={run.path} TEXT=\"a small red bird\"")
