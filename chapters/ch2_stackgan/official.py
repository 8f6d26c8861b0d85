"""StackGAN++'s released birds generator (``hanzhanggit/StackGAN-v2``) in chapter 2's :class:`TreeGenerator`.

The release is ``netG_210000.pth`` of the ``birds_3stages`` configuration (``code/cfg/eval_birds.yml`` reads
it from ``models/birds_3stages/``; 210000 is the iteration). ``trainer.save_model`` wrote it with
``torch.save(netG.state_dict())`` of a ``DataParallel`` ``G_NET`` after ``load_params(netG, avg_param_G)``:
so its keys begin with ``module.``, its parameters are the moving average of G (what the official code
samples from) and its BatchNorm statistics are the live network's. It was written by Python 2.7 and
PyTorch 0.2/0.3, in the pre-1.6 (non-zip) format. It is read here through
:func:`t2igan.torch_weights.read_state_dict` (torch with ``weights_only=True``, which reads that format, or the
``.npz`` that ``python -m t2igan.torch_weights convert`` writes, so torch is needed once, anywhere). Every
key and shape is checked against a network built from the file's own sizes (``checkpoint_configuration``)
before anything is assigned. The architecture is :data:`ARCHITECTURE`.

Key map (official ``G_NET`` → ``TreeGenerator``; conv OIHW → HWIO, Linear (out, in) → (in, out), BatchNorm
weight, bias, running mean, running var → γ, β, moving mean, moving variance):

* ``ca_net.fc`` Linear(1024 → 4·128) + GLU → ``ca.fc`` (GLU, then μ = first half, log σ² = second);
* ``h_net1.fc.0`` Linear([c, z] → 2·16·16·gf, no bias) → ``fc``, ``h_net1.fc.1`` BatchNorm1d → ``fc_norm``,
  both with their features permuted: the official GLU output is *viewed* as (C, 4, 4), feature c·16 + p,
  ours is reshaped to (4, 4, C), feature p·C + c (:func:`fc_order`; AttnGAN has the same block, chapter 3);
* ``h_net1.upsample{1..4}.1`` conv, ``.2`` BN → ``first_ups[0..3].conv``, ``.norm``;
* ``h_net{k}.jointConv.0`` conv, ``.1`` BN → ``joins[k−2].conv``, ``.norm``;
* ``h_net{k}.residual.{r}.block.{0,1}`` conv, BN → ``residuals[k−2][r].join.conv``, ``.join.norm``;
  ``.block.{3,4}`` → ``residuals[k−2][r].conv``, ``.norm``;
* ``h_net{k}.upsample.{1,2}`` conv, BN → ``next_ups[k−2].conv``, ``.norm``;
* ``img_net{k}.img.0`` conv3×3 (→ 3, no bias) → ``to_images[k−1]``.

The concatenations have the same order in both ([c, z] into the fc, [c tiled, h] into ``jointConv``). What
the official file holds beyond that: the ``module.`` prefix (stripped) and, in files of PyTorch ≥ 0.4.1,
BatchNorm's ``num_batches_tracked`` counters (nothing reads them). No weight is left over.

The CA noise. ``CA_NET.reparametrize`` draws ε ~ N(0, 1) at every forward, in eval mode too
(``trainer.evaluate`` calls ``netG.eval()`` and then ``netG(noise, t)``): c = μ + ε·exp(½·log σ²) when
sampling as when training. Here ε is the last ``condition_dim`` values of each noise row, N(0, 1) as well,
so a sample is the official one for (z, ε) ~ N(0, I); the equivalence test passes the same ε to both.

The text. The generator reads Reed's char-CNN-RNN embeddings (1024-d), which the release does not include:
StackGAN publishes them as ``char-CNN-RNN-embeddings.pickle`` per split (``birds/train``, ``birds/test``),
row i for image i of the ``filenames.pickle`` beside it, 10 captions × 1024 (``code/datasets.py``). They are
read with the project's restricted unpickler (:mod:`t2igan.data.safe_pickle`), which also builds plain numeric
arrays, and stored in the run's ``text_encoder`` folder as a pretrained run stores its own. They come from
Reed's Torch7 encoder, which this project does not run: an imported run samples any caption of the data
set (typed as it is written there) and evaluates on the test captions; a sentence of one's own is refused
with that explanation (:func:`caption_encoder`).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from t2igan.errors import UserError
from t2igan.training.run import IMPORTED, refuse_imported_run  # noqa: F401  (for __main__)
from t2igan.torch_weights import (BATCH_NORM_KEYS, check_state, conv_kernel, dense_kernel, torch_shape,
                                 without_counters)

WHAT = "StackGAN++'s birds generator (a G_NET state dict of hanzhanggit/StackGAN-v2, e.g. netG_210000.pth)"
ARCHITECTURE = ("hanzhanggit/StackGAN-v2 code/model.py G_NET (CA_NET, INIT_STAGE_G, NEXT_STAGE_G, GET_IMAGE_G) "
                "as added in commit c5b443c8 (2017-12-24), unchanged through 6228e347 (2018-02-25)")
STACKGAN_README = "https://github.com/hanzhanggit/StackGAN-v2#readme"
WHERE = f". The released birds generator and the char-CNN-RNN embeddings are Google Drive downloads listed in {STACKGAN_README}"
EMBEDDINGS = "char-CNN-RNN-embeddings.pickle"
CAPTIONS = "captions.json"  # in the run's text_encoder folder: the data set's captions, row for row
def fc_order(channels: int) -> np.ndarray:
    """Index array: our fc feature j = official feature ``fc_order(C)[j]``, in both GLU halves (the official
    feature of half h, channel c, position p is h·16C + c·16 + p; ours h·16C + p·C + c)."""
    half, position, channel = np.meshgrid(np.arange(2), np.arange(16), np.arange(channels), indexing="ij")
    return (half * 16 * channels + channel * 16 + position).reshape(-1)


# ------------------------------------------------------------------------------------- the state dict
def generator_state(state: dict[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    """The ``G_NET`` weights of a file, without a DataParallel ``module.`` or BatchNorm counters; another
    model's file is named as such (one sentence, with the command that imports it where there is one)."""
    state = without_counters({key[len("module."):] if key.startswith("module.") else key: value
                              for key, value in state.items()})
    keys = sorted(state)
    if any(key.startswith(("model.netG.", "GBlocks.")) for key in keys):
        raise UserError(f"{path} is a DF-GAN checkpoint, not {WHAT}: import it with make chapter4-import.")
    if any(".att." in key for key in keys):
        raise UserError(f"{path} is an AttnGAN generator (it has {next(k for k in keys if '.att.' in k)}), not "
                        f"{WHAT}: import it with make chapter3-import.")
    if "h_net1.fc.0.weight" in state and "ca_net.fc.weight" not in state:
        raise UserError(f"{path} is an unconditional StackGAN++ generator (no ca_net: the dog, cat, bedroom or "
                        "church model); only the text-conditioned birds model imports.")
    needed = ("ca_net.fc.weight", "h_net1.fc.0.weight", "img_net1.img.0.weight")
    if not all(key in state for key in needed):
        held = f"its keys begin {', '.join(keys[:4])}" if keys else "it holds no weights"
        raise UserError(f"{path} is not {WHAT}: it has no {', '.join(k for k in needed if k not in state)} ({held}); "
                        "StackGAN-v1's files do not import.")
    return state


def checkpoint_configuration(state: dict[str, np.ndarray], path: str) -> dict:
    """The sizes a ``G_NET`` file was built with, read off its shapes (``cfg.GAN``, ``cfg.TREE``, ``cfg.TEXT``)."""
    state = generator_state(state, path)
    condition_dim = state["ca_net.fc.weight"].shape[0] // 4
    stages = max(int(m.group(1)) for key in state if (m := re.match(r"img_net(\d+)\.", key)))
    ups = len({m.group(1) for key in state if (m := re.match(r"h_net1\.upsample(\d+)\.", key))})
    residual = {m.group(1) for key in state if (m := re.match(r"h_net2\.residual\.(\d+)\.", key))}
    base_size = 4 * 2**ups  # INIT_STAGE_G: 4×4, then its up-blocks (four: 64 px)
    return dict(text_dim=int(state["ca_net.fc.weight"].shape[1]), condition_dim=int(condition_dim),
                noise_dim=int(state["h_net1.fc.0.weight"].shape[1] - condition_dim),
                generator_width=int(state["img_net1.img.0.weight"].shape[1]), stages=stages,
                residual_blocks=len(residual), base_size=base_size, image_size=base_size * 2 ** (stages - 1))


def check_configuration(found: dict, config: dict, path: str) -> None:
    """The run's settings must build the file's network; name the settings to change otherwise."""
    keys = ["text_dim", "condition_dim", "noise_dim", "generator_width", "stages", "base_size", "image_size"]
    keys += ["residual_blocks"] if found["stages"] > 1 else []
    differing = [key for key in keys if config[key] != found[key]]
    if differing:
        raise UserError(f"{path} was built with other sizes than this run's: "
                        + ", ".join(f"{key} {found[key]} (the run has {config[key]})" for key in differing)
                        + ". Use PROFILE=paper DATASET=birds (the release's), or pass "
                        + " ".join(f"--set {key}={found[key]}" for key in differing) + ".")


# --------------------------------------------------------------------------------------------- key map
def _same(value):
    return value


def batch_norm_entries(prefix: str, norm, convert=_same) -> list[tuple]:
    return [(f"{prefix}.{torch_name}", getattr(norm, keras_name), convert) for torch_name, keras_name in BATCH_NORM_KEYS]


def conv_entry(prefix: str, layer) -> tuple:
    return (f"{prefix}.weight", layer.kernel, conv_kernel)


def first_stage_entries(generator) -> list[tuple]:
    """``ca_net`` and ``h_net1``: CA's fc, the fc + BN (features permuted, :func:`fc_order`), the upsamplings."""
    order = fc_order(generator.start_width)
    entries = [("ca_net.fc.weight", generator.ca.fc.kernel, dense_kernel), ("ca_net.fc.bias", generator.ca.fc.bias, _same),
               ("h_net1.fc.0.weight", generator.fc.kernel, lambda value: dense_kernel(value)[:, order])]
    entries += batch_norm_entries("h_net1.fc.1", generator.fc_norm, lambda value: value[order])
    for i, up in enumerate(generator.first_ups, start=1):
        entries += [conv_entry(f"h_net1.upsample{i}.1", up.conv), *batch_norm_entries(f"h_net1.upsample{i}.2", up.norm)]
    return entries


def residual_entries(prefix: str, residuals) -> list[tuple]:
    """A later stage's residual blocks (``h_netK.residual.R.block``: conv, BN, GLU, conv, BN)."""
    entries = []
    for r, block in enumerate(residuals):
        entries += [conv_entry(f"{prefix}.residual.{r}.block.0", block.join.conv),
                    *batch_norm_entries(f"{prefix}.residual.{r}.block.1", block.join.norm),
                    conv_entry(f"{prefix}.residual.{r}.block.3", block.conv),
                    *batch_norm_entries(f"{prefix}.residual.{r}.block.4", block.norm)]
    return entries


def upsample_entries(prefix: str, up) -> list[tuple]:
    return [conv_entry(f"{prefix}.upsample.1", up.conv), *batch_norm_entries(f"{prefix}.upsample.2", up.norm)]


def image_entries(generator) -> list[tuple]:
    return [conv_entry(f"img_net{k}.img.0", head) for k, head in enumerate(generator.to_images, start=1)]


def generator_entries(generator) -> list[tuple]:
    """(official ``G_NET`` key, our variable, conversion) for every weight of a built TreeGenerator."""
    entries = first_stage_entries(generator)
    for k, (join, residuals, up) in enumerate(zip(generator.joins, generator.residuals, generator.next_ups), start=2):
        entries += [conv_entry(f"h_net{k}.jointConv.0", join.conv), *batch_norm_entries(f"h_net{k}.jointConv.1", join.norm)]
        entries += residual_entries(f"h_net{k}", residuals) + upsample_entries(f"h_net{k}", up)
    return entries + image_entries(generator)


def expected_shapes(entries) -> dict[str, tuple]:
    return {key: torch_shape(variable) for key, variable, _ in entries}


def load_generator(generator, state: dict[str, np.ndarray], path: str) -> None:
    """Copy a released ``G_NET`` state dict into a built TreeGenerator of its configuration; every key and
    shape is checked before anything changes."""
    if not generator.weights:
        raise ValueError("Build the generator (call it once) before loading weights into it.")
    state = generator_state(state, path)
    entries = generator_entries(generator)
    check_state(state, expected_shapes(entries), path, WHAT,
                "Check that the run's settings match the file (PROFILE=paper, DATASET=birds).")
    for key, variable, convert in entries:
        variable.assign(convert(np.asarray(state[key], np.float32)))


# ------------------------------------------------------------------------ Reed's embeddings (the pickle)
def _stacked(value, path: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and value:
        return np.stack([_stacked(item, path) for item in value])
    raise UserError(f"{path} holds a {type(value).__name__}, not Reed's embeddings (arrays of numbers); "
                    f"re-download StackGAN's {EMBEDDINGS}.")


def read_embeddings(path: str) -> np.ndarray:
    """Reed's caption embeddings of one split: (images, captions, D) float32, from StackGAN's pickle (read by
    the restricted unpickler, which builds plain numeric arrays and refuses every other global)."""
    from t2igan.data.safe_pickle import load_pickle

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist{WHERE}.")
    values = _stacked(load_pickle(path, numeric_arrays=True), path)
    if values.ndim != 3 or values.dtype.kind != "f":
        raise UserError(f"{path} holds {values.dtype} values of shape {values.shape}, not Reed's embeddings "
                        "(images × captions × 1024 floats); re-download StackGAN's embeddings.")
    return values.astype(np.float32)


def find_embeddings(folders: list[str | None]) -> dict[str, str]:
    """``train`` and ``test`` → the pickle, from the first folder holding both (``<folder>/<split>/…``)."""
    tried = [folder for folder in folders if folder]
    for folder in tried:
        paths = {split: os.path.join(folder, split, EMBEDDINGS) for split in ("train", "test")}
        if all(os.path.isfile(path) for path in paths.values()):
            return paths
    raise UserError(f"The generator reads Reed's char-CNN-RNN embeddings, and none of {', '.join(tried)} has "
                    f"train/{EMBEDDINGS} and test/{EMBEDDINGS}: download StackGAN's birds embeddings "
                    f"({STACKGAN_README}, Data, step 1) and pass their folder with --embeddings=FOLDER.")


def aligned_embeddings(examples, path: str, text_dim: int) -> np.ndarray:
    """The pickle's rows in the order of the data set's ``examples`` (looked up by key through the
    ``filenames.pickle`` beside it): (len(examples), captions, D)."""
    from t2igan.data.safe_pickle import load_pickle

    names_path = os.path.join(os.path.dirname(path), "filenames.pickle")
    if not os.path.isfile(names_path):
        raise UserError(f"{path} needs the filenames.pickle released with it beside it (its rows are that list's "
                        "images, in order); copy it from the same download.")
    names = load_pickle(names_path)
    values = read_embeddings(path)
    if not isinstance(names, list) or len(names) != len(values):
        raise UserError(f"{path} has {len(values)} rows but {names_path} lists "
                        f"{len(names) if isinstance(names, list) else 'no list of'} images: use the two files of one download.")
    if values.shape[-1] != text_dim:
        raise UserError(f"{path} holds {values.shape[-1]}-d embeddings, the generator reads {text_dim}-d ones: "
                        "use Reed's char-CNN-RNN embeddings that StackGAN++ was trained on.")
    row = {(name.decode("latin1") if isinstance(name, bytes) else str(name)).removesuffix(".jpg"): i
           for i, name in enumerate(names)}
    absent = [example.key for example in examples if example.key not in row]
    if absent:
        raise UserError(f"{path} has no embeddings for {len(absent)} of the data set's images (e.g. {absent[0]}): "
                        "its filenames.pickle lists another split; use the embeddings of this data set's split.")
    return values[[row[example.key] for example in examples]]


def _words(caption: str) -> str:
    """A caption as its words (lower case, no punctuation): how a typed caption is matched to the data set's."""
    return " ".join(re.findall(r"\w+", caption.lower()))


def write_text_folder(folder: str, index, paths: dict[str, str], text_dim: int) -> dict:
    """The run's ``text_encoder`` folder holding Reed's embeddings as a pretrained run holds its own
    (``embeddings-<split>.npy``, read by ``char_cnn_rnn.run_embeddings``), the captions row for row, and
    ``complete.json`` last (it marks the folder usable). Returns what ``complete.json`` says of the files."""
    from t2igan.data.records import caption_fingerprint
    from t2igan.torch_weights import sha256

    tables = {split: aligned_embeddings(index.split(split), path, text_dim) for split, path in paths.items()}
    os.makedirs(folder, exist_ok=True)
    if os.path.exists(os.path.join(folder, "complete.json")):
        os.remove(os.path.join(folder, "complete.json"))  # an interrupted overwrite must not look complete
    captions = {}
    for split, values in tables.items():
        np.save(os.path.join(folder, f"embeddings-{split}.npy"), values)  # float32: no rounding of Reed's values
        captions[split] = [example.captions[: values.shape[1]] for example in index.split(split)]
    with open(os.path.join(folder, CAPTIONS), "w", encoding="utf-8") as file:
        json.dump(captions, file)
    source = {split: {"file": path, "sha256": sha256(path)} for split, path in paths.items()}
    record = dict(embedding_scale=1.0, data_fingerprint=caption_fingerprint(index), config={"text_dim": text_dim},
                  imported={"from": "Reed's char-CNN-RNN embeddings as StackGAN publishes them", **source})
    with open(os.path.join(folder, "complete.json"), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    return source


def caption_encoder(run, config):
    """``caption → text vector`` for ``chapter2-sample``: the run's own char-CNN-RNN, or, for an imported run,
    the stored Reed embedding of that caption of the data set (Reed's Torch7 encoder does not run here)."""
    from chapters.ch1_gan_int_cls import char_cnn_rnn

    if not os.path.exists(os.path.join(run.path, IMPORTED)):
        return lambda caption: char_cnn_rnn.encode_user_caption(run.text_encoder, config, caption)
    with open(os.path.join(run.text_encoder, CAPTIONS), encoding="utf-8") as file:
        captions = json.load(file)
    where = {}
    for split in ("test", "train"):  # a caption in both splits: the test one
        for i, texts in enumerate(captions[split]):
            for j, text in enumerate(texts):
                where.setdefault(_words(text), (split, i, j))

    def encode(caption):
        if caption is None or not _words(caption):
            raise UserError(f'The caption is empty. Pass one of the data set\'s, e.g. TEXT="{captions["test"][0][0]}".')
        if _words(caption) not in where:
            raise UserError(f"The imported StackGAN++ reads Reed's char-CNN-RNN embeddings, made by his Torch7 "
                            f"encoder, which this project does not run, so it draws only the data set's captions: "
                            f'{caption!r} is none of them; pass one as written there (e.g. TEXT="{captions["test"][0][0]}"), '
                            "or evaluate on all of them with make chapter2-eval.")
        split, i, j = where[_words(caption)]
        return np.load(os.path.join(run.text_encoder, f"embeddings-{split}.npy"), mmap_mode="r")[i, j].astype(np.float32)

    return encode


# ----------------------------------------------------------------------------------- chapter2-import
def import_run(start_training, options, run_dir: str) -> None:
    """A run folder holding the released generator (as G and as its EMA: the file is the official average)
    and Reed's embeddings of the data set, which ``chapter2-sample`` and ``chapter2-eval`` use as a trained
    run; train and pretrain refuse it (:data:`IMPORTED`). ``start_training(options, also)`` is the chapter's
    own start (config, run folder, lock); ``also(config)`` runs the import's checks."""
    from chapters.ch2_stackgan.build import build_v2
    from t2igan.torch_weights import read_state_dict, sha256
    from t2igan.training import harness
    from t2igan.training.run import Checkpointer

    if options.variant != "v2":
        raise UserError("Only StackGAN++'s released generator imports: leave VARIANT out (StackGAN-v1's release, "
                        "TF 0.12 checkpoints, is not supported).")
    path = options.checkpoint
    if not path:
        raise UserError("Pass the released file: --checkpoint=netG_210000.pth (make chapter2-import CHECKPOINT=…).")
    if os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")):
        raise UserError(f"{run_dir} already holds a generator; import into a new RUN_DIR.")
    state = generator_state(read_state_dict(path, WHERE), path)  # read and checked before anything is written
    found = checkpoint_configuration(state, path)

    def also(config):
        check_configuration(found, config, path)
        config["normalise_text_embeddings"] = False  # Reed's embeddings go in as they are, as officially

    _, run, config = start_training(options, also)
    index = harness.load_data(config, options.data_root)
    paths = find_embeddings([options.embeddings, index.root, config.get("metadata_dir")])
    text = write_text_folder(run.text_encoder, index, paths, found["text_dim"])
    gan = build_v2(config)
    load_generator(gan.generator, state, path)
    objects = dict(generator=gan.generator)
    if gan.ema_generator is not None:
        gan.ema_generator.set_weights(gan.generator.get_weights())
        objects["ema_generator"] = gan.ema_generator
    Checkpointer(run.checkpoints, **objects).save(config["epochs"], gan.generator.weights)
    harness.commit_config(run)
    iteration = re.search(r"_(\d+)\.[^.]+$", os.path.basename(path))  # netG_210000.pth: the official naming
    record = dict(checkpoint={"file": os.path.basename(path), "sha256": sha256(path)}, architecture=ARCHITECTURE,
                  configuration=found, iteration=int(iteration.group(1)) if iteration else None, embeddings=text)
    with open(os.path.join(run.path, IMPORTED), "w", encoding="utf-8") as file:
        json.dump(record, file, indent=2)
    example = index.test[0].captions[0]
    print(f"Imported {os.path.basename(path)} (StackGAN++, gf {found['generator_width']}, {found['stages']} stages to "
          f"{found['image_size']} px) into {run.path}, with Reed's embeddings of {len(index.train)} + {len(index.test)} "
          f"images.\nSample a caption of the data set: make chapter2-sample DATASET={config['dataset']} "
          f'PROFILE={config["profile"]} RUN_DIR={run.path} TEXT="{example}"')
