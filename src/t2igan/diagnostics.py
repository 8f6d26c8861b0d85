"""Diagnostics for ``shapes`` runs: where does text conditioning get lost — in φ(t) or in the GAN?

``python -m t2igan.diagnostics probe RUN_DIR [DATA_FOLDER]``
    Fits a linear classifier per attribute on the run's stored *training* caption
    embeddings (standardised per dimension) (each caption → the attribute it states) and reports accuracy on the
    *test* captions. Chance: shape 0.20, colour 0.125, size 0.50, position 0.11.
    If the encoder scores near chance on an attribute, no GAN can draw it from φ(t).

``python -m t2igan.diagnostics attribute-embeddings RUN_DIR [DATA_FOLDER]``
    Replaces the run's stored caption embeddings with one-hot codes of the attributes
    each caption states (a "perfect" text encoder), keeping the width. Training a GAN
    in that run folder afterwards shows what the GAN alone can learn.

DATA_FOLDER defaults to the run's ``shapes`` folder under ``data/``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

ATTRIBUTES = ("shape", "colour", "size", "position")


def _records(data_folder: str, split: str) -> list[dict]:
    keys = [line.strip() for line in open(os.path.join(data_folder, f"{split}.txt"), encoding="utf-8") if line.strip()]
    by_key = {}
    with open(os.path.join(data_folder, "attributes.jsonl"), encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            by_key[record["key"]] = record
    return [by_key[key] for key in keys]


def _values(records) -> dict[str, list[str]]:
    return {a: sorted({r["image"][a] for r in records}) for a in ATTRIBUTES}


def _default_data_folder(run_dir: str) -> str:
    config = json.load(open(os.path.join(run_dir, "config.json"), encoding="utf-8"))
    return os.path.join("data", f"{config['dataset']}-{config['image_size']}px-seed0")


def probe(run_dir: str, data_folder: str, epochs: int = 5) -> dict[str, float]:
    import keras

    train, test = _records(data_folder, "train"), _records(data_folder, "test")
    embeddings = {split: np.load(os.path.join(run_dir, "text_encoder", f"embeddings-{split}.npy")).astype(np.float32)
                  for split in ("train", "test")}
    values = _values(train)
    results = {}
    for attribute in ATTRIBUTES:
        def pairs(records, table):
            rows = [(i, j, values[attribute].index(c[attribute])) for i, r in enumerate(records)
                    for j, c in enumerate(r["captions"]) if attribute in c]
            index = np.array(rows)
            return table[index[:, 0], index[:, 1]], index[:, 2]

        x, y = pairs(train, embeddings["train"])
        x_test, y_test = pairs(test, embeddings["test"])
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-8  # standardised: the probe does not depend on the scale
        x, x_test = (x - mean) / std, (x_test - mean) / std
        keras.utils.set_random_seed(0)
        classifier = keras.Sequential([keras.layers.Dense(len(values[attribute]))])
        classifier.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        classifier.fit(x, y, epochs=epochs, batch_size=256, verbose=0)
        results[attribute] = float(classifier.evaluate(x_test, y_test, verbose=0)[1])
    return results


def attribute_embeddings(run_dir: str, data_folder: str) -> None:
    folder = os.path.join(run_dir, "text_encoder")
    train = _records(data_folder, "train")
    values = _values(train)
    for split in ("train", "test"):
        path = os.path.join(folder, f"embeddings-{split}.npy")
        stored = np.load(path)
        codes = np.zeros_like(stored)
        offsets = np.cumsum([0] + [len(values[a]) for a in ATTRIBUTES])
        if offsets[-1] > stored.shape[-1]:
            raise ValueError(f"The embeddings in {folder} are {stored.shape[-1]}-d; one-hot codes need {offsets[-1]}.")
        for i, record in enumerate(_records(data_folder, split)):
            for j, caption in enumerate(record["captions"][: stored.shape[1]]):
                for offset, attribute in zip(offsets, ATTRIBUTES):
                    if attribute in caption:
                        codes[i, j, offset + values[attribute].index(caption[attribute])] = 3.0
        np.save(path, codes)
    print(f"Replaced the caption embeddings in {folder} by one-hot attribute codes.")


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[1] not in ("probe", "attribute-embeddings"):
        print(__doc__, file=sys.stderr)
        return 2
    run_dir = argv[2]
    data_folder = argv[3] if len(argv) == 4 else _default_data_folder(run_dir)
    if argv[1] == "probe":
        for attribute, accuracy in probe(run_dir, data_folder).items():
            print(f"{attribute:9s} {accuracy:.3f}")
    else:
        attribute_embeddings(run_dir, data_folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
