"""The one in-memory description of a data set that every loader returns.

Every data set — the built-in ``shapes``, CUB birds, Oxford flowers, COCO, or a
user's folder in the custom layout — is read into a :class:`DatasetIndex`: a
list of :class:`Example` per split plus what the loader noticed on the way
(missing images, an official vocabulary). The ``tf.data`` pipelines, the
vocabulary builder and the evaluation code only ever see this structure, so a
new data set needs a loader and nothing else.

The custom layout (documented for users in ``datasets/README.md``)::

    <root>/
      images/<key>.<png|jpg|jpeg>   one image per example; <key> may contain '/'
      captions/<key>.txt            UTF-8, one caption per non-empty line
      train.txt, test.txt           one <key> per line (the split lists)
      classes.txt                   optional: "<key> <class_id>" per line
      attributes.jsonl              optional: one JSON object per line,
                                    {"key": ..., "image": {...}, "captions": [{...}, ...]}
                                    ("image" = the true attributes of the image,
                                     "captions"[i] = the attributes caption i states)
      dataset.json                  optional: {"name": ..., anything descriptive}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any


@dataclasses.dataclass
class Example:
    """One image and its captions."""

    key: str
    """Unique within the data set, e.g. ``002.Laysan_Albatross/Laysan_Albatross_0002_1027``."""
    image_path: str
    """Absolute or root-relative path of the image file."""
    captions: list[str]
    """Raw caption text, in file order (not tokenised)."""
    class_id: int = -1
    """Class label (CUB species, a shapes attribute combination); -1 when unknown."""
    bbox: tuple[int, int, int, int] | None = None
    """``(x, y, width, height)`` in pixels of the original image, for the CUB crop."""
    image_attributes: dict[str, Any] | None = None
    """True attributes of the image (``shapes`` only)."""
    caption_attributes: list[dict[str, Any]] | None = None
    """Attributes each caption states, aligned with :attr:`captions` (``shapes`` only)."""


@dataclasses.dataclass
class DatasetIndex:
    """Both splits of a data set plus what loading it found."""

    name: str
    root: str
    train: list[Example]
    test: list[Example]
    missing: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per split: how many listed images were not found (and were skipped)."""
    vocabulary_words: list[str] | None = None
    """An official vocabulary (index order, index 0 = padding) when the layout ships one."""
    crop_to_bbox: bool = False
    """Whether images are cropped around :attr:`Example.bbox` before resizing (CUB)."""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "test"):
            raise ValueError(f"Unknown split {name!r}; expected 'train' or 'test'.")
        return self.train if name == "train" else self.test


def caption_fingerprint(index: DatasetIndex) -> str:
    """Identifies the captions a pretrained text encoder and its stored embeddings belong to (a regenerated
    data set differs)."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for example in index.split(split):
            digest.update(example.key.encode() + b"\0" + "\n".join(example.captions).encode() + b"\1")
    return digest.hexdigest()[:16]


def check_fingerprint(folder: str, index: DatasetIndex) -> None:
    """Refuse a pretrained encoder folder (its ``complete.json``) made from other captions than ``index``'s."""
    from t2igan.errors import UserError

    with open(os.path.join(folder, "complete.json"), encoding="utf-8") as file:
        stored = json.load(file).get("data_fingerprint")
    if stored is None:
        logging.getLogger("absl").warning("%s records no data fingerprint; cannot check that it matches the data set.", folder)
    elif stored != caption_fingerprint(index):
        raise UserError(f"The data set's captions changed since the text encoder in {folder} was trained, "
                        "so its stored caption embeddings no longer match. Use a new RUN_DIR (or delete that "
                        "text_encoder folder and the checkpoints to start over).")
