"""The released PyTorch checkpoints of AttnGAN's DAMSM (``taoxugit/AttnGAN``) → our DAMSM encoders.

AttnGAN's authors released the DAMSM they pretrained (``DAMSMencoders/bird/text_encoder200.pth`` and
``image_encoder200.pth``; COCO: ``text_encoder100.pth`` and ``image_encoder100.pth``). The papers of the
AttnGAN family condition on it and compute R-precision with it. This module

1. reads a PyTorch state dict (``.pth`` with torch, or the ``.npz`` that ``convert`` writes, so that
   torch is needed once, anywhere) and checks every key and shape against what our network expects;
2. maps the text encoder (``RNN_ENCODER`` in ``code/model.py``: embedding → bidirectional LSTM) onto
   :class:`t2igan.damsm.DamsmTextEncoder`, whose ``PyTorchLstmCell`` keeps PyTorch's weights 1:1;
3. maps the image encoder (``CNN_ENCODER``: torchvision's Inception-v3 up to Mixed_7c, a 1×1 conv on
   Mixed_6e and a linear layer on the pooled Mixed_7c) onto
   :class:`t2igan.damsm.DamsmImageEncoder` with ``backbone="inception_torchvision"``;
4. writes a DAMSM folder in our own format (what :func:`t2igan.damsm.load` reads), so that
   ``--set damsm_dir=FOLDER`` uses the official DAMSM in chapters 3–5 and for R-precision.

Command line::

    python -m t2igan.official damsm --text_encoder=text_encoder200.pth --image_encoder=image_encoder200.pth \\
        --dataset=birds --out=damsm/birds-official        # reads data/birds/captions.pickle
    python -m t2igan.official convert IN.pth OUT.npz     # on a machine with torch; no torch needed afterwards

Word ids: the official ids are those of the data set's ``captions.pickle`` (``ixtoword``; 0 = ``<end>``,
the padding). The folder keeps that list as its ``vocabulary.json``; our tokenizer reproduces the
official token ids of every caption (``tests/test_loaders.py``, ``tests/test_official.py``).

Nothing here downloads anything; chapter 3's ``official.py`` maps the released generators.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

from t2igan.errors import UserError

ATTNGAN_README = "https://github.com/taoxugit/AttnGAN#readme"
#: The AttnGAN data sets whose released DAMSM and vocabulary go together (words, file names).
RELEASED = {"birds": (5450, "text_encoder200.pth", "image_encoder200.pth"),
            "coco": (27297, "text_encoder100.pth", "image_encoder100.pth")}
BATCH_NORM_KEYS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                   ("running_var", "moving_variance"))


# ---------------------------------------------------------------------------
# 1. Reading and checking a state dict
# ---------------------------------------------------------------------------
def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """name → float32 array of a PyTorch state dict: ``.pth`` (torch, ``weights_only=True``) or ``.npz``.

    A ``module.`` prefix (a checkpoint saved from ``DataParallel``) is stripped; integer buffers
    (``num_batches_tracked``) are kept as they are and ignored by the loaders.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist. The AttnGAN checkpoints are Google Drive downloads "
                                f"listed in {ATTNGAN_README}; pass the path of the downloaded file.")
    if path.endswith(".npz"):
        with np.load(path) as data:
            state = {key: data[key] for key in data.files}
    else:
        try:
            import torch
        except ImportError as error:
            raise UserError(f"Reading {path} needs PyTorch: pip install torch (the CPU build is enough), or "
                            "convert the file once on a machine that has it: python -m t2igan.official convert "
                            f"{os.path.basename(path)} {os.path.splitext(os.path.basename(path))[0]}.npz  "
                            "and pass the .npz instead.") from error
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 (torch raises many kinds; all mean "not a state dict")
            raise UserError(f"{path} is not a PyTorch state dict that loads with weights_only=True "
                            f"({str(error).splitlines()[0][:200]}). Re-download it.") from error
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(hasattr(value, "numpy") for value in state.values()):
            raise UserError(f"{path} does not hold a state dict (name → tensor); it cannot be converted.")
        state = {key: value.detach().cpu().numpy() for key, value in state.items()}
    arrays = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        value = np.asarray(value)
        arrays[name] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    return arrays


def without_counters(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state dict less BatchNorm's ``num_batches_tracked`` (PyTorch ≥ 0.4.1 adds it; nothing uses it)."""
    return {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}


def check_state(state: dict[str, np.ndarray], expected: dict[str, tuple], path: str, what: str, fix: str) -> None:
    """Every expected key present with its shape, and no other key: one error listing what is wrong."""
    state = without_counters(state)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key])})" for key in expected
             if key in state and tuple(state[key].shape) != tuple(expected[key])]
    if missing or unexpected or wrong:
        def listed(items):
            return ", ".join(items[:6]) + (f" … ({len(items)} in all)" if len(items) > 6 else "")

        problems = [f"missing {listed(missing)}" if missing else "", f"unexpected {listed(unexpected)}" if unexpected
                    else "", f"wrong shapes: {listed(wrong)}" if wrong else ""]
        raise UserError(f"{path} is not {what}: " + "; ".join(p for p in problems if p) + f". {fix}")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight (out, in, kh, kw) → Keras kernel (kh, kw, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight (out, in) → Keras kernel (in, out)."""
    return np.transpose(weight)


# ---------------------------------------------------------------------------
# 2. DAMSM text encoder (``RNN_ENCODER``)
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
    """Copy ``RNN_ENCODER`` weights into a built :class:`~t2igan.damsm.DamsmTextEncoder`.

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
    """A :class:`~t2igan.damsm.DamsmTextEncoder` of the checkpoint's sizes, with its weights."""
    import tensorflow as tf

    from t2igan.damsm import DamsmTextEncoder

    vocabulary_size, embedding_dim, hidden = text_encoder_dimensions(state, path)
    encoder = DamsmTextEncoder(vocabulary_size, embedding_dim, hidden, dropout)
    encoder([tf.zeros((1, 2), tf.int32), tf.constant([2])])
    load_text_encoder(encoder, state, path)
    return encoder


# ---------------------------------------------------------------------------
# 3. DAMSM image encoder (``CNN_ENCODER``)
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

    from t2igan.damsm import DamsmImageEncoder

    encoder = DamsmImageEncoder("inception_torchvision", image_encoder_width(state, path), align_corners=align_corners)
    encoder(tf.zeros((1, 299, 299, 3)))
    load_image_encoder(encoder, state, path)
    return encoder


# ---------------------------------------------------------------------------
# 4. The official vocabulary and our DAMSM folder
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
    the folder usable, :func:`t2igan.damsm.is_complete`)."""
    from t2igan import damsm
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


def describe(record: dict) -> str | None:
    """One line naming an imported DAMSM (for protocols), or None for one trained here."""
    imported = record.get("imported")
    if not imported:
        return None
    return (f"the official AttnGAN DAMSM ({imported['text_encoder']['file']}, {imported['image_encoder']['file']}, "
            f"image resize align_corners={record['encoder_config'].get('damsm_align_corners', False)})")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m t2igan.official", description=__doc__.split("\n\n")[0])
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
    convert = commands.add_parser("convert", help="a .pth state dict → .npz (needs torch; reading the .npz does not)")
    convert.add_argument("source", help="a .pth file")
    convert.add_argument("target", help="the .npz to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "convert":
            state = read_state_dict(arguments.source)
            np.savez(arguments.target, **state)
            print(f"Wrote {arguments.target} ({len(state)} arrays), sha256 {sha256(arguments.target)}")
            return 0
        from t2igan import damsm

        if not arguments.out:
            raise UserError("Pass the folder to write: --out=FOLDER (DAMSM_DIR=FOLDER with make damsm-import).")
        if damsm.is_complete(arguments.out) and not arguments.overwrite:
            raise UserError(f"{arguments.out} already holds a DAMSM; pass --overwrite to replace it.")
        captions = find_captions(arguments.dataset, arguments.captions, arguments.data_dir, arguments.data_root,
                                 arguments.metadata_dir)
        record = convert_damsm(arguments.text_encoder, arguments.image_encoder, official_vocabulary(captions),
                               arguments.out, arguments.dataset, captions, arguments.align_corners)
        print(f"Wrote the official DAMSM ({record['vocabulary_size']:,} words, {describe(record)}) to {arguments.out}.\n"
              f"Use it with --set damsm_dir={arguments.out} (chapters 3–5: training, sampling, R-precision).")
        return 0
    except (UserError, FileNotFoundError, ValueError) as error:
        if arguments.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
