"""The released AttnGAN generators (``bird_AttnGAN2.pth``, ``coco_AttnGAN2.pth``) → :class:`AttnGanGenerator`.

The files are ``G_NET`` state dicts (``code/model.py`` of ``taoxugit/AttnGAN``). Our generator has the same
layers (7,084,592 parameters for birds, 13,811,456 for COCO), so the mapping is one to one:

=====================================================  =============================================
official (PyTorch)                                      ours (``AttnGanGenerator``)
=====================================================  =============================================
``ca_net.fc``  Linear(256 → 4·ncf) + GLU               ``ca.fc`` (then GLU, μ = first half)
``h_net1.fc.0`` Linear([c, z] → 2·16·C, no bias)       ``fc`` (columns permuted, see below)
``h_net1.fc.1`` BatchNorm1d                            ``fc_norm`` (features permuted the same way)
``h_net1.upsample{1..4}.1`` conv, ``.2`` BN            ``first_ups[0..3].conv``, ``.norm``
``h_net{k}.att.conv_context`` 1×1 conv (nef → ngf)     ``attentions[k−2].project`` (Dense, no bias)
``h_net{k}.residual.{r}.block.{0,1}`` conv, BN         ``residuals[k−2][r].join.conv``, ``.join.norm``
``h_net{k}.residual.{r}.block.{3,4}`` conv, BN         ``residuals[k−2][r].conv``, ``.norm``
``h_net{k}.upsample.{1,2}`` conv, BN                   ``next_ups[k−2].conv``, ``.norm``
``img_net{k}.img.0`` conv3×3 (ngf → 3)                 ``to_images[k−1]``
=====================================================  =============================================

Layouts: conv weights OIHW → HWIO; Linear (out, in) → (in, out); BN weight, bias, running mean and
variance → γ, β, moving mean and variance. GLU keeps the first half of the channels gated by the second,
in both frameworks, so channel order carries over. The concatenations have the same order ([c, z] before
the fc, [h, context] before the residual blocks). The one reordering: the official fc output is GLU-ed as
a flat vector and then *viewed* as (C, 4, 4), feature c·16 + y·4 + x, while ours is reshaped to
(4, 4, C), feature (y·4 + x)·C + c; so within each GLU half the fc's columns and BatchNorm1d's features
are permuted (:func:`fc_order`).
"""

from __future__ import annotations

import re

import numpy as np

from t2igan.errors import UserError
from t2igan.official import BATCH_NORM_KEYS, check_state, conv_kernel, dense_kernel, without_counters

WHAT = "an AttnGAN generator (G_NET state dict, e.g. bird_AttnGAN2.pth)"


def fc_order(channels: int) -> np.ndarray:
    """Index array: our fc feature j = official feature ``fc_order(C)[j]`` (both GLU halves)."""
    half, position, channel = np.meshgrid(np.arange(2), np.arange(16), np.arange(channels), indexing="ij")
    return (half * 16 * channels + channel * 16 + position).reshape(-1)


def checkpoint_configuration(state: dict[str, np.ndarray], path: str) -> dict:
    """What a ``G_NET`` state dict was built with: gf, stages, residual blocks, condition, noise, text widths."""
    state = without_counters(state)
    needed = ("ca_net.fc.weight", "h_net1.fc.0.weight", "img_net1.img.0.weight")
    if not all(key in state for key in needed):
        raise UserError(f"{path} is not {WHAT}: it lacks {[k for k in needed if k not in state]} (its keys begin "
                        f"{sorted(state)[:4]}). The AttnDCGAN variant and DAMSM encoders are other files.")
    condition_dim = state["ca_net.fc.weight"].shape[0] // 4
    stages = max(int(m.group(1)) for key in state if (m := re.match(r"img_net(\d+)\.", key)))
    residual = {int(m.group(1)) for key in state if (m := re.match(r"h_net2\.residual\.(\d+)\.", key))}
    return dict(generator_width=int(state["img_net1.img.0.weight"].shape[1]), stages=stages,
                residual_blocks=len(residual), condition_dim=int(condition_dim),
                noise_dim=int(state["h_net1.fc.0.weight"].shape[1] - condition_dim),
                text_dim=int(state["ca_net.fc.weight"].shape[1]))


def check_configuration(found: dict, config: dict, path: str, text_dim: int) -> None:
    """The run's settings must build the checkpoint's network; say which settings to change otherwise."""
    if config["base_size"] != 64:
        raise UserError(f"{path}: the official generators start at 64 px (base_size 64, three stages to 256 px), "
                        f"this profile at {config['base_size']} px. Use PROFILE=paper (--profile=paper).")
    differ = [f"{key} {config[key]} (the file: {found[key]})" for key in
              ("generator_width", "stages", "residual_blocks", "condition_dim", "noise_dim") if config[key] != found[key]]
    if differ:
        fix = " ".join(f"--set {key}={found[key]}" for key in ("generator_width", "stages", "residual_blocks",
                                                              "condition_dim", "noise_dim") if config[key] != found[key])
        coco = found["generator_width"] == 48 and config.get("dataset") != "coco"
        raise UserError(f"{path} does not fit this run's settings: {', '.join(differ)}."
                        + (" It looks like the COCO generator: use DATASET=coco." if coco else f" Pass {fix}."))
    if found["text_dim"] != text_dim:
        raise UserError(f"{path} reads {found['text_dim']}-d DAMSM features, the run's DAMSM gives {text_dim}-d: "
                        "use the DAMSM released with it (text_encoder200.pth / image_encoder200.pth for birds).")


def _entries(generator):
    """(official key, our variable, conversion) for every weight of a built generator."""
    entries = []

    def batch_norm(prefix, norm, order=None):
        for torch_name, keras_name in BATCH_NORM_KEYS:
            entries.append((f"{prefix}.{torch_name}", getattr(norm, keras_name),
                            (lambda v: v) if order is None else (lambda v, o=order: v[o])))

    def conv(key, layer):
        entries.append((key, layer.kernel, conv_kernel))

    order = fc_order(generator.start_width)
    entries.append(("ca_net.fc.weight", generator.ca.fc.kernel, dense_kernel))
    entries.append(("ca_net.fc.bias", generator.ca.fc.bias, lambda v: v))
    entries.append(("h_net1.fc.0.weight", generator.fc.kernel, lambda v: dense_kernel(v)[:, order]))
    batch_norm("h_net1.fc.1", generator.fc_norm, order)
    for i, up in enumerate(generator.first_ups, start=1):
        conv(f"h_net1.upsample{i}.1.weight", up.conv)
        batch_norm(f"h_net1.upsample{i}.2", up.norm)
    for k, (attention, residuals, up) in enumerate(zip(generator.attentions, generator.residuals,
                                                       generator.next_ups), start=2):
        entries.append((f"h_net{k}.att.conv_context.weight", attention.project.kernel, lambda v: dense_kernel(v[:, :, 0, 0])))
        for r, block in enumerate(residuals):
            conv(f"h_net{k}.residual.{r}.block.0.weight", block.join.conv)
            batch_norm(f"h_net{k}.residual.{r}.block.1", block.join.norm)
            conv(f"h_net{k}.residual.{r}.block.3.weight", block.conv)
            batch_norm(f"h_net{k}.residual.{r}.block.4", block.norm)
        conv(f"h_net{k}.upsample.1.weight", up.conv)
        batch_norm(f"h_net{k}.upsample.2", up.norm)
    for k, head in enumerate(generator.to_images, start=1):
        conv(f"img_net{k}.img.0.weight", head)
    return entries


def _official_shape(key: str, variable) -> tuple:
    shape = tuple(variable.shape)
    if len(shape) == 4:                                   # conv HWIO → OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if key.endswith("conv_context.weight"):               # Dense (nef, ngf) ← 1×1 conv (ngf, nef, 1, 1)
        return (shape[1], shape[0], 1, 1)
    if len(shape) == 2:                                   # Dense (in, out) → Linear (out, in)
        return (shape[1], shape[0])
    return shape


def state_shapes(generator) -> dict[str, tuple]:
    """The ``G_NET`` state-dict keys and shapes that fit a built :class:`AttnGanGenerator`."""
    return {key: _official_shape(key, variable) for key, variable, _ in _entries(generator)}


def load_generator(generator, state: dict[str, np.ndarray], path: str) -> None:
    """Copy a ``G_NET`` state dict into a built generator of the same configuration (checked first)."""
    if not generator.weights:
        raise ValueError("Build the generator (call it once) before loading weights into it.")
    if len(generator.first_ups) != 4:
        raise UserError(f"{path}: the official generators start at 64 px (base_size 64); this generator does not.")
    entries = _entries(generator)
    check_state(state, {key: _official_shape(key, variable) for key, variable, _ in entries}, path, WHAT,
                "Check that the run's settings match the file (PROFILE=paper, DATASET=birds or coco).")
    for key, variable, convert in entries:
        variable.assign(convert(np.asarray(state[key], np.float32)))
