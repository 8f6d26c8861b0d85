"""``load_dataset``: every supported data set → :class:`DatasetIndex`.

Layouts (folder trees and downloads in ``datasets/README.md``):

* ``shapes`` / ``shapes-pairs`` — generated on first use by :mod:`t2igan.data.shapes`.
* ``birds`` — the AttnGAN ``data/birds`` folder (CUB-200-2011 images, the
  ten-captions-per-image ``text/`` files, ``train|test/filenames.pickle``).
* ``flowers`` — Oxford-102 with the ``text_c10`` captions, StackGAN/AttnGAN style.
* ``coco`` — the AttnGAN ``data/coco`` folder, or the official captions JSON.
  With only a train JSON (e.g. ``captions_train2017.json``) the last 10 % of
  the numerically sorted image ids form the test split.
* any other value that is a folder — the custom layout (:mod:`t2igan.data.custom`).

AttnGAN metadata (``train|test/filenames.pickle``, ``*/class_info.pickle``,
``captions.pickle``) is looked up in the data folder first, then in
``metadata_dir``; all pickles go through the restricted unpickler. When a
``captions.pickle`` is found, its ``ixtoword`` becomes
``DatasetIndex.vocabulary_words`` so word ids match the released encoders.

What every loader does the same way:

* Listed images that are not on disk are counted per split in
  ``DatasetIndex.missing``, logged once with an example path, and skipped. A
  split with none of its images present is an error that says what to download.
* Caption files are UTF-8 (a BOM is dropped); empty lines are skipped; a file
  that is not UTF-8 is an error naming it. The real CUB caption files contain
  the pair U+FFFD U+FFFD (a mangled separator) between words in a few files:
  it is replaced by a space, exactly as AttnGAN's ``load_captions`` does, and
  the number of repaired files is kept in ``meta["repaired_caption_files"]``.
* Images with no caption file are skipped with a warning
  (``meta["no_captions"]`` per split).
* Image paths are absolute.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from absl import logging

from t2igan.data.custom import describe_folder, load_custom
from t2igan.data.splits import Candidate, assemble_split, read_text_lines
from t2igan.data.records import DatasetIndex
from t2igan.data.safe_pickle import load_pickle

DATASET_NAMES = ("shapes", "shapes-pairs", "birds", "flowers", "coco")

# Real sample data shipped beside the project (``../shared/data`` from the repo
# root), tried when ``<data_root>/<name>`` does not exist.
_SHARED_SAMPLES = {"birds": "birds-mini", "coco": "coco-mini"}
SHARED_DATA_ENV = "T2IGAN_SHARED_DATA"

# Fraction of the sorted COCO image ids used as the test split when only a
# train captions JSON is present.
COCO_TEST_FRACTION = 0.1

_PAD_WORD = "<end>"

_DOWNLOAD_HINTS = {
    "birds": (
        "Download CUB_200_2011.tgz (data.caltech.edu/records/65de6-vp158) and extract it so that "
        "<folder>/CUB_200_2011/images/<class>/<name>.jpg exists; see datasets/README.md"
    ),
    "flowers": (
        "Download 102flowers.tgz (www.robots.ox.ac.uk/~vgg/data/flowers/102/) and extract it so that "
        "<folder>/jpg/image_00001.jpg exists; see datasets/README.md"
    ),
    "coco": (
        "Download the COCO images (cocodataset.org/#download: train2014.zip, val2014.zip or train2017.zip) "
        "and extract them into <folder>; see datasets/README.md"
    ),
}


# ----------------------------------------------------------------------------- shared machinery
def _layout_error(dataset: str, folder: str, expected: list[str], extra: str = "") -> ValueError:
    return ValueError(
        f"{folder} does not look like the {dataset} layout: expected {', '.join(expected)}; "
        f"found {describe_folder(folder)}.{extra} See datasets/README.md for the folder tree."
    )


def _load_name_list(path: str) -> list[str]:
    names = load_pickle(path)
    if not isinstance(names, list) or not all(isinstance(name, (str, bytes)) for name in names):
        raise ValueError(f"{path} should hold a list of file names; got {type(names).__name__}.")
    return [name.decode("latin1") if isinstance(name, bytes) else name for name in names]


def _find_metadata(folder: str, metadata_dir: str | None, relative: str) -> str | None:
    """``relative`` in the data folder first, then in ``metadata_dir``."""
    for base in (folder, metadata_dir):
        if base is not None and os.path.isfile(os.path.join(base, relative)):
            return os.path.join(base, relative)
    return None


def _split_lists(folder: str, metadata_dir: str | None) -> dict[str, str] | None:
    lists = {
        split: _find_metadata(folder, metadata_dir, os.path.join(split, "filenames.pickle"))
        for split in ("train", "test")
    }
    return lists if all(lists.values()) else None


def _class_info(list_path: str, count: int) -> list[int] | None:
    """``class_info.pickle`` beside a ``filenames.pickle``, when it matches the list."""
    path = os.path.join(os.path.dirname(list_path), "class_info.pickle")
    if not os.path.isfile(path):
        return None
    class_ids = load_pickle(path)
    if not isinstance(class_ids, list) or len(class_ids) != count:
        logging.warning("Ignoring %s: it has %s entries for %d file names.", path,
                        len(class_ids) if isinstance(class_ids, list) else "no list of", count)
        return None
    return [int(class_id) for class_id in class_ids]


def load_official_vocabulary(path: str) -> list[str]:
    """``ixtoword`` of an AttnGAN ``captions.pickle`` as a list in index order."""
    data = load_pickle(path)
    if not (isinstance(data, list) and len(data) == 4 and isinstance(data[2], dict)):
        raise ValueError(f"{path} should hold [train_captions, test_captions, ixtoword, wordtoix]; re-download it.")
    index_to_word = data[2]
    if sorted(index_to_word) != list(range(len(index_to_word))):
        raise ValueError(f"{path}: ixtoword indices are not 0..{len(index_to_word) - 1}; re-download it.")
    words = [str(index_to_word[i]) for i in range(len(index_to_word))]
    if not words or words[0] != _PAD_WORD:
        raise ValueError(f"{path}: index 0 of ixtoword is {words[:1]}, expected {_PAD_WORD!r}; re-download it.")
    return words


def _official_vocabulary(folder: str, metadata_dir: str | None, meta: dict) -> list[str] | None:
    """The ``ixtoword`` of a ``captions.pickle`` in the data folder or ``metadata_dir``, if any."""
    path = _find_metadata(folder, metadata_dir, "captions.pickle")
    if path is None:
        meta["vocabulary_from"] = None
        return None
    meta["vocabulary_from"] = "data_dir" if os.path.dirname(path) == folder else "metadata_dir"
    return load_official_vocabulary(path)


def _finish(name: str, folder: str, splits: dict, meta: dict, **fields: Any) -> DatasetIndex:
    examples = {split: result[0] for split, result in splits.items()}
    missing = {split: result[1] for split, result in splits.items()}
    meta = dict(meta)
    meta["no_captions"] = {split: result[2] for split, result in splits.items()}
    meta["repaired_caption_files"] = sum(result[3] for result in splits.values())
    if meta["repaired_caption_files"]:
        logging.info("%s: replaced the mangled U+FFFD pair by a space in %d caption files (as AttnGAN does).",
                     name, meta["repaired_caption_files"])
    return DatasetIndex(name=name, root=folder, train=examples["train"], test=examples["test"], missing=missing,
                        meta=meta, **fields)


# ----------------------------------------------------------------------------- birds (CUB-200-2011)
def _read_cub_table(path: str, columns: int) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for number, line in enumerate(read_text_lines(path), start=1):
        parts = line.split()
        if len(parts) != columns:
            raise ValueError(
                f"{path} line {number}: expected {columns} columns, got {line!r}; re-extract CUB_200_2011.tgz."
            )
        table[parts[0]] = parts[1:]
    return table


def _cub_bboxes(cub_folder: str) -> dict[str, tuple[int, int, int, int]]:
    """Image name without extension → (x, y, w, h), joined through the image ids."""
    images = _read_cub_table(os.path.join(cub_folder, "images.txt"), 2)
    boxes_path = os.path.join(cub_folder, "bounding_boxes.txt")
    boxes = _read_cub_table(boxes_path, 5)
    result = {}
    for image_id, (relative_path,) in images.items():
        if image_id in boxes:
            try:
                x, y, width, height = (int(float(value)) for value in boxes[image_id])
            except ValueError:
                raise ValueError(f"{boxes_path}: non-numeric box for image id {image_id}.") from None
            result[os.path.splitext(relative_path)[0]] = (x, y, width, height)
    return result


def _class_from_key(key: str) -> int:
    """``002.Laysan_Albatross/...`` → 2 (CUB), ``class_00077/...`` → 77; -1 when there is no number."""
    head = key.split("/")[0]
    digits = head.split(".")[0].removeprefix("class_")
    return int(digits) if digits.isdigit() else -1


def _load_birds(folder: str, metadata_dir: str | None) -> DatasetIndex:
    lists = _split_lists(folder, metadata_dir)
    # AttnGAN's birds.zip ships text/ (from text.zip); the original caption archive calls it text_c10/.
    text_folder = next(
        (os.path.join(folder, name) for name in ("text", "text_c10") if os.path.isdir(os.path.join(folder, name))),
        None,
    )
    cub_folder = os.path.join(folder, "CUB_200_2011")
    expected = ["train/filenames.pickle", "test/filenames.pickle", "text/<class>/<name>.txt",
                "CUB_200_2011/images.txt", "CUB_200_2011/bounding_boxes.txt", "CUB_200_2011/images/"]
    if lists is None or text_folder is None:
        hint = ""
        if text_folder is None and os.path.isfile(os.path.join(folder, "text.zip")):
            hint = " Unzip text.zip into the same folder first."
        if lists is None and metadata_dir is None:
            hint += " The split lists may also come from --metadata_dir (the AttnGAN birds.zip metadata)."
        raise _layout_error("birds", folder, expected, hint)
    if not os.path.isdir(cub_folder):
        raise FileNotFoundError(
            f"{folder} has the AttnGAN metadata but no CUB_200_2011/ folder. "
            f"{_DOWNLOAD_HINTS['birds'].replace('<folder>', folder)}."
        )
    for name in ("images.txt", "bounding_boxes.txt"):
        if not os.path.isfile(os.path.join(cub_folder, name)):
            raise _layout_error("birds", cub_folder, ["images.txt", "bounding_boxes.txt", "images/"],
                                " Re-extract CUB_200_2011.tgz; the metadata files are part of it.")
    bboxes = _cub_bboxes(cub_folder)

    splits = {}
    no_bbox = 0
    for split, list_path in lists.items():
        names = _load_name_list(list_path)
        class_ids = _class_info(list_path, len(names))
        candidates = []
        for position, name in enumerate(names):
            key = name.removesuffix(".jpg")
            bbox = bboxes.get(key)
            no_bbox += bbox is None
            candidates.append(Candidate(
                key=key,
                image_path=os.path.join(cub_folder, "images", key + ".jpg"),
                caption_path=os.path.join(text_folder, key + ".txt"),
                class_id=class_ids[position] if class_ids is not None else _class_from_key(key),
                bbox=bbox,
            ))
        splits[split] = assemble_split("birds", split, candidates, list_source=list_path,
                                       download_hint=_DOWNLOAD_HINTS["birds"].replace("<folder>", folder))
    if no_bbox:
        logging.warning("birds: %d listed images have no entry in bounding_boxes.txt; they are used uncropped.",
                        no_bbox)

    meta = {
        "layout": "attngan-birds",
        "listed": {split: len(_load_name_list(path)) for split, path in lists.items()},
        "split_lists_from": "data_dir" if lists["train"].startswith(folder + os.sep) else "metadata_dir",
        "no_bbox": no_bbox,
    }
    vocabulary = _official_vocabulary(folder, metadata_dir, meta)
    return _finish("birds", folder, splits, meta, vocabulary_words=vocabulary, crop_to_bbox=True)


# ----------------------------------------------------------------------------- flowers (Oxford-102)
def _flowers_caption_index(text_folder: str) -> dict[str, tuple[str, int]]:
    """``image_00001`` → (caption file, class id from ``class_00077``)."""
    index = {}
    for class_name in sorted(os.listdir(text_folder)):
        class_folder = os.path.join(text_folder, class_name)
        if not os.path.isdir(class_folder):
            continue
        class_id = _class_from_key(class_name)
        for file_name in os.listdir(class_folder):
            if file_name.endswith(".txt"):
                index[file_name[:-4]] = (os.path.join(class_folder, file_name), class_id)
    return index


def _flowers_class_split(folder: str, caption_index: dict[str, tuple[str, int]]) -> dict[str, list[str]] | None:
    """The class-disjoint split of the ``flowers_icml`` files trainvalclasses.txt / testclasses.txt."""
    paths = {"train": os.path.join(folder, "trainvalclasses.txt"), "test": os.path.join(folder, "testclasses.txt")}
    if not all(os.path.isfile(path) for path in paths.values()):
        return None
    names = {}
    for split, path in paths.items():
        classes = {_class_from_key(line) for line in read_text_lines(path)}
        names[split] = sorted(stem for stem, (_, class_id) in caption_index.items() if class_id in classes)
    return names


def _load_flowers(folder: str, metadata_dir: str | None) -> DatasetIndex:
    text_folder = os.path.join(folder, "text_c10")
    image_folder = os.path.join(folder, "jpg")
    expected = ["jpg/image_NNNNN.jpg", "text_c10/class_NNNNN/image_NNNNN.txt",
                "train/filenames.pickle + test/filenames.pickle (or trainvalclasses.txt + testclasses.txt)"]
    if not os.path.isdir(text_folder):
        raise _layout_error("flowers", folder, expected)
    caption_index = _flowers_caption_index(text_folder)
    lists = _split_lists(folder, metadata_dir)
    if lists is not None:
        names = {split: _load_name_list(path) for split, path in lists.items()}
        sources = dict(lists)
        split_rule = "filenames.pickle"
    else:
        names = _flowers_class_split(folder, caption_index)
        if names is None:
            raise _layout_error("flowers", folder, expected)
        sources = {"train": os.path.join(folder, "trainvalclasses.txt"),
                   "test": os.path.join(folder, "testclasses.txt")}
        split_rule = "trainvalclasses.txt/testclasses.txt"

    splits = {}
    for split, split_names in names.items():
        class_ids = _class_info(sources[split], len(split_names)) if lists is not None else None
        candidates = []
        for position, name in enumerate(split_names):
            # Lists spell names as 'jpg/image_06734', 'image_06734' or 'class_00077/image_06734'.
            stem = os.path.splitext(os.path.basename(name))[0]
            caption_path, folder_class = caption_index.get(stem, (os.path.join(text_folder, "?", stem + ".txt"), -1))
            candidates.append(Candidate(
                key=stem,
                image_path=os.path.join(image_folder, stem + ".jpg"),
                caption_path=caption_path,
                class_id=class_ids[position] if class_ids is not None else folder_class,
            ))
        splits[split] = assemble_split("flowers", split, candidates, list_source=sources[split],
                                       download_hint=_DOWNLOAD_HINTS["flowers"].replace("<folder>", folder))
    meta = {"layout": "stackgan-flowers", "split_rule": split_rule,
            "listed": {split: len(split_names) for split, split_names in names.items()}}
    vocabulary = _official_vocabulary(folder, metadata_dir, meta)
    return _finish("flowers", folder, splits, meta, vocabulary_words=vocabulary)


# ----------------------------------------------------------------------------- coco
_COCO_JSON_SETS = (
    # (train json, train images, test json, test images)
    ("captions_train2014.json", "train2014", "captions_val2014.json", "val2014"),
    ("captions_train2017.json", "train2017", "captions_val2017.json", "val2017"),
)


def _read_coco_json(path: str, image_folder: str) -> list[Candidate]:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        images = {image["id"]: image["file_name"] for image in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is not a COCO captions file ({type(error).__name__}: {error}); re-download it."
        ) from None
    captions: dict[int, list[str]] = {image_id: [] for image_id in images}
    for annotation in annotations:
        if annotation.get("image_id") in captions:
            captions[annotation["image_id"]].append(str(annotation.get("caption", "")))
    return [
        Candidate(
            key=os.path.splitext(images[image_id])[0],
            image_path=os.path.join(image_folder, images[image_id]),
            captions=captions[image_id],
        )
        for image_id in sorted(images)
    ]


def _load_coco_json(folder: str, train_json: str, train_images: str, test_json: str, test_images: str) -> DatasetIndex:
    annotations = os.path.join(folder, "annotations")

    def image_folder(name: str) -> str:
        # Some copies keep all images in one images/ folder.
        preferred = os.path.join(folder, name)
        fallback = os.path.join(folder, "images")
        return fallback if not os.path.isdir(preferred) and os.path.isdir(fallback) else preferred

    train_path = os.path.join(annotations, train_json)
    test_path = os.path.join(annotations, test_json)
    candidates = {"train": _read_coco_json(train_path, image_folder(train_images))}
    sources = {"train": train_path}
    if os.path.isfile(test_path):
        candidates["test"] = _read_coco_json(test_path, image_folder(test_images))
        sources["test"] = test_path
        split_rule = f"{train_json} = train, {test_json} = test"
    else:
        # Deterministic: the last 10 % of the image ids (sorted numerically) are the test split.
        everything = candidates["train"]
        test_count = max(1, int(len(everything) * COCO_TEST_FRACTION)) if len(everything) > 1 else 0
        first_test = len(everything) - test_count
        candidates = {"train": everything[:first_test], "test": everything[first_test:]}
        sources["test"] = f"{train_path} (last {COCO_TEST_FRACTION:.0%} of sorted image ids)"
        split_rule = f"{train_json} only: the last {COCO_TEST_FRACTION:.0%} of the sorted image ids are the test split"
        logging.info("coco: no %s; using %s.", test_json, split_rule)
    splits = {
        split: assemble_split("coco", split, split_candidates, list_source=sources[split],
                              download_hint=_DOWNLOAD_HINTS["coco"].replace("<folder>", folder))
        for split, split_candidates in candidates.items()
    }
    meta = {"layout": "coco-captions-json", "split_rule": split_rule,
            "listed": {split: len(split_candidates) for split, split_candidates in candidates.items()}}
    return _finish("coco", folder, splits, meta)


def _load_coco(folder: str, metadata_dir: str | None) -> DatasetIndex:
    lists = _split_lists(folder, metadata_dir)
    has_attngan_files = os.path.isdir(os.path.join(folder, "text")) and os.path.isdir(os.path.join(folder, "images"))
    if lists is not None and has_attngan_files:
        splits = {}
        for split, list_path in lists.items():
            candidates = [
                Candidate(key=name, image_path=os.path.join(folder, "images", name + ".jpg"),
                          caption_path=os.path.join(folder, "text", name + ".txt"))
                for name in (n.removesuffix(".jpg") for n in _load_name_list(list_path))
            ]
            splits[split] = assemble_split("coco", split, candidates, list_source=list_path,
                                           download_hint=_DOWNLOAD_HINTS["coco"].replace("<folder>", folder))
        meta = {"layout": "attngan-coco",
                "listed": {split: len(_load_name_list(path)) for split, path in lists.items()}}
        vocabulary = _official_vocabulary(folder, metadata_dir, meta)
        return _finish("coco", folder, splits, meta, vocabulary_words=vocabulary)
    for train_json, train_images, test_json, test_images in _COCO_JSON_SETS:
        if os.path.isfile(os.path.join(folder, "annotations", train_json)):
            index = _load_coco_json(folder, train_json, train_images, test_json, test_images)
            index.vocabulary_words = _official_vocabulary(folder, metadata_dir, index.meta)
            return index
    raise _layout_error(
        "coco", folder,
        ["either images/ + text/ + train|test/filenames.pickle (AttnGAN)",
         "or annotations/captions_train2014.json (+ captions_val2014.json) with train2014/ (+ val2014/)",
         "or annotations/captions_train2017.json with train2017/"],
    )


# ----------------------------------------------------------------------------- entry point
_LOADERS: dict[str, Callable[[str, str | None], DatasetIndex]] = {
    "birds": _load_birds,
    "flowers": _load_flowers,
    "coco": _load_coco,
}


def _resolve_folder(dataset: str, data_dir: str | None, data_root: str) -> str:
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"The {dataset} folder {os.path.abspath(data_dir)} does not exist. "
                                    f"{_DOWNLOAD_HINTS[dataset].replace('<folder>', data_dir)}.")
        return os.path.abspath(data_dir)
    searched = [os.path.join(data_root, dataset)]
    if dataset in _SHARED_SAMPLES:
        if os.environ.get(SHARED_DATA_ENV):
            searched.append(os.path.join(os.environ[SHARED_DATA_ENV], _SHARED_SAMPLES[dataset]))
        searched.append(os.path.join("..", "shared", "data", _SHARED_SAMPLES[dataset]))
    for candidate in searched:
        if os.path.isdir(candidate):
            logging.info("Using %s data from %s.", dataset, os.path.abspath(candidate))
            return os.path.abspath(candidate)
    raise FileNotFoundError(
        f"No {dataset} data found; searched (relative to {os.getcwd()}): "
        + ", ".join(searched)
        + f". Pass data_dir (--data_dir) or put the data at {searched[0]}. "
        + _DOWNLOAD_HINTS[dataset].replace("<folder>", searched[0])
        + "."
    )


def load_dataset(
    dataset: str,
    *,
    data_dir: str | None = None,
    data_root: str = "data",
    metadata_dir: str | None = None,
    **shapes_options: Any,
) -> DatasetIndex:
    """Load a data set by name (see :data:`DATASET_NAMES`) or a folder in the custom layout.

    Args:
        dataset: ``shapes``, ``shapes-pairs``, ``birds``, ``flowers``, ``coco``,
            or the path of a folder in the custom layout.
        data_dir: the data set folder. When None: ``<data_root>/<dataset>``,
            then (birds, coco) ``$T2IGAN_SHARED_DATA/<name>-mini`` when that
            variable is set, then ``../shared/data/<name>-mini`` relative to the
            working directory. For shapes: an already generated folder.
        data_root: where named data sets live and where shapes are generated.
        metadata_dir: a folder with AttnGAN metadata (``captions.pickle``,
            ``train|test/filenames.pickle``, ``class_info.pickle``) used where
            the data folder has none (birds, flowers, coco) — e.g.
            ``../shared/data/birds-metadata`` for the official 5,450-word
            birds vocabulary.
        **shapes_options: ``image_size``, ``num_train``, ``num_test``, ``seed``,
            ``compositional_split`` for ``shapes.ensure`` (shapes only).
    """
    if dataset in ("shapes", "shapes-pairs"):
        from t2igan.data import shapes  # imported lazily: generation code is only needed here

        if data_dir is not None:
            if shapes_options:
                raise ValueError(f"Options {sorted(shapes_options)} choose a shapes data set to generate; "
                                 f"they cannot be combined with data_dir={data_dir!r} (an existing folder).")
            return shapes.load(data_dir)
        return shapes.load(shapes.ensure(data_root, name=dataset, **shapes_options))
    if shapes_options:
        raise ValueError(f"Options {sorted(shapes_options)} only apply to the shapes data sets, not to {dataset!r}.")
    if metadata_dir is not None and not os.path.isdir(metadata_dir):
        raise FileNotFoundError(f"metadata_dir {os.path.abspath(metadata_dir)} does not exist; unzip the AttnGAN "
                                "metadata there or leave it out; see datasets/README.md.")
    if dataset in _LOADERS:
        folder = _resolve_folder(dataset, data_dir, data_root)
        metadata = os.path.abspath(metadata_dir) if metadata_dir is not None else None
        return _LOADERS[dataset](folder, metadata)
    if os.path.isdir(dataset):
        return load_custom(dataset)
    raise ValueError(
        f"Unknown data set {dataset!r}: expected one of {', '.join(DATASET_NAMES)}, or the path of an existing "
        "folder in the custom layout (images/, captions/, train.txt, test.txt; see datasets/README.md)."
    )
