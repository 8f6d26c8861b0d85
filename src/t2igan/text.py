"""Captions → integers: word tokens (AttnGAN rule) and characters (Reed's char-CNN-RNN).

Word side, as AttnGAN's ``code/datasets.py`` does it: lower-case, tokenise with
``RegexpTokenizer(r"\\w+")`` (no nltk data download needed), drop non-ASCII
characters, vocabulary with index 0 = ``<end>`` used as padding, no ``<unk>``.
Unknown words are dropped *and counted*, never mapped to a garbage id.

Character side, as Reed et al.'s ``icml2016`` loaders do it: a fixed 70-symbol
alphabet, one-hot rows, characters outside the alphabet give all-zero rows,
fixed document length (201 in the paper).
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable, Sequence

import numpy as np
from nltk.tokenize import RegexpTokenizer

PAD_WORD = "<end>"
_TOKENIZER = RegexpTokenizer(r"\w+")

# Reed et al.'s alphabet, verbatim: 70 symbols with '-' twice (the second
# column is therefore never set — kept so the first conv has 70 input rows).
REED_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+-=<>()[]{} "


def tokenize(caption: str) -> list[str]:
    """AttnGAN's tokenisation: lower-case ``\\w+`` tokens, ASCII only."""
    caption = caption.replace("\ufffd\ufffd", " ").lower()
    tokens = []
    for token in _TOKENIZER.tokenize(caption):
        token = token.encode("ascii", "ignore").decode("ascii")
        if token:
            tokens.append(token)
    return tokens


class Vocabulary:
    """Word ↔ id table; id 0 is padding (``<end>``), as in AttnGAN."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if not words or words[0] != PAD_WORD:
            raise ValueError(f"A vocabulary must start with the padding word {PAD_WORD!r}; got {words[:1]}.")
        if len(set(words)) != len(words):
            raise ValueError("A vocabulary must not contain duplicate words.")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_captions(cls, captions: Iterable[str]) -> "Vocabulary":
        """Every word seen (AttnGAN keeps count ≥ 0), in a deterministic order.

        Sorted by decreasing frequency, then alphabetically, so the same
        captions always give the same ids (AttnGAN's order came from Python 2
        dict iteration and cannot be rebuilt; use the official pickle for that).
        """
        counts = collections.Counter(word for caption in captions for word in tokenize(caption))
        ordered = sorted(counts, key=lambda word: (-counts[word], word))
        return cls([PAD_WORD] + [word for word in ordered if word != PAD_WORD])

    def encode(self, caption: str) -> tuple[list[int], list[str]]:
        """Token ids of the known words and the list of unknown words (dropped)."""
        ids, unknown = [], []
        for word in tokenize(caption):
            if word in self.index and self.index[word] != 0:
                ids.append(self.index[word])
            else:
                unknown.append(word)
        return ids, unknown

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i] for i in ids if i != 0)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as file:
            json.dump({"format": "t2igan-vocabulary-1", "words": self.words}, file)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        try:
            with open(path, encoding="utf-8") as file:
                data = json.load(file)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read the vocabulary file {path}: {error}") from error
        if not isinstance(data, dict) or "words" not in data:
            raise ValueError(f"{path} is not a t2igan vocabulary file (no 'words' list).")
        return cls(data["words"])


def truncate_indices(length: int, words_num: int, rng: np.random.Generator) -> np.ndarray:
    """AttnGAN's rule for long captions: a random, order-preserving subset of positions."""
    if length <= words_num:
        return np.arange(length)
    return np.sort(rng.choice(length, size=words_num, replace=False))


def pad_ids(ids: Sequence[int], words_num: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Pad with 0 to ``words_num``; longer captions keep a random ordered subset."""
    ids = np.asarray(ids, dtype=np.int32)
    if len(ids) > words_num:
        ids = ids[truncate_indices(len(ids), words_num, rng or np.random.default_rng(0))]
    out = np.zeros(words_num, dtype=np.int32)
    out[: len(ids)] = ids
    return out, len(ids)


class CharacterCodec:
    """Characters → ids for a one-hot char-CNN (0 = outside the alphabet / padding)."""

    def __init__(self, alphabet: str = REED_ALPHABET, doc_length: int = 201):
        self.alphabet = alphabet
        self.doc_length = doc_length
        self.index: dict[str, int] = {}
        for position, char in enumerate(alphabet):
            self.index.setdefault(char, position + 1)  # first occurrence wins, like Reed's loader

    @property
    def depth(self) -> int:
        """Width of the one-hot rows (the alphabet length, duplicates included)."""
        return len(self.alphabet)

    def encode(self, caption: str) -> tuple[np.ndarray, int]:
        """Ids of the first ``doc_length`` characters (lower-cased) and how many were cut off."""
        text = caption.lower()
        ids = np.zeros(self.doc_length, dtype=np.int32)
        for position, char in enumerate(text[: self.doc_length]):
            ids[position] = self.index.get(char, 0)
        return ids, max(0, len(text) - self.doc_length)


def resolve_vocabulary(run_vocabulary_path: str, captions: Iterable[str], official_words: Sequence[str] | None) -> Vocabulary:
    """Load the run's vocabulary, or create it (official list if the data set ships one)."""
    if os.path.exists(run_vocabulary_path):
        return Vocabulary.load(run_vocabulary_path)
    vocabulary = Vocabulary(official_words) if official_words else Vocabulary.from_captions(captions)
    vocabulary.save(run_vocabulary_path)
    return vocabulary
