"""From listed files to examples: what every loader of a real data set shares (``loaders``, ``custom``).

A loader lists :class:`Candidate` s (a key, an image path, a caption file or captions); :func:`assemble_split`
checks the files, reads the captions and reports what is missing.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import logging

from t2igan.data.records import Example

_MANGLED_SEPARATOR = "\ufffd\ufffd"


def read_text_lines(path: str) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file (a leading BOM is dropped)."""
    with open(path, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not valid UTF-8 (byte {error.start}: {raw[error.start:error.start + 4]!r}); "
            "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    text = text.removeprefix("\ufeff")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclasses.dataclass
class Candidate:
    """A listed example before its files are checked."""

    key: str
    image_path: str
    caption_path: str | None = None
    captions: list[str] | None = None  # given directly (COCO JSON) instead of a file
    class_id: int = -1
    bbox: tuple[int, int, int, int] | None = None
    image_attributes: dict[str, Any] | None = None
    caption_attributes: list[dict[str, Any]] | None = None


def read_captions(path: str) -> tuple[list[str], bool]:
    """Captions of one file and whether a mangled U+FFFD pair was repaired."""
    lines = read_text_lines(path)
    repaired = any(_MANGLED_SEPARATOR in line for line in lines)
    if repaired:
        lines = [line.replace(_MANGLED_SEPARATOR, " ").strip() for line in lines]
        lines = [line for line in lines if line]
    return lines, repaired


def assemble_split(
    dataset: str, split: str, candidates: list[Candidate], *, list_source: str, download_hint: str
) -> tuple[list[Example], int, int, int]:
    """Check files, read captions; returns (examples, missing images, without captions, repaired files)."""
    if not candidates:
        raise ValueError(f"The {split} split of {dataset} lists no images ({list_source}); the list is empty.")
    examples: list[Example] = []
    missing: list[str] = []
    without_captions: list[str] = []
    repaired = 0
    for candidate in candidates:
        if not os.path.isfile(candidate.image_path):
            missing.append(candidate.image_path)
            continue
        if candidate.captions is not None:
            captions = [" ".join(caption.split()) for caption in candidate.captions]
            captions = [caption for caption in captions if caption]
        elif candidate.caption_path is not None and os.path.isfile(candidate.caption_path):
            captions, was_repaired = read_captions(candidate.caption_path)
            repaired += was_repaired
        else:
            captions = []
        if not captions:
            without_captions.append(candidate.caption_path or candidate.key)
            continue
        examples.append(
            Example(
                key=candidate.key,
                image_path=os.path.abspath(candidate.image_path),
                captions=captions,
                class_id=candidate.class_id,
                bbox=candidate.bbox,
                image_attributes=candidate.image_attributes,
                caption_attributes=candidate.caption_attributes,
            )
        )
    if len(missing) == len(candidates):
        raise FileNotFoundError(
            f"None of the {len(candidates)} {split} images listed for {dataset} ({list_source}) exist, "
            f"e.g. {missing[0]}. {download_hint}."
        )
    if missing:
        logging.warning(
            "%s %s split: %d of %d listed images are missing and skipped (e.g. %s).",
            dataset, split, len(missing), len(candidates), missing[0],
        )
    if without_captions:
        logging.warning(
            "%s %s split: %d images have no caption file or only empty lines and are skipped (e.g. %s).",
            dataset, split, len(without_captions), without_captions[0],
        )
    if not examples:
        raise ValueError(
            f"No {split} image of {dataset} has captions (e.g. {without_captions[0]} is missing or empty); "
            "check that the caption files were extracted; see datasets/README.md."
        )
    return examples, len(missing), len(without_captions), repaired
