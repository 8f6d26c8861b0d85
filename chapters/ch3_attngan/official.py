"""The released PyTorch checkpoints of AttnGAN (``taoxugit/AttnGAN``): the DAMSM encoders and the generators.

Part 1 (DAMSM) — AttnGAN's authors released the DAMSM they pretrained (``DAMSMencoders/bird/text_encoder200.pth`` and
``image_encoder200.pth``; COCO: ``text_encoder100.pth`` and ``image_encoder100.pth``). The papers of the
AttnGAN family condition on it and compute R-precision with it. This module

1. reads a PyTorch state dict (``.pth`` with torch, or the ``.npz`` that ``convert`` writes, so that
   torch is needed once, anywhere) and checks every key and shape against what our network expects;
2. maps the text encoder (``RNN_ENCODER`` in ``code/model.py``: embedding → bidirectional LSTM) onto
   :class:`chapters.ch3_attngan.damsm.DamsmTextEncoder`, whose ``PyTorchLstmCell`` keeps PyTorch's weights 1:1;
3. maps the image encoder (``CNN_ENCODER``: torchvision's Inception-v3 up to Mixed_7c, a 1×1 conv on
   Mixed_6e and a linear layer on the pooled Mixed_7c) onto
   :class:`chapters.ch3_attngan.damsm.DamsmImageEncoder` with ``backbone="inception_torchvision"``;
4. writes a DAMSM folder in our own format (what :func:`chapters.ch3_attngan.damsm.load` reads), so that
   ``--set damsm_dir=FOLDER`` uses the official DAMSM in chapters 3–5 and for R-precision.

Command line::

    python -m chapters.ch3_attngan.official damsm --text_encoder=text_encoder200.pth --image_encoder=image_encoder200.pth \\
        --dataset=birds --out=damsm/birds-official        # reads data/birds/captions.pickle
    python -m t2igan.torch_weights convert IN.pth OUT.npz  # on a machine with torch; no torch needed afterwards

Word ids: the official ids are those of the data set's ``captions.pickle`` (``ixtoword``; 0 = ``<end>``,
the padding). The folder keeps that list as its ``vocabulary.json``; our tokenizer reproduces the
official token ids of every caption (``tests/test_loaders.py``, ``tests/test_official.py``).

Nothing here downloads anything.
"

Part 2 (generators) — The released AttnGAN generators (``bird_AttnGAN2.pth``, ``coco_AttnGAN2.pth``) → :class:`AttnGanGenerator`.

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
are permuted (chapter 2's ``fc_order``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from chapters.ch2_stackgan import official as stackgan  # the same first stage, residuals and upsampling as StackGAN++'s
from t2igan.errors import UserError
from t2igan import torch_weights
from t2igan.training.run import IMPORTED, refuse_imported_run  # noqa: F401  (refuse_imported_run: for __main__)
from t2igan.torch_weights import check_state, conv_kernel, dense_kernel, sha256, torch_shape, without_counters

ATTNGAN_README = "https://github.com/taoxugit/AttnGAN#readme"
#: The AttnGAN data sets whose released DAMSM and vocabulary go together (words, file names).
RELEASED = {"birds": (5450, "text_encoder200.pth", "image_encoder200.pth"),
            "coco": (27297, "text_encoder100.pth", "image_encoder100.pth")}
WHERE = f". The AttnGAN checkpoints are Google Drive downloads listed in {ATTNGAN_README}"


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """:func:`t2igan.torch_weights.read_state_dict`, saying where the AttnGAN files are published."""
    return torch_weights.read_state_dict(path, WHERE)


# ---------------------------------------------------------------------------
# 1a. DAMSM text encoder (``RNN_ENCODER``)
# ---------------------------------------------------------------------------
DIRECTIONS = (("", "forward_lstm"), ("_reverse", "backward_lstm"))


def text_encoder_shapes(vocabulary_size: int, embedding_dim: int = 300, hidden: int = 128) -> dict[str, tuple]:
    """``RNN_ENCODER``'s state dict: ``encoder.weight`` and a one-layer bidirectional ``nn.LSTM``."""
    shapes = {"encoder.weight": (vocabulary_size, embedding_dim)}
    for suffix, _ in DIRECTIONS:
        shapes.update({f"rnn.weight_ih_l0{suffix}": (4 * hidden, embedding_dim),
                       f"rnn.weight_hh_l0{suffix}": (4 * hidden, hidden),
                       f"rnn.bias_ih_l0{suffix}": (4 * hidden,), f"rnn.bias_hh_l0{suffix}": (4 * hidden,)})
    return shapes


def text_encoder_dimensions(state: dict[str, np.ndarray], path: str) -> tuple[int, int, int]:
    """(vocabulary size, embedding width, hidden units per direction) read off a text-encoder state dict."""
    if "encoder.weight" not in state or "rnn.weight_hh_l0" not in state:
        raise UserError(f"{path} is not AttnGAN's DAMSM text encoder (RNN_ENCODER): it has no encoder.weight / "
                        f"rnn.weight_hh_l0 (its keys begin {sorted(state)[:4]}). Pass text_encoder200.pth (birds) "
                        "or text_encoder100.pth (COCO).")
    vocabulary_size, embedding_dim = state["encoder.weight"].shape
    return int(vocabulary_size), int(embedding_dim), int(state["rnn.weight_hh_l0"].shape[1])


def check_vocabulary(vocabulary_size: int, path: str, words: int, vocabulary_from: str) -> None:
    """The checkpoint's embedding rows must be the vocabulary's ``words``: else say which vocabulary it needs."""
    if vocabulary_size != words:
        known = {count: name for name, (count, _, _) in RELEASED.items()}
        needed = (f"the official {known[vocabulary_size]} vocabulary (AttnGAN's {known[vocabulary_size]} "
                  "captions.pickle)" if vocabulary_size in known else "the captions.pickle it was trained with")
        raise UserError(f"{path} embeds {vocabulary_size:,} words but the vocabulary from {vocabulary_from} has "
                        f"{words:,}: word ids would not match. It needs {needed}; pass that file with --captions "
                        "(or --metadata_dir).")


def load_text_encoder(encoder, state: dict[str, np.ndarray], path: str) -> None:
    """Copy ``RNN_ENCODER`` weights into a built :class:`~chapters.ch3_attngan.damsm.DamsmTextEncoder`.

    LSTM: kernel = W_ihᵀ, recurrent_kernel = W_hhᵀ, bias = b_ih, recurrent_bias = b_hh (gate order i, f, g, o
    in both); ``_reverse`` → the backward LSTM. Every key is checked before anything is assigned.
    """
    if not encoder.weights:
        raise ValueError("Build the text encoder (call it once) before loading weights into it.")
    vocabulary_size, embedding_dim = encoder.embedding.embeddings.shape
    hidden = encoder.feature_dim // 2
    found = text_encoder_dimensions(state, path)
    if found[0] != vocabulary_size:
        check_vocabulary(found[0], path, vocabulary_size, "the encoder it is loaded into")
    check_state(state, text_encoder_shapes(vocabulary_size, embedding_dim, hidden), path,
                f"AttnGAN's DAMSM text encoder with {embedding_dim}-d embeddings and {hidden} LSTM units per direction",
                "Pass the text encoder released with AttnGAN (text_encoder200.pth for birds).")
    encoder.embedding.embeddings.assign(state["encoder.weight"])
    for suffix, attribute in DIRECTIONS:
        cell = getattr(encoder, attribute).cell
        cell.kernel.assign(dense_kernel(state[f"rnn.weight_ih_l0{suffix}"]))
        cell.recurrent_kernel.assign(dense_kernel(state[f"rnn.weight_hh_l0{suffix}"]))
        cell.bias.assign(state[f"rnn.bias_ih_l0{suffix}"])
        cell.recurrent_bias.assign(state[f"rnn.bias_hh_l0{suffix}"])


def build_text_encoder(state: dict[str, np.ndarray], path: str, dropout: float = 0.5):
    """A :class:`~chapters.ch3_attngan.damsm.DamsmTextEncoder` of the checkpoint's sizes, with its weights."""
    import tensorflow as tf

    from chapters.ch3_attngan.damsm import DamsmTextEncoder

    vocabulary_size, embedding_dim, hidden = text_encoder_dimensions(state, path)
    encoder = DamsmTextEncoder(vocabulary_size, embedding_dim, hidden, dropout)
    encoder([tf.zeros((1, 2), tf.int32), tf.constant([2])])
    load_text_encoder(encoder, state, path)
    return encoder


# ---------------------------------------------------------------------------
# 1b. DAMSM image encoder (``CNN_ENCODER``)
# ---------------------------------------------------------------------------
def image_encoder_shapes(encoder) -> dict[str, tuple]:
    """``CNN_ENCODER``'s state dict for a built ``DamsmImageEncoder(backbone="inception_torchvision")``:
    its Inception's (torchvision names, :meth:`FidInception.state_shapes`) and the two projections."""
    regions_in, width = encoder.project_regions.kernel.shape[2:]
    global_in = encoder.project_global.kernel.shape[0]
    return dict(encoder.inception.state_shapes(), **{
        "emb_features.weight": (width, regions_in, 1, 1), "emb_cnn_code.weight": (width, global_in),
        "emb_cnn_code.bias": (width,)})


def image_encoder_width(state: dict[str, np.ndarray], path: str) -> int:
    if "emb_features.weight" not in state or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise UserError(f"{path} is not AttnGAN's DAMSM image encoder (CNN_ENCODER): it has no emb_features / "
                        f"Mixed_7c weights (its keys begin {sorted(state)[:4]}). Pass image_encoder200.pth (birds) "
                        "or image_encoder100.pth (COCO).")
    return int(state["emb_features.weight"].shape[0])


def load_image_encoder(encoder, state: dict[str, np.ndarray], path: str) -> None:
    """Copy ``CNN_ENCODER`` weights into a built ``DamsmImageEncoder(backbone="inception_torchvision")``:
    the Inception units (conv OIHW → HWIO, BN γ, β and the running statistics the released file carries),
    ``emb_features`` (1×1 conv, no bias) and ``emb_cnn_code`` (Linear)."""
    if getattr(encoder, "kind", None) != "inception_torchvision":
        raise ValueError("The official image encoder loads into DamsmImageEncoder(backbone='inception_torchvision') "
                         f"only, not {getattr(encoder, 'kind', type(encoder).__name__)!r}.")
    if not encoder.weights:
        raise ValueError("Build the image encoder (call it once) before loading weights into it.")
    check_state(state, image_encoder_shapes(encoder), path,
                f"AttnGAN's DAMSM image encoder with {encoder.project_regions.filters}-d features",
                "Pass the image encoder released with AttnGAN (image_encoder200.pth for birds).")
    encoder.inception.assign(state)
    encoder.project_regions.kernel.assign(conv_kernel(state["emb_features.weight"]))
    encoder.project_global.kernel.assign(dense_kernel(state["emb_cnn_code.weight"]))
    encoder.project_global.bias.assign(state["emb_cnn_code.bias"])


def build_image_encoder(state: dict[str, np.ndarray], path: str, align_corners: bool = False):
    """A ``DamsmImageEncoder(backbone="inception_torchvision")`` with the checkpoint's weights."""
    import tensorflow as tf

    from chapters.ch3_attngan.damsm import DamsmImageEncoder

    encoder = DamsmImageEncoder("inception_torchvision", image_encoder_width(state, path), align_corners=align_corners)
    encoder(tf.zeros((1, 299, 299, 3)))
    load_image_encoder(encoder, state, path)
    return encoder


# ---------------------------------------------------------------------------
# 1c. The official vocabulary and our DAMSM folder
# ---------------------------------------------------------------------------
def find_captions(dataset: str, captions: str | None = None, data_dir: str | None = None, data_root: str = "data",
                  metadata_dir: str | None = None) -> str:
    """The data set's official ``captions.pickle``: ``captions`` if given, else the first found in the data
    folder (``data_dir``, or ``data_root/dataset``) and ``metadata_dir``."""
    if captions:
        if not os.path.isfile(captions):
            raise FileNotFoundError(f"--captions: {captions} does not exist.")
        return captions
    folders = [data_dir or os.path.join(data_root, dataset), metadata_dir]
    candidates = [os.path.join(folder, "captions.pickle") for folder in folders if folder]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise UserError("The official text encoder reads the word ids of the data set's official captions.pickle "
                    f"(AttnGAN's {dataset} metadata, see datasets/README.md); none at {', '.join(candidates)}. "
                    "Pass --captions=PATH/captions.pickle or --metadata_dir=FOLDER.")


def official_vocabulary(path: str) -> list[str]:
    """``ixtoword`` of an AttnGAN ``captions.pickle`` in index order (id 0 = ``<end>``)."""
    from t2igan.data.loaders import load_official_vocabulary

    return load_official_vocabulary(path)


def write_damsm(folder: str, text, image, words: list[str], record: dict) -> None:
    """Our DAMSM folder: the two weight files, ``vocabulary.json``, then ``complete.json`` (last: it marks
    the folder usable, :func:`chapters.ch3_attngan.damsm.is_complete`)."""
    from chapters.ch3_attngan import damsm
    from t2igan.text import Vocabulary

    os.makedirs(folder, exist_ok=True)
    text_path, image_path, complete_path = damsm.paths(folder)
    if os.path.exists(complete_path):
        os.remove(complete_path)  # an interrupted overwrite must not look complete
    text.save_weights(text_path)
    image.save_weights(image_path)
    Vocabulary(words).save(os.path.join(folder, "vocabulary.json"))
    with open(complete_path, "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)


def convert_damsm(text_path: str, image_path: str, words: list[str], folder: str, dataset: str,
                  vocabulary_from: str = "captions.pickle", align_corners: bool = False) -> dict:
    """Read, check and convert the released DAMSM into ``folder``; returns its ``complete.json`` record."""
    text_state, image_state = read_state_dict(text_path), read_state_dict(image_path)
    vocabulary_size, embedding_dim, hidden = text_encoder_dimensions(text_state, text_path)
    check_vocabulary(vocabulary_size, text_path, len(words), vocabulary_from)
    width = image_encoder_width(image_state, image_path)
    if width != 2 * hidden:
        raise UserError(f"{image_path} gives {width}-d image features but {text_path} {2 * hidden}-d word features: "
                        "pass the text and image encoders released together.")
    text = build_text_encoder(text_state, text_path)
    image = build_image_encoder(image_state, image_path, align_corners)
    from t2igan.metrics.inception import TORCHVISION_WEIGHTS_NAME

    record = dict(
        imported={"from": "taoxugit/AttnGAN DAMSM (RNN_ENCODER, CNN_ENCODER)",
                  "text_encoder": {"file": os.path.basename(text_path), "sha256": sha256(text_path)},
                  "image_encoder": {"file": os.path.basename(image_path), "sha256": sha256(image_path)},
                  "vocabulary": ({"file": vocabulary_from, "sha256": sha256(vocabulary_from)}
                                 if os.path.isfile(vocabulary_from) else vocabulary_from),
                  "backbone": f"torchvision Inception-v3 ({TORCHVISION_WEIGHTS_NAME} layout), as stored in the file"},
        dataset=dataset, vocabulary_size=vocabulary_size,
        encoder_config=dict(damsm_backbone="inception_torchvision", damsm_image_size=299,
                            damsm_small_widths=[32, 64, 128, 256], inception_weights="", image_size=299,
                            word_embedding_dim=embedding_dim, text_hidden=hidden, text_dropout=0.5,
                            damsm_align_corners=bool(align_corners)))
    write_damsm(folder, text, image, words, record)
    return record


# ---------------------------------------------------------------------------
# 2. The generators
# ---------------------------------------------------------------------------
WHAT = "an AttnGAN generator (G_NET state dict, e.g. bird_AttnGAN2.pth)"


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
    """(official key, our variable, conversion) for every weight of a built generator: StackGAN++'s key map
    (chapter 2), with each later stage's ``jointConv`` replaced by the attention's 1×1 ``conv_context``."""
    entries = stackgan.first_stage_entries(generator)
    for k, (attention, residuals, up) in enumerate(zip(generator.attentions, generator.residuals,
                                                       generator.next_ups), start=2):
        entries.append((f"h_net{k}.att.conv_context.weight", attention.project.kernel, lambda v: dense_kernel(v[:, :, 0, 0])))
        entries += stackgan.residual_entries(f"h_net{k}", residuals) + stackgan.upsample_entries(f"h_net{k}", up)
    return entries + stackgan.image_entries(generator)


def _official_shape(key: str, variable) -> tuple:
    if key.endswith("conv_context.weight"):               # Dense (nef, ngf) ← 1×1 conv (ngf, nef, 1, 1)
        return (variable.shape[1], variable.shape[0], 1, 1)
    return torch_shape(variable)


def state_shapes(generator) -> dict[str, tuple]:
    """The ``G_NET`` state-dict keys and shapes that fit a built :class:`AttnGanGenerator`."""
    return {key: _official_shape(key, variable) for key, variable, _ in _entries(generator)}


def load_generator(generator, state: dict[str, np.ndarray], path: str) -> None:
    """Copy a ``G_NET`` state dict into a built generator of the same configuration (checked first)."""
    if not generator.weights:
        raise ValueError("Build the generator (call it once) before loading weights into it.")
    if len(generator.first_ups) != 4:
        raise UserError(f"{path}: the official generators start at 64 px (base_size 64); this generator does not.")
    check_state(state, state_shapes(generator), path, WHAT,
                "Check that the run's settings match the file (PROFILE=paper, DATASET=birds or coco).")
    for key, variable, convert in _entries(generator):
        variable.assign(convert(np.asarray(state[key], np.float32)))


# ---------------------------------------------------------------------------
# 3. ``chapter3-import``: a run folder holding a released generator and its DAMSM
# ---------------------------------------------------------------------------
def import_run(chapter: str, options, profiles: dict, run_dir: str) -> None:
    """A run folder holding the released AttnGAN generator (as G and as its EMA, which is what the official
    code saved), and the released DAMSM converted into its ``text_encoder`` folder (``options.text_encoder``,
    ``options.image_encoder``) or reused from ``--set damsm_dir=FOLDER``. ``chapter3-sample`` and
    ``chapter3-eval`` then work on it as on a trained run."""
    from chapters.ch2_stackgan.stages import check_stage_sizes
    from chapters.ch3_attngan import damsm
    from chapters.ch3_attngan.build import build_generator
    from t2igan.training import harness
    from t2igan.training.run import Checkpointer

    generator_path = options.generator
    if not generator_path:
        raise UserError("Pass the official generator: --generator=bird_AttnGAN2.pth (make chapter3-import GENERATOR=…).")
    if bool(options.text_encoder) != bool(options.image_encoder):
        raise UserError("Pass both --text_encoder and --image_encoder (the DAMSM released with the generator), "
                        "or neither and --set damsm_dir=FOLDER.")
    converting = bool(options.text_encoder)
    state = read_state_dict(generator_path)  # read and checked before anything is written
    found = checkpoint_configuration(state, generator_path)

    def adjust(config):
        if converting and config.get("damsm_dir"):
            raise UserError("--set damsm_dir and --text_encoder/--image_encoder both name a DAMSM; keep one.")
        if not converting and not config.get("damsm_dir"):
            raise UserError("The generator needs the DAMSM it was trained with: pass --text_encoder=text_encoder200.pth "
                            "--image_encoder=image_encoder200.pth (birds), or --set damsm_dir=FOLDER written by "
                            "python -m chapters.ch3_attngan.official damsm.")
        check_configuration(found, config, generator_path, 2 * config["text_hidden"])
        if "faithful_mask_bug" not in config.user_set:
            config["faithful_mask_bug"] = True  # the released generators were trained with it (README §3)
        if converting:
            config["damsm_backbone"] = "inception_torchvision"

    if os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")):
        raise UserError(f"{run_dir} already holds a generator; import into a new RUN_DIR.")
    _, run, config = harness.start_training(chapter, options, profiles, run_dir=run_dir, adjust=adjust)
    check_stage_sizes(config)
    index = harness.load_data(config, options.data_root)
    if converting:
        if index.vocabulary_words and not options.captions:
            words, source = list(index.vocabulary_words), "the data set's captions.pickle"
        else:
            source = find_captions(config["dataset"], options.captions, options.data_dir, options.data_root,
                                   options.metadata_dir)
            words = official_vocabulary(source)
        convert_damsm(options.text_encoder, options.image_encoder, words, run.text_encoder, config["dataset"],
                      source, config.get("damsm_align_corners", False))
    vocabulary, build_encoders = damsm.for_run(run, config, index, options.data_root)
    text, _ = build_encoders()
    check_configuration(found, config, generator_path, text.feature_dim)
    generator, average = build_generator(config, text.feature_dim), build_generator(config, text.feature_dim)
    load_generator(generator, state, generator_path)
    average.set_weights(generator.get_weights())
    Checkpointer(run.checkpoints, generator=generator, ema_generator=average).save(config["epochs"], generator.weights)
    harness.commit_config(run)
    record = dict(generator={"file": os.path.basename(generator_path), "sha256": sha256(generator_path)},
                  configuration=found, faithful_mask_bug=config["faithful_mask_bug"],
                  damsm=config.get("damsm_dir") or run.text_encoder, vocabulary_size=len(vocabulary))
    with open(os.path.join(run.path, IMPORTED), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    print(f"Imported {os.path.basename(generator_path)} (gf {found['generator_width']}, {found['stages']} stages, "
          f"{found['residual_blocks']} residual blocks) into {run.path}, with the DAMSM in {record['damsm']}.\n"
          f"Sample: make chapter3-sample DATASET={config['dataset']} PROFILE={config['profile']} RUN_DIR={run.path} "
          'TEXT="this bird is red with white wings and a short beak"')


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chapters.ch3_attngan.official", description=__doc__.split("\n\n")[0])
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    damsm = commands.add_parser("damsm", help="convert the released DAMSM into a folder for --set damsm_dir=…")
    damsm.add_argument("--text_encoder", required=True, help="text_encoder200.pth (birds) / text_encoder100.pth (COCO), or .npz")
    damsm.add_argument("--image_encoder", required=True, help="image_encoder200.pth / image_encoder100.pth, or .npz")
    damsm.add_argument("--dataset", required=True, help="birds, coco, or a data set folder: whose captions.pickle")
    damsm.add_argument("--out", required=True, help="the DAMSM folder to write")
    damsm.add_argument("--captions", help="the data set's official captions.pickle (default: looked up in the data "
                                          "folder, then in --metadata_dir)")
    damsm.add_argument("--data_dir", help="the data set folder (default: DATA_ROOT/DATASET)")
    damsm.add_argument("--data_root", default="data", help="where named data sets live (default: data)")
    damsm.add_argument("--metadata_dir", help="a folder with AttnGAN's metadata (captions.pickle)")
    damsm.add_argument("--align_corners", action="store_true",
                       help="resize images to 299 as PyTorch 0.3 did (align_corners=True), as when the released "
                            "encoder was trained; default: align_corners=False, as PyTorch ≥ 0.4 and the "
                            "R-precision code of DM-GAN / DF-GAN")
    damsm.add_argument("--overwrite", action="store_true", help="replace a complete DAMSM folder at --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        from chapters.ch3_attngan import damsm

        if not arguments.out:
            raise UserError("Pass the folder to write: --out=FOLDER (DAMSM_DIR=FOLDER with make damsm-import).")
        if damsm.is_complete(arguments.out) and not arguments.overwrite:
            raise UserError(f"{arguments.out} already holds a DAMSM; pass --overwrite to replace it.")
        captions = find_captions(arguments.dataset, arguments.captions, arguments.data_dir, arguments.data_root,
                                 arguments.metadata_dir)
        record = convert_damsm(arguments.text_encoder, arguments.image_encoder, official_vocabulary(captions),
                               arguments.out, arguments.dataset, captions, arguments.align_corners)
        print(f"Wrote the official DAMSM ({record['vocabulary_size']:,} words, {damsm.describe(record)}) to {arguments.out}.\n"
              f"Use it with --set damsm_dir={arguments.out} (chapters 3–5: training, sampling, R-precision).")
        return 0
    except (UserError, FileNotFoundError, ValueError) as error:
        if arguments.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
