import numpy as np
import pytest

from t2igan.text import PAD_WORD, CharacterCodec, Vocabulary, pad_ids, tokenize, truncate_indices


def test_tokenize_follows_attngan():
    assert tokenize("This bird has a RED crown, short beak & white-ish belly.") == [
        "this", "bird", "has", "a", "red", "crown", "short", "beak", "white", "ish", "belly"]
    assert tokenize("caf\u00e9 \ufffd\ufffdblue") == ["caf", "blue"]  # non-ASCII dropped, U+FFFD pair → space
    assert tokenize("") == []


def test_vocabulary_is_deterministic_and_counts_unknown_words(tmp_path):
    captions = ["a red circle", "a blue square", "A red star"]
    vocabulary = Vocabulary.from_captions(captions)
    assert vocabulary.words[0] == PAD_WORD
    assert vocabulary.words[1:3] == ["a", "red"]  # most frequent first, then alphabetical
    assert Vocabulary.from_captions(reversed(captions)).words == vocabulary.words
    ids, unknown = vocabulary.encode("a purple circle")
    assert unknown == ["purple"] and vocabulary.decode(ids) == "a circle"
    vocabulary.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == vocabulary.words
    with pytest.raises(ValueError, match="padding word"):
        Vocabulary(["a", "b"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(tmp_path / "bad.json")


def test_long_captions_keep_a_random_ordered_subset():
    rng = np.random.default_rng(0)
    chosen = truncate_indices(30, 18, rng)
    assert len(chosen) == 18 and np.all(np.diff(chosen) > 0) and chosen.max() < 30
    assert not np.array_equal(chosen, np.arange(18)) or not np.array_equal(truncate_indices(30, 18, rng), np.arange(18))
    padded, length = pad_ids([5, 6, 7], 5)
    assert padded.tolist() == [5, 6, 7, 0, 0] and length == 3


def test_character_codec_matches_reed():
    codec = CharacterCodec(doc_length=10)
    assert codec.depth == 70  # Reed's alphabet, '-' twice
    ids, cut = codec.encode("Ab-é xyz long")
    assert ids[0] == 1 and ids[1] == 2  # lower-cased a, b
    assert ids[2] == codec.alphabet.index("-") + 1  # first occurrence of '-'
    assert ids[3] == 0  # outside the alphabet → zero row
    assert cut == 3 and len(ids) == 10
