"""Loaders, the restricted unpickler and image reading, on the real shared data.

The real data sits beside the repository (``../shared/data``) or where
``T2IGAN_SHARED_DATA`` points; tests that need it skip when it is absent.
Everything else runs on small files made in ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from t2igan.data import custom, images, loaders, safe_pickle
from t2igan.data.records import DatasetIndex, Example

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("T2IGAN_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


def shared(name: str) -> str:
    path = os.path.join(SHARED_DATA, name)
    if not os.path.isdir(path):
        pytest.skip(f"shared data {name!r} not found at {path}; set T2IGAN_SHARED_DATA to the folder that holds it")
    return path


@pytest.fixture(scope="module")
def birds_mini() -> DatasetIndex:
    return loaders.load_dataset("birds", data_dir=shared("birds-mini"))


@pytest.fixture(scope="module")
def birds_with_metadata() -> DatasetIndex:
    return loaders.load_dataset("birds", data_dir=shared("birds-mini"), metadata_dir=shared("birds-metadata"))


@pytest.fixture(scope="module")
def coco_mini() -> DatasetIndex:
    return loaders.load_dataset("coco", data_dir=shared("coco-mini"))


# ----------------------------------------------------------------------------- birds
def test_birds_mini_counts_missing_and_classes(birds_mini):
    assert (len(birds_mini.train), len(birds_mini.test)) == (215, 209)
    assert birds_mini.missing == {"train": 275 - 215, "test": 2933 - 209}
    assert birds_mini.meta["listed"] == {"train": 275, "test": 2933}
    assert birds_mini.crop_to_bbox
    assert birds_mini.vocabulary_words is None
    assert {e.class_id for e in birds_mini.train} == {2, 3, 5, 7}  # class-disjoint split
    assert {e.class_id for e in birds_mini.test} == {1, 4, 6, 8}
    for example in birds_mini.train + birds_mini.test:
        assert os.path.isabs(example.image_path) and os.path.isfile(example.image_path)
        assert len(example.captions) == 10
        assert example.bbox is not None and example.bbox[2] > 0 and example.bbox[3] > 0
        assert example.key.split("/")[0].startswith(f"{example.class_id:03d}.")


def test_birds_mini_mangled_separator_is_repaired(birds_mini):
    assert birds_mini.meta["repaired_caption_files"] == 3
    assert not any("\ufffd" in c for e in birds_mini.train + birds_mini.test for c in e.captions)


def test_birds_official_vocabulary_and_word_ids(birds_with_metadata):
    index = birds_with_metadata
    words = index.vocabulary_words
    assert len(words) == 5450 and words[0] == "<end>"
    # Our captions + the project tokenizer give the official token ids of captions.pickle.
    from t2igan.text import tokenize

    official = safe_pickle.load_pickle(os.path.join(shared("birds-metadata"), "captions.pickle"))
    word_ids = {word: i for i, word in enumerate(words)}
    for split, position in (("train", 0), ("test", 1)):
        names = safe_pickle.load_pickle(os.path.join(shared("birds-metadata"), split, "filenames.pickle"))
        row = {name: i for i, name in enumerate(names)}
        for example in index.split(split)[:20]:
            first = row[example.key] * 10
            ours = [[word_ids[w] for w in tokenize(c)] for c in example.captions]
            assert ours == official[position][first:first + 10], example.key


def test_every_birds_mini_caption_file_is_utf8():
    text_folder = os.path.join(shared("birds-mini"), "text")
    count = 0
    for folder, _, names in os.walk(text_folder):
        for name in names:
            with open(os.path.join(folder, name), "rb") as file:
                file.read().decode("utf-8")
            count += 1
    assert count == 424


# ----------------------------------------------------------------------------- coco
def test_coco_mini_from_captions_json(coco_mini):
    examples = coco_mini.train + coco_mini.test
    assert len(examples) == 80 and (len(coco_mini.train), len(coco_mini.test)) == (72, 8)
    assert coco_mini.missing == {"train": 0, "test": 0}
    assert all(len(e.captions) >= 5 and e.class_id == -1 and os.path.isfile(e.image_path) for e in examples)
    # Deterministic split: the test images have the largest ids.
    assert max(int(e.key) for e in coco_mini.train) < min(int(e.key) for e in coco_mini.test)


# ----------------------------------------------------------------------------- restricted unpickler
def test_safe_pickle_loads_the_official_pickles():
    birds = shared("birds-metadata")
    train_names = safe_pickle.load_pickle(os.path.join(birds, "train", "filenames.pickle"))
    train_classes = safe_pickle.load_pickle(os.path.join(birds, "train", "class_info.pickle"))  # numpy int64 scalars
    test_classes = safe_pickle.load_pickle(os.path.join(birds, "test", "class_info.pickle"))
    assert len(train_names) == 8855 and len(train_classes) == 8855 and len(test_classes) == 2933
    assert all(type(c) is int for c in train_classes) and len(set(train_classes)) == 150
    captions = safe_pickle.load_pickle(os.path.join(birds, "captions.pickle"))
    assert [len(part) for part in captions] == [88550, 29330, 5450, 5450]
    coco = shared("coco-metadata")
    assert len(safe_pickle.load_pickle(os.path.join(coco, "train", "filenames.pickle"))) == 82783
    assert len(safe_pickle.load_pickle(os.path.join(coco, "test", "filenames.pickle"))) == 40470


class _RunsACommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_safe_pickle_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps([1, _RunsACommand(f"touch {marker}")], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="system") as raised:
        safe_pickle.load_pickle(path)
    assert str(path) in str(raised.value)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(np.zeros(3)))  # arrays are not needed by any official file
    with pytest.raises(pickle.UnpicklingError, match="_reconstruct"):
        safe_pickle.load_pickle(path)


def test_safe_pickle_plain_values_and_truncation(tmp_path):
    path = tmp_path / "plain.pickle"
    value = [{"a": (1, 2.5, None, True)}, {b"x", "y"}, frozenset([3]), np.int64(7), np.float32(0.5)]
    path.write_bytes(pickle.dumps(value, protocol=2))
    assert safe_pickle.load_pickle(path) == [{"a": (1, 2.5, None, True)}, {b"x", "y"}, frozenset([3]), 7, 0.5]
    path.write_bytes(pickle.dumps(list(range(100)))[:20])
    with pytest.raises(pickle.UnpicklingError, match="plain.pickle"):
        safe_pickle.load_pickle(path)


# ----------------------------------------------------------------------------- images
def test_read_image_converts_modes_to_rgb(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(gray, "L").save(tmp_path / "gray.jpg", quality=100)
    rgb = images.read_image(tmp_path / "gray.jpg")
    assert rgb.shape == (12, 10, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    assert images.read_image(tmp_path / "cmyk.jpg").shape == (4, 5, 3)
    Image.new("RGBA", (3, 2), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    assert images.read_image(tmp_path / "clear.png").tolist() == [[[255, 255, 255]] * 3] * 2  # on white
    Image.new("P", (3, 3), 1).save(tmp_path / "palette.png")
    assert images.read_image(tmp_path / "palette.png").shape == (3, 3, 3)


def test_read_image_corrupt_and_truncated_files_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match="corrupt.jpg.*re-download"):
        images.read_image(corrupt)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.jpg"):
        images.read_image(truncated)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        images.read_image(tmp_path / "absent.jpg")


def test_cub_bbox_crop_matches_the_official_formula():
    image = np.arange(100 * 200).reshape(100, 200)
    # r = int(0.75 * 40) = 30, centre (int(70/2), int(100/2)) = (35, 50)
    crop = images.cub_bbox_crop(image, (15, 30, 40, 40))
    assert np.array_equal(crop, image[20:80, 5:65])
    # clipped at the border, so not square
    crop = images.cub_bbox_crop(image, (0.0, 0.0, 20.0, 10.0))
    assert np.array_equal(crop, image[0:20, 0:25])
    with pytest.raises(ValueError):
        images.cub_bbox_crop(image, (0, 0, 0, 10))


# ----------------------------------------------------------------------------- errors
def _write_custom(root, captions_bytes: dict[str, bytes], test_keys=("b",)):
    (root / "images").mkdir(parents=True)
    (root / "captions").mkdir()
    for key, data in captions_bytes.items():
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "images" / f"{key}.png")
        (root / "captions" / f"{key}.txt").write_bytes(data)
    (root / "train.txt").write_text("".join(k + "\n" for k in captions_bytes if k not in test_keys))
    (root / "test.txt").write_text("".join(k + "\n" for k in test_keys))


def test_custom_caption_encoding_rules(tmp_path):
    _write_custom(tmp_path / "ok", {"a": "\ufeffa red bird\n\n  \nsecond one\n".encode("utf-8"), "b": b"x\r\ny\r\n"})
    index = loaders.load_dataset(str(tmp_path / "ok"))
    assert index.train[0].captions == ["a red bird", "second one"] and index.test[0].captions == ["x", "y"]
    _write_custom(tmp_path / "bad", {"a": "caf\u00e9 au lait".encode("latin1"), "b": b"fine"})
    with pytest.raises(ValueError, match=r"a\.txt.*re-save it as UTF-8"):
        loaders.load_dataset(str(tmp_path / "bad"))


def test_missing_folder_lists_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(loaders.SHARED_DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as raised:
        loaders.load_dataset("birds", data_root="nowhere")
    message = str(raised.value)
    assert os.path.join("nowhere", "birds") in message
    assert os.path.join("..", "shared", "data", "birds-mini") in message
    assert "datasets/README.md" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_dataset("coco", data_dir=str(tmp_path / "absent"))


def test_wrong_layout_says_what_was_expected_and_found(tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for name in ("birds", "flowers", "coco"):
        with pytest.raises(ValueError, match="expected.*found.*holiday_photos/.*notes.txt"):
            loaders.load_dataset(name, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="custom layout"):
        loaders.load_dataset(str(tmp_path))


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as raised:
        loaders.load_dataset("imagenet-please")
    for name in loaders.DATASET_NAMES:
        assert name in str(raised.value)
    assert "custom layout" in str(raised.value)
    assert loaders.DATASET_NAMES == ("shapes", "shapes-pairs", "birds", "flowers", "coco")


def test_birds_with_no_image_present_says_what_to_download(tmp_path):
    birds = shared("birds-mini")
    folder = tmp_path / "birds"
    (folder / "CUB_200_2011").mkdir(parents=True)
    for part in ("train", "test", "text"):
        os.symlink(os.path.join(birds, part), folder / part)
    for name in ("images.txt", "bounding_boxes.txt"):
        os.symlink(os.path.join(birds, "CUB_200_2011", name), folder / "CUB_200_2011" / name)
    with pytest.raises(FileNotFoundError, match="None of the 275 train images.*CUB_200_2011.tgz.*datasets/README.md"):
        loaders.load_dataset("birds", data_dir=str(folder))


# ----------------------------------------------------------------------------- custom layout round trip
def test_custom_layout_round_trip_coco(coco_mini, tmp_path):
    out = custom.write_custom_layout(coco_mini, tmp_path / "coco-custom")
    again = loaders.load_dataset(out)
    for split in ("train", "test"):
        expected = [(e.key, e.captions) for e in coco_mini.split(split)]
        assert [(e.key, e.captions) for e in again.split(split)] == expected
    with pytest.raises(ValueError, match="not empty"):
        custom.write_custom_layout(coco_mini, out)


def test_custom_layout_round_trip_birds_keeps_crop_classes_and_vocabulary(birds_with_metadata, tmp_path):
    full = birds_with_metadata
    small = DatasetIndex(name="birds", root=full.root, train=full.train[:3], test=full.test[:2],
                         vocabulary_words=full.vocabulary_words, crop_to_bbox=True)
    again = loaders.load_dataset(custom.write_custom_layout(small, tmp_path / "birds-custom"))
    assert again.vocabulary_words == full.vocabulary_words and not again.crop_to_bbox
    assert again.meta["dataset_json"]["bbox_cropped"] is True
    for before, after in zip(small.train + small.test, again.train + again.test):
        assert (after.key, after.captions, after.class_id) == (before.key, before.captions, before.class_id)
        expected = images.cub_bbox_crop(images.read_image(before.image_path), before.bbox)
        assert np.array_equal(images.read_image(after.image_path), expected)


def test_custom_layout_refuses_keys_that_escape_the_folder(tmp_path):
    index = DatasetIndex(name="x", root=str(tmp_path), train=[Example("../evil", "a.png", ["c"])], test=[])
    with pytest.raises(ValueError, match="invalid example key"):
        custom.write_custom_layout(index, tmp_path / "out")


# ----------------------------------------------------------------------------- flowers (fake folder)
def _fake_flowers(root, class_split_files: bool = False):
    layout = {1: [1, 2, 3], 2: [4, 5], 3: [6, 7]}  # class → image numbers
    (root / "jpg").mkdir(parents=True)
    for class_id, numbers in layout.items():
        (root / "text_c10" / f"class_{class_id:05d}").mkdir(parents=True)
        for number in numbers:
            stem = f"image_{number:05d}"
            if number != 3:  # image 3 is listed but absent
                Image.new("RGB", (10, 12), (number * 30, 100, 50)).save(root / "jpg" / f"{stem}.jpg")
            lines = [f"flower {number} caption {i}" for i in range(10)]
            (root / "text_c10" / f"class_{class_id:05d}" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        (root / "text_c10" / f"class_{class_id:05d}" / "char-CNN-RNN.h5").write_bytes(b"ignored")
    if class_split_files:
        (root / "trainvalclasses.txt").write_text("class_00001\nclass_00002\n")
        (root / "testclasses.txt").write_text("class_00003\n")
        return
    for split, names in (("train", ["jpg/image_00001", "jpg/image_00002", "jpg/image_00003", "jpg/image_00004",
                                    "jpg/image_00005"]), ("test", ["jpg/image_00006", "jpg/image_00007"])):
        (root / split).mkdir()
        (root / split / "filenames.pickle").write_bytes(pickle.dumps(names, protocol=2))
    (root / "test" / "class_info.pickle").write_bytes(pickle.dumps([3, 3], protocol=2))


@pytest.mark.parametrize("class_split_files", [False, True])
def test_flowers_fake_folder(tmp_path, class_split_files, caplog):
    _fake_flowers(tmp_path, class_split_files)
    with caplog.at_level("WARNING"):
        index = loaders.load_dataset("flowers", data_dir=str(tmp_path))
    assert "1 of 5 listed images are missing" in caplog.text and "image_00003.jpg" in caplog.text
    assert [e.key for e in index.train] == ["image_00001", "image_00002", "image_00004", "image_00005"]
    assert [e.key for e in index.test] == ["image_00006", "image_00007"]
    assert index.missing == {"train": 1, "test": 0}
    assert [e.class_id for e in index.train] == [1, 1, 2, 2] and {e.class_id for e in index.test} == {3}
    assert all(len(e.captions) == 10 and os.path.isabs(e.image_path) for e in index.train + index.test)
    assert not index.crop_to_bbox


# ----------------------------------------------------------------------------- shapes and the prepare tool
def test_shapes_are_delegated(tmp_path):
    shapes = pytest.importorskip("t2igan.data.shapes")
    index = loaders.load_dataset("shapes", data_root=str(tmp_path), image_size=16, num_train=4, num_test=2, seed=3)
    assert (len(index.train), len(index.test)) == (4, 2)
    assert os.path.dirname(index.root) == str(tmp_path)
    assert shapes.load(index.root).train[0].key == index.train[0].key
    with pytest.raises(ValueError, match="only apply to the shapes"):
        loaders.load_dataset("birds", image_size=16)


@pytest.fixture(scope="module")
def prepare_tool():
    spec = importlib.util.spec_from_file_location("prepare", os.path.join(REPO_ROOT, "datasets", "prepare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_tool_summary(prepare_tool, coco_mini):
    text = prepare_tool.summary(coco_mini)
    assert "train: 72 images used" in text and "test : 8 images used" in text


def test_prepare_tool_checksums(prepare_tool, tmp_path):
    prepare = prepare_tool
    (tmp_path / "f.txt").write_bytes(b"abc")
    [(name, sha256, md5)] = prepare.file_checksums(str(tmp_path))
    assert name == "f.txt" and md5 == "900150983cd24fb0d6963f7d28e17f72"
    assert sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ----------------------------------------------------------------------------- coco layouts (fake folders)
def _coco_json(path, image_ids, prefix):
    import json

    images_ = [{"id": i, "file_name": f"{prefix}{i:012d}.jpg"} for i in image_ids]
    annotations = [{"id": 100 * i + j, "image_id": i, "caption": f" picture {i}, caption {j}\n"}
                   for i in image_ids for j in range(5)]
    path.write_text(json.dumps({"images": images_, "annotations": annotations}))


def test_coco_2014_json_pair_and_attngan_layout(tmp_path):
    folder = tmp_path / "coco2014"
    (folder / "annotations").mkdir(parents=True)
    for split, ids in (("train", [5, 3]), ("val", [9])):
        _coco_json(folder / "annotations" / f"captions_{split}2014.json", ids, f"COCO_{split}2014_")
        (folder / f"{split}2014").mkdir()
        for i in ids:
            Image.new("RGB", (6, 6)).save(folder / f"{split}2014" / f"COCO_{split}2014_{i:012d}.jpg")
    index = loaders.load_dataset("coco", data_dir=str(folder))
    assert [e.key for e in index.train] == ["COCO_train2014_000000000003", "COCO_train2014_000000000005"]
    assert [e.key for e in index.test] == ["COCO_val2014_000000000009"]
    assert index.test[0].captions[0] == "picture 9, caption 0"

    # The same data converted by hand to the AttnGAN layout, split lists from metadata_dir.
    attngan, metadata = tmp_path / "attngan", tmp_path / "metadata"
    (attngan / "images").mkdir(parents=True)
    (attngan / "text").mkdir()
    for example in index.train + index.test:
        Image.new("RGB", (6, 6)).save(attngan / "images" / f"{example.key}.jpg")
        (attngan / "text" / f"{example.key}.txt").write_text("\n".join(example.captions))
    for split in ("train", "test"):
        (metadata / split).mkdir(parents=True)
        names = [e.key for e in index.split(split)] + ([f"COCO_{split}2014_000000000077"] if split == "train" else [])
        (metadata / split / "filenames.pickle").write_bytes(pickle.dumps(names, protocol=2))
    again = loaders.load_dataset("coco", data_dir=str(attngan), metadata_dir=str(metadata))
    assert again.meta["layout"] == "attngan-coco" and again.missing == {"train": 1, "test": 0}
    expected = [(e.key, e.captions) for e in index.train + index.test]
    assert [(e.key, e.captions) for e in again.train + again.test] == expected
