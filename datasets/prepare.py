"""Check, convert and checksum data sets (see datasets/README.md).

    python datasets/prepare.py check --dataset=birds --data_dir=data/birds [--metadata_dir=...] [--verify_images]
    python datasets/prepare.py convert --dataset=coco --data_dir=data/coco --out_dir=data/coco-custom
    python datasets/prepare.py checksum --path=downloads/CUB_200_2011.tgz

``check`` loads the data set exactly as training does and prints the counts,
missing images, vocabulary size and caption statistics. ``convert`` writes
any loadable data set in the custom layout. ``checksum`` prints SHA-256 and
MD5 of a file, or of every file under a folder, for recording in the README.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys

from absl import app, flags, logging

try:
    import t2igan  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from t2igan.data.custom import write_custom_layout  # noqa: E402
from t2igan.data.images import read_image  # noqa: E402
from t2igan.data.loaders import load_dataset  # noqa: E402
from t2igan.data.records import DatasetIndex  # noqa: E402

COMMANDS = ("check", "convert", "checksum")

FLAGS = flags.FLAGS


def _define_string(name, default, help_text):
    # The training command line (t2igan.cli) defines the same data flags with the same meaning;
    # a process that imports both (the test suite) must not define them twice.
    if name not in FLAGS:
        flags.DEFINE_string(name, default, help_text)


_define_string("dataset", None, "Data set name (birds, flowers, coco, shapes, shapes-pairs) or a custom-layout folder.")
_define_string("data_dir", None, "The data set folder; default: searched as load_dataset does.")
_define_string("data_root", "data", "Where named data sets live (and shapes are generated).")
_define_string("metadata_dir", None, "Folder with AttnGAN metadata (captions.pickle, */filenames.pickle).")
flags.DEFINE_string("out_dir", None, "convert: the folder to write in the custom layout.")
flags.DEFINE_bool("copy_images", True, "convert: copy images (true) or symlink them (false).")
flags.DEFINE_bool("overwrite", False, "convert: allow writing into a non-empty out_dir.")
flags.DEFINE_bool("verify_images", False, "check: decode every image to find corrupt files (slow).")
flags.DEFINE_string("path", None, "checksum: a file or a folder.")
if "traceback" not in FLAGS:
    flags.DEFINE_bool("traceback", False, "Show the Python traceback of a user error.")

# AttnGAN's birds words_num: how many captions a head-truncation rule would shorten.
_WORDS_NUM = 18


def caption_statistics(index: DatasetIndex) -> dict[str, float]:
    """Captions per image and tokens per caption (AttnGAN tokenisation)."""
    from t2igan.text import tokenize

    examples = index.train + index.test
    per_image = [len(example.captions) for example in examples]
    lengths = [len(tokenize(caption)) for example in examples for caption in example.captions]
    return {
        "captions": len(lengths),
        "captions_per_image_min": min(per_image),
        "captions_per_image_mean": statistics.fmean(per_image),
        "captions_per_image_max": max(per_image),
        "tokens_mean": statistics.fmean(lengths),
        "tokens_max": max(lengths),
        f"longer_than_{_WORDS_NUM}_tokens": sum(length > _WORDS_NUM for length in lengths) / len(lengths),
    }


def vocabulary_size(index: DatasetIndex) -> tuple[int, str]:
    if index.vocabulary_words is not None:
        return len(index.vocabulary_words), "official (from the data set's metadata)"
    from t2igan.text import Vocabulary

    words = Vocabulary.from_captions(c for e in index.train + index.test for c in e.captions)
    return len(words), "built from these captions (word ids will not match released encoders)"


def summary(index: DatasetIndex) -> str:
    lines = [f"data set: {index.name}", f"folder:   {index.root}"]
    listed = index.meta.get("listed", {})
    for split in ("train", "test"):
        count = len(index.split(split))
        missing = index.missing.get(split, 0)
        no_captions = index.meta.get("no_captions", {}).get(split, 0)
        lines.append(f"{split:5s}: {count} images used, {listed.get(split, count + missing)} listed, "
                     f"{missing} missing, {no_captions} without captions")
    classes = {example.class_id for example in index.train + index.test} - {-1}
    lines.append(f"classes: {len(classes)}" + (f" (ids {min(classes)}..{max(classes)})" if classes else ""))
    size, source = vocabulary_size(index)
    lines.append(f"vocabulary: {size} words, {source}")
    for name, value in caption_statistics(index).items():
        lines.append(f"  {name}: {value:.3f}" if isinstance(value, float) else f"  {name}: {value}")
    if index.meta.get("repaired_caption_files"):
        lines.append(f"caption files with the U+FFFD pair replaced by a space: {index.meta['repaired_caption_files']}")
    if "split_rule" in index.meta:
        lines.append(f"split: {index.meta['split_rule']}")
    lines.append(f"bbox crop: {'yes' if index.crop_to_bbox else 'no'}")
    return "\n".join(lines)


def corrupt_images(index: DatasetIndex) -> list[str]:
    bad = []
    for example in index.train + index.test:
        try:
            read_image(example.image_path)
        except ValueError as error:
            bad.append(str(error))
    return bad


def file_checksums(path: str) -> list[tuple[str, str, str]]:
    """(relative name, sha256, md5) for a file, or every file under a folder (sorted)."""
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    elif os.path.isdir(path):
        files = sorted(
            (os.path.relpath(os.path.join(folder, name), path), os.path.join(folder, name))
            for folder, _, names in os.walk(path) for name in names
        )
    else:
        raise FileNotFoundError(f"Nothing to checksum at {path}; pass --path=<file or folder>.")
    result = []
    for name, full_path in files:
        sha256, md5 = hashlib.sha256(), hashlib.md5()
        with open(full_path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                sha256.update(block)
                md5.update(block)
        result.append((name, sha256.hexdigest(), md5.hexdigest()))
    return result


def _load_from_flags() -> DatasetIndex:
    if not FLAGS.dataset:
        raise app.UsageError("--dataset is required (e.g. --dataset=birds).")
    return load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir, data_root=FLAGS.data_root,
                        metadata_dir=FLAGS.metadata_dir)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"Give one command: {', '.join(COMMANDS)}.")
    command = argv[1]
    if command == "check":
        index = _load_from_flags()
        print(summary(index))
        if FLAGS.verify_images:
            bad = corrupt_images(index)
            print(f"corrupt images: {len(bad)}")
            for message in bad:
                print("  " + message)
    elif command == "convert":
        if not FLAGS.out_dir:
            raise app.UsageError("--out_dir is required for convert.")
        index = _load_from_flags()
        out_dir = write_custom_layout(index, FLAGS.out_dir, copy_images=FLAGS.copy_images, overwrite=FLAGS.overwrite)
        print(f"Wrote {len(index.train)} train + {len(index.test)} test examples to {out_dir}")
        print(f"Load it with: load_dataset({out_dir!r}) or --dataset={out_dir}")
    else:
        if not FLAGS.path:
            raise app.UsageError("--path is required for checksum.")
        print(f"{'sha256':64s}  {'md5':32s}  file")
        for name, sha256, md5 in file_checksums(FLAGS.path):
            print(f"{sha256}  {md5}  {name}")


def main_with_messages(argv: list[str]) -> None:
    """A bad layout, a missing folder or a corrupt metadata file is the user's to fix: one sentence, exit 2."""
    import pickle

    try:
        main(argv)
    except (ValueError, FileNotFoundError, pickle.UnpicklingError) as error:
        if FLAGS.traceback:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main_with_messages)
