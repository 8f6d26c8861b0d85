"""The built-in procedural data set: coloured shapes with CUB-style captions.

``shapes`` has one object per image; ``shapes-pairs`` has two objects and a
spatial relation between them. Everything is drawn with Pillow at 4x the target
resolution and box-downsampled so edges are smooth, and every image is fully
determined by ``(seed, split, index)``, so generation is reproducible and can
run in parallel. The result is written in the custom layout of
:mod:`t2igan.data.records`, plus ``attributes.jsonl`` with the true attributes
of each image and the attributes each caption states.

Pairs: the two objects are stored in reading order -- for a horizontal
relation the left object first, for a vertical one the top object first -- so
the true relation is always "left of" or "above". Captions phrase it in all
four ways ("a blue star to the right of a red circle"); the attributes a
caption states are normalised to the image's object order, so they can be
compared with the image directly.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import math
import multiprocessing
import os
import shutil
import sys
import threading
import time
from typing import Any

import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from t2igan.data.records import DatasetIndex, Example

GENERATOR_VERSION = 3  # 3: larger single objects, placed by their box

SHAPES = ("circle", "square", "triangle", "diamond", "star")
COLOURS = {  # saturated and far apart in hue/brightness, so they survive 32 px
    "red": (215, 35, 35),
    "green": (40, 185, 60),
    "blue": (45, 95, 235),
    "yellow": (240, 225, 40),
    "orange": (250, 140, 20),
    "purple": (145, 55, 205),
    "white": (238, 238, 238),
    "pink": (255, 125, 195),
}
SIZES = ("small", "large")
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
RELATIONS = ("left of", "right of", "above", "below")
ATTRIBUTE_VALUES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES, "position": POSITIONS}
INVERSE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

# Words the captions use; tests check every caption against these.
SHAPE_WORDS = {"circle": ("circle", "disk"), "square": ("square",), "triangle": ("triangle",),
               "diamond": ("diamond", "rhombus"), "star": ("star",)}
COLOUR_WORDS = {name: (name,) for name in COLOURS} | {"red": ("red", "crimson"),
                                                      "purple": ("purple", "violet")}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "huge")}
_CORNERS = {"top left": ("top left", "upper left"), "top right": ("top right", "upper right"),
            "bottom left": ("bottom left", "lower left"), "bottom right": ("bottom right", "lower right")}
POSITION_PHRASES = {
    **{name: (f"in the {a}", f"in the {b} corner", f"near the {a} corner", f"at the {b}")
       for name, (a, b) in _CORNERS.items()},
    "top": ("at the top", "near the top edge", "in the top middle", "along the top"),
    "bottom": ("at the bottom", "near the bottom edge", "in the bottom middle", "along the bottom"),
    "left": ("on the left", "near the left edge", "at the left side", "in the middle of the left side"),
    "right": ("on the right", "near the right edge", "at the right side", "in the middle of the right side"),
    "center": ("in the center", "in the middle", "in the centre", "at the center"),
}
_POSITION_NAMES = {name: _CORNERS.get(name, (name,)) for name in POSITIONS} | {"center": ("center", "middle")}
RELATION_PHRASES = {"left of": ("to the left of", "left of", "on the left of"),
                    "right of": ("to the right of", "right of", "on the right of"),
                    "above": ("above", "over"), "below": ("below", "under", "beneath")}

DEFAULT_NUM_TRAIN, DEFAULT_NUM_TEST = 10000, 1000
SUPERSAMPLING = 4
# Nominal object diameter / image side. Single objects are large enough that at 32 px a star
# (10 or 15 px across) differs from a disk by more than a few pixels; two objects side by side
# must fit with a gap, so pairs keep the smaller scale (generator version 2 used it for both).
SIZE_FRACTIONS = {"shapes": {"small": 0.32, "large": 0.48}, "shapes-pairs": {"small": 0.22, "large": 0.34}}
GRID_CENTRES = (0.21, 0.5, 0.79)  # not 1/6..5/6: large objects must fit at the border
MARGIN, PAIR_GAP = 0.02, 0.05
NUM_CAPTIONS = 10
_SPLIT_IDS = {"train": 0, "test": 1}
_CHUNK = 250


# ----------------------------------------------------------------------------- geometry
def _unit_outline(shape: str) -> np.ndarray:
    """Outline of a shape with nominal radius 1, pointing up (image y grows down).

    Scales differ per shape so that areas are roughly comparable.
    """
    if shape == "circle":
        angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        return 0.86 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "square":
        return 0.78 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    if shape == "triangle":
        angles = np.radians([-90, 30, 150])
        return 1.1 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "diamond":  # taller than wide, so it never looks like a rotated square
        return np.array([[0, -1.0], [0.62, 0], [0, 1.0], [-0.62, 0]])
    if shape == "star":
        angles = np.radians(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.08, 0.45)
        return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def _sample_outline(rng: np.random.Generator, shape: str, size: str, dataset: str) -> np.ndarray:
    """Scaled and slightly rotated outline around (0, 0), in fractions of the side."""
    radius = SIZE_FRACTIONS[dataset][size] / 2 * rng.uniform(0.95, 1.05)
    angle = math.radians(rng.uniform(-15, 15))  # small: a square must not turn into a diamond
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return radius * _unit_outline(shape) @ rotation.T


def _grid_position(x: float, y: float) -> str:
    column, row = min(int(x * 3), 2), min(int(y * 3), 2)
    return POSITIONS[3 * row + column]


def _make_object(attributes: dict[str, str], outline: np.ndarray, centre, rng) -> dict[str, Any]:
    jitter = rng.integers(-12, 13, size=3)  # tiny colour variation the caption does not mention
    colour = tuple(int(v) for v in np.clip(np.array(COLOURS[attributes["colour"]]) + jitter, 0, 255))
    points = outline + np.asarray(centre)
    box = [round(float(v), 4) for v in (*points.min(axis=0), *points.max(axis=0))]
    return {"attributes": {**attributes, "box": box}, "points": points, "rgb": colour}


def _place_single(rng, attributes: dict[str, str]) -> dict[str, Any]:
    outline = _sample_outline(rng, attributes["shape"], attributes["size"], "shapes")
    # The bounding box, not the outline's origin, is placed on the grid: a large triangle's
    # origin sits low in its box, and its box must stay in the cell its caption names.
    low, high = outline.min(axis=0), outline.max(axis=0)
    outline = outline - (low + high) / 2
    half = (high - low) / 2
    index = POSITIONS.index(attributes["position"])
    centre = []
    for axis, grid_index in ((0, index % 3), (1, index // 3)):
        value = GRID_CENTRES[grid_index] + rng.uniform(-0.04, 0.04)
        centre.append(float(np.clip(value, half[axis] + MARGIN, 1 - half[axis] - MARGIN)))
    return _make_object(attributes, outline, centre, rng)


def _place_pair(rng, first: dict[str, str], second: dict[str, str], relation: str) -> list[dict]:
    """Places ``first`` left of / above ``second`` with a clear gap between their boxes."""
    outlines = [_sample_outline(rng, a["shape"], a["size"], "shapes-pairs") for a in (first, second)]
    extents = [np.abs(o).max(axis=0) for o in outlines]
    axis = 0 if relation == "left of" else 1
    other = 1 - axis
    needed = extents[0][axis] + extents[1][axis] + PAIR_GAP
    low, high = extents[0][axis] + MARGIN, 1 - extents[1][axis] - MARGIN - needed
    if low > high:
        raise ValueError("Objects too large to place side by side; reduce SIZE_FRACTIONS.")
    a = rng.uniform(low, high)
    b = rng.uniform(a + needed, 1 - extents[1][axis] - MARGIN)
    c0 = rng.uniform(extents[0][other] + MARGIN, 1 - extents[0][other] - MARGIN)
    c1 = float(np.clip(c0 + rng.uniform(-0.1, 0.1), extents[1][other] + MARGIN,
                       1 - extents[1][other] - MARGIN))
    centres = [[0.0, 0.0], [0.0, 0.0]]
    centres[0][axis], centres[0][other], centres[1][axis], centres[1][other] = a, c0, b, c1
    objects = []
    for attributes, outline, centre in zip((first, second), outlines, centres):
        objects.append(_make_object({**attributes, "position": _grid_position(*centre)}, outline, centre, rng))
    return objects


def _render(rng, objects: list[dict], image_size: int) -> Image.Image:
    # Dark background whose shade, tint and gradient vary: style for the noise vector.
    # It is smooth, so it is computed at the target size; only the shapes are supersampled.
    base = rng.uniform(18, 55) + rng.uniform(-10, 10, size=3)
    angle, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0, 14)
    ramp = np.linspace(-0.5, 0.5, image_size, dtype=np.float32)
    gradient = amplitude * (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])
    pixels = (base[None, None, :] + gradient[:, :, None]).astype(np.float32)
    side = image_size * SUPERSAMPLING
    for obj in objects:
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in obj["points"] * side], fill=255)
        # Box-averaging the 4x mask gives each pixel its covered fraction: smooth edges.
        alpha = np.asarray(mask.reduce(SUPERSAMPLING), dtype=np.float32)[:, :, None] / 255.0
        pixels = pixels * (1.0 - alpha) + np.asarray(obj["rgb"], dtype=np.float32) * alpha
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------- captions
def _pick(rng: np.random.Generator, choices):
    return choices[rng.integers(len(choices))]  # rng.choice would build an array every call


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(rng, attributes: dict[str, str], with_size: bool) -> tuple[str, str]:
    """Returns (phrase without article, phrase with article)."""
    colour = _pick(rng, COLOUR_WORDS[attributes["colour"]])
    shape = _pick(rng, SHAPE_WORDS[attributes["shape"]])
    if with_size:
        size = _pick(rng, SIZE_WORDS[attributes["size"]])
        forms = (f"{size} {colour} {shape}", f"{size} {colour} {shape}", f"{colour} {shape} that is {size}")
    else:
        forms = (f"{colour} {shape}", f"{colour} {shape}", f"{colour} coloured {shape}")
    bare = _pick(rng, forms)
    return bare, _article(bare)


_WITH_POSITION = ("{np} {pp}", "there is {np} {pp}", "{pp} there is {np}", "{pp}, {np}",
                  "{np} is {pp}", "{np} placed {pp}", "{name}: {np}", "an image of {np} {pp}",
                  "{pp} we see {np}", "a single {bare} {pp}")
_WITHOUT_POSITION = ("{np}", "there is {np}", "an image of {np}", "{np} on a dark background",
                     "a picture showing {np}", "a single {bare}", "this is {np}")


def _single_captions(rng, attributes: dict[str, str]) -> tuple[list[str], list[dict]]:
    captions, stated = [], []
    for _ in range(NUM_CAPTIONS):
        with_size, with_position = rng.random() < 0.6, rng.random() < 0.7
        bare, np_ = _noun_phrase(rng, attributes, with_size)
        if with_position:
            position = attributes["position"]
            text = _pick(rng, _WITH_POSITION).format(
                np=np_, bare=bare, pp=_pick(rng, POSITION_PHRASES[position]),
                name=_pick(rng, _POSITION_NAMES[position]))
        else:
            text = _pick(rng, _WITHOUT_POSITION).format(np=np_, bare=bare)
        keys = ["shape", "colour"] + ["size"] * with_size + ["position"] * with_position
        captions.append(text)
        stated.append({key: attributes[key] for key in keys})
    return captions, stated


_WITH_RELATION = ("{a} {rel} {b}", "there is {a} {rel} {b}", "{a} is {rel} {b}",
                  "{a} sits {rel} {b}", "an image of {a} {rel} {b}")
_WITHOUT_RELATION = ("{a} and {b}", "there are {a} and {b}", "an image of {a} and {b}",
                     "two shapes: {a} and {b}")


def _pair_captions(rng, objects: list[dict[str, Any]], relation: str) -> tuple[list[str], list[dict]]:
    captions, stated = [], []
    for _ in range(NUM_CAPTIONS):
        sizes = [rng.random() < 0.5, rng.random() < 0.5]
        phrases = [_noun_phrase(rng, obj, with_size)[1] for obj, with_size in zip(objects, sizes)]
        swap = rng.random() < 0.5  # mention the second object first
        a, b = (phrases[1], phrases[0]) if swap else phrases
        entry: dict[str, Any] = {"objects": [
            {key: obj[key] for key in ["shape", "colour"] + ["size"] * with_size}
            for obj, with_size in zip(objects, sizes)]}
        if rng.random() < 0.8:
            spoken = INVERSE_RELATION[relation] if swap else relation
            text = _pick(rng, _WITH_RELATION).format(a=a, b=b, rel=_pick(rng, RELATION_PHRASES[spoken]))
            entry["relation"] = relation  # normalised to the image's object order
        else:
            text = _pick(rng, _WITHOUT_RELATION).format(a=a, b=b)
        captions.append(text)
        stated.append(entry)
    return captions, stated


# ----------------------------------------------------------------------------- sampling
def class_id(attributes: dict[str, str]) -> int:
    """Index of the full (shape, colour, size, position) combination."""
    index = 0
    for key, values in ATTRIBUTE_VALUES.items():
        index = index * len(values) + list(values).index(attributes[key])
    return index


def held_out_pairs(seed: int) -> list[tuple[str, str]]:
    """Five (colour, shape) pairs for the compositional split: every shape once, five colours once."""
    rng = np.random.default_rng([seed, 1234])
    colours = rng.permutation(list(COLOURS))[: len(SHAPES)]
    return sorted((str(colour), shape) for colour, shape in zip(colours, rng.permutation(SHAPES)))


def _sample_attributes(rng, split: str, held_out: list[tuple[str, str]]) -> dict[str, str]:
    all_pairs = list(itertools.product(COLOURS, SHAPES))
    seen = [pair for pair in all_pairs if pair not in held_out]
    # Compositional test sets draw half their objects from the unseen pairs.
    pool = held_out if (held_out and split == "test" and rng.random() < 0.5) else seen
    colour, shape = pool[rng.integers(len(pool))]
    return {"shape": shape, "colour": colour, "size": _pick(rng, SIZES),
            "position": _pick(rng, POSITIONS)}


def _make_example(pairs: bool, image_size: int, seed: int, split: str, index: int, held_out):
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    if not pairs:
        obj = _place_single(rng, _sample_attributes(rng, split, held_out))
        objects, true = [obj], obj["attributes"]
        captions, stated = _single_captions(rng, true)
    else:
        first = _sample_attributes(rng, split, held_out)
        second = _sample_attributes(rng, split, held_out)
        while (second["colour"], second["shape"]) == (first["colour"], first["shape"]):
            second = _sample_attributes(rng, split, held_out)  # captions must tell them apart
        relation = _pick(rng, ["left of", "above"])
        objects = _place_pair(rng, first, second, relation)
        true = {"objects": [obj["attributes"] for obj in objects], "relation": relation}
        captions, stated = _pair_captions(rng, true["objects"], relation)
    image = _render(rng, objects, image_size)
    first_object = true if not pairs else true["objects"][0]
    return image, captions, {"image": true, "captions": stated}, class_id(first_object)


def _render_chunk(task: tuple) -> list[tuple[str, int, dict]]:
    folder, pairs, image_size, seed, split, start, stop, held_out = task
    records = []
    for index in range(start, stop):
        key = f"{split}_{index:06d}"
        image, captions, attributes, label = _make_example(pairs, image_size, seed, split, index, held_out)
        image.save(os.path.join(folder, "images", key + ".png"), format="PNG")
        with open(os.path.join(folder, "captions", key + ".txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(captions) + "\n")
        records.append((key, label, attributes))
    return records


# ----------------------------------------------------------------------------- public API
def _options(pairs, image_size, num_train, num_test, seed, compositional_split) -> dict[str, Any]:
    return {"pairs": bool(pairs), "image_size": int(image_size), "num_train": int(num_train),
            "num_test": int(num_test), "seed": int(seed), "compositional_split": bool(compositional_split)}


def generate(root: str, *, pairs: bool = False, image_size: int = 64, num_train: int = DEFAULT_NUM_TRAIN,
             num_test: int = DEFAULT_NUM_TEST, seed: int = 0, compositional_split: bool = False,
             workers: int = 2) -> str:
    """Writes a shapes data set to ``root`` (replacing what is there) and returns ``root``."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}.")
    if num_train < 0 or num_test < 0:
        raise ValueError(f"Counts must be non-negative, got num_train={num_train}, num_test={num_test}.")
    options = _options(pairs, image_size, num_train, num_test, seed, compositional_split)
    held_out = held_out_pairs(seed) if compositional_split else []
    root = os.path.abspath(root)
    # Written next to the target and renamed at the end: an interrupted run never
    # leaves a folder that looks complete.
    temporary = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    for folder in ("images", "captions"):
        os.makedirs(os.path.join(temporary, folder))
    try:
        tasks = [(temporary, pairs, image_size, seed, split, start, min(start + _CHUNK, count), held_out)
                 for split, count in (("train", num_train), ("test", num_test))
                 for start in range(0, count, _CHUNK)]
        chunks = _run_chunks(tasks, workers)
        records = [record for chunk in chunks for record in chunk]
        _write_lists(temporary, records, pairs, options, held_out)
        shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(temporary, root)
        except OSError:
            if _stored_options(root) != options:
                raise
            shutil.rmtree(temporary)  # another process finished the same data set first
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return root


def _run_chunks(tasks: list[tuple], workers: int) -> list[list]:
    if workers <= 1 or len(tasks) <= 2:
        return [_render_chunk(task) for task in tasks]
    # Forking needs no `if __name__ == "__main__"` guard in the calling script, but
    # is only safe while no other threads run (TensorFlow starts some).
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    safe_to_fork = can_fork and threading.active_count() == 1 and "tensorflow" not in sys.modules
    context = multiprocessing.get_context("fork" if safe_to_fork else "spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            return list(pool.map(_render_chunk, tasks))
    except concurrent.futures.process.BrokenProcessPool:
        # Typically 'spawn' re-importing a calling script that has no main guard.
        logging.warning("Data set worker processes died; generating in this process instead. Once TensorFlow "
                        "is imported, workers use 'spawn', which needs `if __name__ == '__main__':` in the script.")
        return [_render_chunk(task) for task in tasks]


def _write_lists(folder: str, records, pairs: bool, options: dict, held_out) -> None:
    def write(name: str, lines: list[str]) -> None:
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    for split in ("train", "test"):
        write(f"{split}.txt", [key for key, _, _ in records if key.startswith(split + "_")])
    write("classes.txt", [f"{key} {label}" for key, label, _ in records])
    write("attributes.jsonl", [json.dumps({"key": key, **attributes}) for key, _, attributes in records])
    meta = {"name": "shapes-pairs" if pairs else "shapes", "image_size": options["image_size"],
            "seed": options["seed"], "counts": {"train": options["num_train"], "test": options["num_test"]},
            "generator_version": GENERATOR_VERSION, "options": options,
            "held_out_pairs": [list(pair) for pair in held_out],
            "attribute_values": {key: list(values) for key, values in ATTRIBUTE_VALUES.items()},
            "relations": list(RELATIONS), "num_classes": math.prod(len(v) for v in ATTRIBUTE_VALUES.values())}
    with open(os.path.join(folder, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)  # written last: its presence marks a finished data set


def _stored_options(root: str) -> dict[str, Any] | None:
    """Options of a finished data set in ``root`` (None when there is none or it is outdated)."""
    try:
        with open(os.path.join(root, "dataset.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta.get("options") if meta.get("generator_version") == GENERATOR_VERSION else {}


def folder_name(name: str = "shapes", image_size: int = 64, num_train: int = DEFAULT_NUM_TRAIN,
                num_test: int = DEFAULT_NUM_TEST, seed: int = 0, compositional_split: bool = False) -> str:
    """``<name>-<size>px-seed<seed>[-<train>x<test>][-comp]``, the cache folder :func:`ensure` uses."""
    folder = f"{name}-{image_size}px-seed{seed}"
    if (num_train, num_test) != (DEFAULT_NUM_TRAIN, DEFAULT_NUM_TEST):
        folder += f"-{num_train}x{num_test}"
    return folder + ("-comp" if compositional_split else "")


def ensure(data_root: str, name: str = "shapes", image_size: int = 64, num_train: int = DEFAULT_NUM_TRAIN,
           num_test: int = DEFAULT_NUM_TEST, seed: int = 0, compositional_split: bool = False) -> str:
    """Returns the cached data set folder under ``data_root``, generating it on first use."""
    if name not in ("shapes", "shapes-pairs"):
        raise ValueError(f"Unknown procedural data set {name!r}; expected 'shapes' or 'shapes-pairs'.")
    pairs = name == "shapes-pairs"
    root = os.path.join(data_root, folder_name(name, image_size, num_train, num_test, seed, compositional_split))
    options = _options(pairs, image_size, num_train, num_test, seed, compositional_split)
    stored = _stored_options(root)
    if stored == options:
        return root
    if stored is not None:
        logging.info("Options of %s changed; regenerating it.", root)
    logging.info("Generating %s (%d train + %d test images at %d px)...", root, num_train, num_test, image_size)
    start = time.perf_counter()
    generate(root, pairs=pairs, image_size=image_size, num_train=num_train, num_test=num_test, seed=seed,
             compositional_split=compositional_split, workers=max(1, min(2, os.cpu_count() or 1)))
    logging.info("Generated %s in %.1f s.", root, time.perf_counter() - start)
    return root


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load(root: str) -> DatasetIndex:
    """Reads a folder written by :func:`generate` into a :class:`DatasetIndex`."""
    root = os.path.abspath(root)
    if not os.path.exists(os.path.join(root, "dataset.json")):
        raise ValueError(f"{root} is not a generated shapes data set (no dataset.json); "
                         "create it with shapes.ensure() or shapes.generate().")
    with open(os.path.join(root, "dataset.json"), encoding="utf-8") as f:
        meta = json.load(f)
    labels = {key: int(label) for key, label in map(str.split, _lines(os.path.join(root, "classes.txt")))}
    attributes = {r["key"]: r for r in map(json.loads, _lines(os.path.join(root, "attributes.jsonl")))}
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    missing = {"train": 0, "test": 0}
    for split, examples in splits.items():
        for key in _lines(os.path.join(root, f"{split}.txt")):
            image_path = os.path.join(root, "images", key + ".png")
            if not os.path.exists(image_path):
                missing[split] += 1
                continue
            examples.append(Example(key=key, image_path=image_path, class_id=labels.get(key, -1),
                                    captions=_lines(os.path.join(root, "captions", key + ".txt")),
                                    image_attributes=attributes[key]["image"],
                                    caption_attributes=attributes[key]["captions"]))
    return DatasetIndex(name=meta["name"], root=root, train=splits["train"], test=splits["test"],
                        missing=missing, meta=meta)
