"""Reading PyTorch weights without a PyTorch model: what every importer of official checkpoints shares.

The FID Inception (``t2igan.metrics.inception``) and the chapters' importers of released checkpoints
(chapter 2's StackGAN++, chapter 3's AttnGAN and DAMSM, chapter 4's DF-GAN and RAT-GAN) all

1. read a PyTorch state dict: ``.pth`` with torch (``weights_only=True``), or the ``.npz`` that
   ``convert`` writes, so that torch is needed once, anywhere;
2. check every key and shape against what the Keras network expects, naming the first mismatches;
3. turn PyTorch layouts into Keras ones (conv OIHW → HWIO, Linear (out, in) → (in, out), BatchNorm's
   four tensors → γ, β, moving mean, moving variance).

Command line::

    python -m t2igan.torch_weights convert IN.pth OUT.npz     # on a machine with torch; no torch needed afterwards
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

from t2igan.errors import UserError

BATCH_NORM_KEYS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                   ("running_var", "moving_variance"))


def read_state_dict(path: str, where: str = "") -> dict[str, np.ndarray]:
    """name → float32 array of a PyTorch state dict: ``.pth`` (torch, ``weights_only=True``) or ``.npz``.

    A ``module.`` prefix (a checkpoint saved from ``DataParallel``) is stripped; integer buffers
    (``num_batches_tracked``) are kept as they are and ignored by the loaders. ``where`` completes the
    message for a missing file (e.g. ". The AttnGAN checkpoints are … downloads listed in …").
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist{where}; pass the path of the downloaded file.")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {key: data[key] for key in data.files}
        except (ValueError, OSError, EOFError) as error:  # pickled objects refused, or not an .npz at all
            raise UserError(f"{path} is not a weights .npz of plain arrays ({error}); convert the checkpoint "
                            "again with python -m t2igan.torch_weights convert.") from None
    else:
        try:
            import torch
        except ImportError as error:
            raise UserError(f"Reading {path} needs PyTorch: pip install torch (the CPU build is enough), or "
                            "convert the file once on a machine that has it: python -m t2igan.torch_weights convert "
                            f"{os.path.basename(path)} {os.path.splitext(os.path.basename(path))[0]}.npz  "
                            "and pass the .npz instead.") from error
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 (torch raises many kinds; all mean "not a state dict")
            raise UserError(f"{path} is not a PyTorch state dict that loads with weights_only=True "
                            f"({str(error).splitlines()[0][:200]}). Re-download it.") from error
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = flatten_checkpoint(state) if isinstance(state, dict) else None
        if not state:
            raise UserError(f"{path} does not hold a state dict (name → tensor); it cannot be converted.")
    arrays = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        value = np.asarray(value)
        arrays[name] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    return arrays


def flatten_checkpoint(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A checkpoint of nested dicts (DF-GAN's ``{"model": {"netG": state dict, …}, "epoch": N}``) as one
    flat dict: ``model.netG.fc.weight`` → array; numbers become 0-d arrays; lists and strings are left out."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_checkpoint(value, name + "."))
        elif hasattr(value, "detach"):
            flat[name] = value.detach().cpu().numpy()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = np.asarray(value)
    return flat


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


def torch_shape(variable) -> tuple:
    """The shape PyTorch stores for a Keras variable: the inverse of ``conv_kernel`` and ``dense_kernel``
    (conv HWIO → OIHW, Dense (in, out) → Linear (out, in)); vectors keep theirs."""
    shape = tuple(variable.shape)
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2igan.torch_weights",
                                     description="A PyTorch .pth state dict → .npz (needs torch; reading the .npz does not).")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="a .pth state dict → .npz")
    convert.add_argument("source", help="a .pth file")
    convert.add_argument("target", help="the .npz to write")
    arguments = parser.parse_args(argv)
    try:
        state = read_state_dict(arguments.source)
        np.savez(arguments.target, **state)
        print(f"Wrote {arguments.target} ({len(state)} arrays), sha256 {sha256(arguments.target)}")
        return 0
    except (UserError, FileNotFoundError, ValueError) as error:
        if arguments.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
