"""Hard negatives: mismatched examples that differ from an example in exactly one attribute.

A matching-aware discriminator (GAN-CLS) and the DS-SJE text-encoder loss both learn from
mismatched pairs. Drawn at random, as in the papers, a mismatched caption of ``shapes`` almost
always differs in colour or position already (8 colours × 9 positions), so neither network ever
*has* to read the shape word, and shape stays at chance (chapter 1 README §5). A near miss — the
same colour, size and position, another shape — is a negative that only the shape word separates.

``near_miss_table`` finds such examples from the structured attributes a data set stores with its
images (``attributes.jsonl``, e.g. the built-in ``shapes``); the pipeline draws the wrong example
from it with probability ``hard_negatives`` (``make_dataset``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from t2igan.data.records import Example


def scalar_attributes(example: Example) -> dict[str, str] | None:
    """The image's single-valued string attributes (shape, colour, …), or None when it has none."""
    attributes = example.image_attributes
    if not isinstance(attributes, dict):
        return None
    scalars = {key: value for key, value in attributes.items() if isinstance(value, str)}
    return scalars or None


def near_miss_table(examples: Sequence[Example], per_attribute: int = 4, seed: int = 0) -> np.ndarray | None:
    """(N, per_attribute · A) indices of examples equal to example i in every attribute but one; −1 pads.

    Row i holds up to ``per_attribute`` random near misses for each of the A attributes, so a uniform
    draw from the row varies each attribute about equally often. Returns None when the examples carry no
    single-valued attributes (real data sets; ``shapes-pairs``, whose attributes are per object).
    """
    records = [scalar_attributes(example) for example in examples]
    if not records or any(record is None for record in records):
        return None
    names = sorted(set.intersection(*(set(record) for record in records)))
    if not names:
        return None
    rng = np.random.default_rng(seed)
    table = np.full((len(records), per_attribute * len(names)), -1, np.int64)
    for a, name in enumerate(names):
        # Examples grouped by every attribute except `name`; a group's members that differ in `name` are near misses.
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            groups[tuple(record[n] for n in names if n != name)].append(i)
        for members in groups.values():
            members = np.asarray(members)
            values = np.asarray([records[i][name] for i in members])
            for i, value in zip(members, values):
                others = members[values != value]
                if len(others):
                    chosen = rng.choice(others, size=min(per_attribute, len(others)), replace=False)
                    table[i, a * per_attribute: a * per_attribute + len(chosen)] = chosen
    return table.astype(np.int32)


def dataset_options(examples: Sequence[Example], hard_negatives: float) -> dict:
    """``make_dataset`` keywords for that fraction of near-miss wrong examples ({} when 0)."""
    from t2igan.errors import UserError

    if not hard_negatives:
        return {}
    table = near_miss_table(examples)
    if table is None:
        raise UserError("hard negatives need single-valued image attributes (attributes.jsonl, as the built-in "
                        "shapes stores them); this data set has none. Set them to 0 (--set hard_negatives=0 "
                        "--set pretrain_hard_negatives=0).")
    return dict(near_misses=table, hard_negatives=hard_negatives)
