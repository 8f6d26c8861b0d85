"""Reading and writing the custom layout (documented in :mod:`t2igan.data.records`).

The custom layout is the project's exchange format: any data set the loaders
can read (COCO captions JSON, CUB, flowers) can be converted to it with
:func:`write_custom_layout`, and a user's own images and captions only need to
be arranged in it to be trained on. ``datasets/prepare.py convert`` wraps the
writer.

Two optional keys of ``dataset.json`` are read back, beyond ``name``:

* ``vocabulary_words`` — an official vocabulary (index order, index 0 =
  ``<end>``), so a converted CUB keeps the word ids of the released encoders.
* ``crop_to_bbox`` is never set on reading: the writer applies the CUB crop to
  the images it writes (``"bbox_cropped": true`` records that).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from absl import logging
from PIL import Image

from t2igan.data.records import DatasetIndex, Example
from t2igan.data.splits import Candidate, assemble_split, read_text_lines

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_REQUIRED_ENTRIES = ("images/", "captions/", "train.txt", "test.txt")


def check_key(key: str, source: str) -> str:
    """A key becomes a relative path: refuse anything that could escape the folder."""
    parts = key.replace("\\", "/").split("/")
    if not key or key != key.strip() or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"{source}: invalid example key {key!r}; a key is a relative path such as 'class_1/image_7' "
            "without '..', empty parts, backslashes or surrounding spaces."
        )
    return key


def refuse_repeats(keys: list[str], source: str, what: str = "lists") -> None:
    """A key listed twice would count one image twice (or give it two classes): refuse it, naming the file."""
    seen: set[str] = set()
    repeated = list(dict.fromkeys(key for key in keys if key in seen or seen.add(key)))  # in file order
    if repeated:
        shown = ", ".join(repr(key) for key in repeated[:5]) + (", …" if len(repeated) > 5 else "")
        raise ValueError(f"{source} {what} {len(repeated)} key(s) more than once ({shown}): keep one line per "
                         "key and remove the repeats.")


def refuse_overlap(train: list[str], test: list[str], root: str) -> None:
    """An image in both splits makes every test figure (FID, R-precision, oracle accuracy) a training figure."""
    shared = sorted(set(train) & set(test))
    if shared:
        shown = ", ".join(repr(key) for key in shared[:5]) + (", …" if len(shared) > 5 else "")
        raise ValueError(f"{len(shared)} key(s) are in both {os.path.join(root, 'train.txt')} and test.txt ({shown}): "
                         "the test split must hold images the model never trains on; remove them from one of the two.")


def describe_folder(folder: str, limit: int = 25) -> str:
    """The entries of ``folder`` for an error message ("a/, b.txt, ...")."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty folder)"
    shown = [name + ("/" if os.path.isdir(os.path.join(folder, name)) else "") for name in names[:limit]]
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(shown) + more


def find_custom_image(root: str, key: str) -> str | None:
    for extension in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        path = os.path.join(root, "images", key + extension)
        if os.path.isfile(path):
            return path
    return None


def is_custom_layout(folder: str) -> bool:
    def present(entry: str) -> bool:
        path = os.path.join(folder, entry.rstrip("/"))
        return os.path.isdir(path) if entry.endswith("/") else os.path.isfile(path)

    return all(present(entry) for entry in _REQUIRED_ENTRIES)


def load_custom(folder: str) -> DatasetIndex:
    """Read a folder in the custom layout into a :class:`DatasetIndex`.

    Listed keys whose image is absent are counted in ``missing`` and skipped;
    images without a caption file (or with only empty lines) are skipped with a
    warning and counted in ``meta["no_captions"]``.
    """
    # Imported here: loaders imports this module.

    root = os.path.abspath(folder)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Custom data set folder not found: {root}")
    if not is_custom_layout(root):
        raise ValueError(
            f"{root} is not in the custom layout: expected {', '.join(_REQUIRED_ENTRIES)} "
            f"(optional classes.txt, attributes.jsonl, dataset.json); found {describe_folder(root)}. "
            "See datasets/README.md."
        )

    info: dict[str, Any] = {}
    info_path = os.path.join(root, "dataset.json")
    if os.path.isfile(info_path):
        try:
            with open(info_path, encoding="utf-8") as file:
                info = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{info_path} is not valid UTF-8 JSON ({error}); fix or delete it.") from None
        if not isinstance(info, dict):
            raise ValueError(f"{info_path} must hold a JSON object, e.g. {{\"name\": \"my-data\"}}.")

    class_ids: dict[str, int] = {}
    classes_path = os.path.join(root, "classes.txt")
    if os.path.isfile(classes_path):
        lines = read_text_lines(classes_path)
        for number, line in enumerate(lines, start=1):
            parts = line.rsplit(None, 1)
            try:
                class_ids[parts[0]] = int(parts[1])
            except (IndexError, ValueError):
                raise ValueError(f"{classes_path} line {number}: expected '<key> <class_id>', got {line!r}.") from None
        refuse_repeats([line.rsplit(None, 1)[0] for line in lines], classes_path, "gives a class to")

    attributes: dict[str, dict[str, Any]] = {}
    attributes_path = os.path.join(root, "attributes.jsonl")
    if os.path.isfile(attributes_path):
        for number, line in enumerate(read_text_lines(attributes_path), start=1):
            try:
                record = json.loads(line)
                if record["key"] in attributes:
                    raise ValueError(f"{attributes_path} describes the key {record['key']!r} more than once: keep "
                                     "one line per key and remove the repeats.")
                attributes[record["key"]] = record
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{attributes_path} line {number}: expected a JSON object with a \"key\" ({error})."
                ) from None

    name = str(info.get("name") or os.path.basename(root))
    splits: dict[str, list[Example]] = {}
    missing: dict[str, int] = {}
    no_captions: dict[str, int] = {}
    listed = {split: read_text_lines(os.path.join(root, f"{split}.txt")) for split in ("train", "test")}
    for split, keys in listed.items():
        refuse_repeats(keys, os.path.join(root, f"{split}.txt"))
    refuse_overlap(listed["train"], listed["test"], root)
    for split in ("train", "test"):
        list_path = os.path.join(root, f"{split}.txt")
        candidates = []
        for key in listed[split]:
            check_key(key, list_path)
            record = attributes.get(key, {})
            candidates.append(
                Candidate(
                    key=key,
                    image_path=find_custom_image(root, key) or os.path.join(root, "images", key + ".png"),
                    caption_path=os.path.join(root, "captions", key + ".txt"),
                    class_id=class_ids.get(key, -1),
                    image_attributes=record.get("image"),
                    caption_attributes=record.get("captions"),
                )
            )
        splits[split], missing[split], no_captions[split], _ = assemble_split(
            name, split, candidates, list_source=list_path,
            download_hint=f"Put the images under {os.path.join(root, 'images')} as <key>.png/.jpg, "
            "or remove the keys from the split list",
        )

    vocabulary = info.get("vocabulary_words")
    if vocabulary is not None and not (isinstance(vocabulary, list) and all(isinstance(w, str) for w in vocabulary)):
        raise ValueError(f"{info_path}: \"vocabulary_words\" must be a list of strings (index order).")
    return DatasetIndex(
        name=name,
        root=root,
        train=splits["train"],
        test=splits["test"],
        missing=missing,
        vocabulary_words=vocabulary,
        crop_to_bbox=False,
        meta={"layout": "custom", "no_captions": no_captions, "dataset_json": info},
    )


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return None


def write_custom_layout(
    index: DatasetIndex, out_dir: str | os.PathLike, copy_images: bool = True, *, overwrite: bool = False
) -> str:
    """Write ``index`` in the custom layout under ``out_dir`` and return its absolute path.

    Args:
        index: any loaded data set.
        out_dir: the folder to create; it must be absent or empty unless ``overwrite``.
        copy_images: copy image files (True) or make symbolic links to them
            (False, saves disk space; the links break if the source moves).
        overwrite: allow writing into a non-empty folder (existing files with
            the same names are replaced, others are left alone).

    When ``index.crop_to_bbox`` is set (CUB), each image is cropped with the
    official bbox crop and written as PNG, because the custom layout has no
    bounding boxes; ``dataset.json`` then records ``"bbox_cropped": true``.
    Images in other formats than PNG/JPEG are re-encoded as PNG.
    """
    from t2igan.data.images import cub_bbox_crop, read_image

    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ValueError(
            f"{out_dir} already exists and is not empty; choose a new folder or pass overwrite=True "
            "(--overwrite in datasets/prepare.py)."
        )
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "captions"), exist_ok=True)

    written: set[str] = set()
    cropped = 0
    for split in ("train", "test"):
        for example in index.split(split):
            check_key(example.key, f"data set {index.name!r}")
            if example.key in written:
                continue
            written.add(example.key)
            source = example.image_path
            if not os.path.isabs(source):
                source = os.path.join(index.root, source)
            extension = os.path.splitext(source)[1].lower()
            for old in IMAGE_EXTENSIONS:  # a stale image with another extension would shadow the new one
                stale = os.path.join(out_dir, "images", example.key + old)
                if os.path.lexists(stale):
                    os.remove(stale)
            if index.crop_to_bbox and example.bbox is not None:
                target = os.path.join(out_dir, "images", example.key + ".png")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                Image.fromarray(cub_bbox_crop(read_image(source), example.bbox)).save(target)
                cropped += 1
            elif extension not in IMAGE_EXTENSIONS:
                target = os.path.join(out_dir, "images", example.key + ".png")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                Image.fromarray(read_image(source)).save(target)
            else:
                target = os.path.join(out_dir, "images", example.key + extension)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if copy_images:
                    shutil.copyfile(source, target)
                else:
                    os.symlink(os.path.abspath(source), target)
            caption_path = os.path.join(out_dir, "captions", example.key + ".txt")
            os.makedirs(os.path.dirname(caption_path), exist_ok=True)
            # One caption per line: line breaks inside a caption would split it.
            lines = [" ".join(caption.split()) for caption in example.captions]
            with open(caption_path, "w", encoding="utf-8") as file:
                file.write("".join(line + "\n" for line in lines if line))

    for split in ("train", "test"):
        with open(os.path.join(out_dir, f"{split}.txt"), "w", encoding="utf-8") as file:
            file.write("".join(example.key + "\n" for example in index.split(split)))

    examples = index.train + index.test
    if any(example.class_id != -1 for example in examples):
        with open(os.path.join(out_dir, "classes.txt"), "w", encoding="utf-8") as file:
            seen: set[str] = set()
            for example in examples:
                if example.key not in seen:
                    seen.add(example.key)
                    file.write(f"{example.key} {example.class_id}\n")
    if any(example.image_attributes is not None or example.caption_attributes is not None for example in examples):
        with open(os.path.join(out_dir, "attributes.jsonl"), "w", encoding="utf-8") as file:
            seen = set()
            for example in examples:
                if example.key not in seen:
                    seen.add(example.key)
                    record = {"key": example.key, "image": example.image_attributes,
                              "captions": example.caption_attributes}
                    file.write(json.dumps(record) + "\n")

    info: dict[str, Any] = {
        "name": index.name,
        "converted_from": index.name,
        "bbox_cropped": cropped > 0,
        "counts": {"train": len(index.train), "test": len(index.test)},
        "missing_at_conversion": index.missing,
    }
    if index.vocabulary_words is not None:
        info["vocabulary_words"] = list(index.vocabulary_words)
    source_meta = _json_safe({k: v for k, v in index.meta.items() if k != "dataset_json"})
    if source_meta:
        info["source_meta"] = source_meta
    with open(os.path.join(out_dir, "dataset.json"), "w", encoding="utf-8") as file:
        json.dump(info, file, indent=1)
    logging.info("Wrote %d examples of %s in the custom layout to %s (%d bbox-cropped).",
                 len(written), index.name, out_dir, cropped)
    return out_dir
