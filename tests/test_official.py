"""The official AttnGAN checkpoints (``official.py``, ``chapters/ch3_attngan/official.py``).

Without torch: synthetic state dicts with the official names and shapes (written out here from the official
architecture, not from our networks) load with every key used, wrong files give clear errors, and the
outputs match NumPy computations of the official formulas (the LSTM over packed sequences, the
padding-including average pool, the bilinear resize, the generator's CA and stage-1 fc). With torch
(skipped where it is absent): the official modules, written here from the architecture, and ours give the
same outputs on the same random weights.
"""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from chapters.ch3_attngan import damsm
from chapters.ch3_attngan import official
from t2igan.errors import UserError

from chapters.ch3_attngan import official as attngan
from chapters.ch3_attngan import model
from chapters.ch3_attngan import profiles
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("T2IGAN_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
BIRDS_WORDS = 5450


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- official shapes, from the architecture
def rnn_encoder_shapes(words, embedding, hidden):
    """``RNN_ENCODER``: nn.Embedding ``encoder`` and a 1-layer bidirectional nn.LSTM ``rnn`` (gates i, f, g, o)."""
    shapes = {"encoder.weight": (words, embedding)}
    for suffix in ("", "_reverse"):
        shapes.update({f"rnn.weight_ih_l0{suffix}": (4 * hidden, embedding), f"rnn.weight_hh_l0{suffix}": (4 * hidden, hidden),
                       f"rnn.bias_ih_l0{suffix}": (4 * hidden,), f"rnn.bias_hh_l0{suffix}": (4 * hidden,)})
    return shapes


def inception_units():
    """torchvision Inception3 up to Mixed_7c: (name, in, out, kernel) of every BasicConv2d."""
    units = [("Conv2d_1a_3x3", 3, 32, (3, 3)), ("Conv2d_2a_3x3", 32, 32, (3, 3)), ("Conv2d_2b_3x3", 32, 64, (3, 3)),
             ("Conv2d_3b_1x1", 64, 80, (1, 1)), ("Conv2d_4a_3x3", 80, 192, (3, 3))]
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        units += [(f"{name}.branch1x1", cin, 64, (1, 1)), (f"{name}.branch5x5_1", cin, 48, (1, 1)),
                  (f"{name}.branch5x5_2", 48, 64, (5, 5)), (f"{name}.branch3x3dbl_1", cin, 64, (1, 1)),
                  (f"{name}.branch3x3dbl_2", 64, 96, (3, 3)), (f"{name}.branch3x3dbl_3", 96, 96, (3, 3)),
                  (f"{name}.branch_pool", cin, pool, (1, 1))]
    units += [("Mixed_6a.branch3x3", 288, 384, (3, 3)), ("Mixed_6a.branch3x3dbl_1", 288, 64, (1, 1)),
              ("Mixed_6a.branch3x3dbl_2", 64, 96, (3, 3)), ("Mixed_6a.branch3x3dbl_3", 96, 96, (3, 3))]
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        units += [(f"{name}.branch1x1", 768, 192, (1, 1)), (f"{name}.branch7x7_1", 768, c7, (1, 1)),
                  (f"{name}.branch7x7_2", c7, c7, (1, 7)), (f"{name}.branch7x7_3", c7, 192, (7, 1)),
                  (f"{name}.branch7x7dbl_1", 768, c7, (1, 1)), (f"{name}.branch7x7dbl_2", c7, c7, (7, 1)),
                  (f"{name}.branch7x7dbl_3", c7, c7, (1, 7)), (f"{name}.branch7x7dbl_4", c7, c7, (7, 1)),
                  (f"{name}.branch7x7dbl_5", c7, 192, (1, 7)), (f"{name}.branch_pool", 768, 192, (1, 1))]
    units += [("Mixed_7a.branch3x3_1", 768, 192, (1, 1)), ("Mixed_7a.branch3x3_2", 192, 320, (3, 3)),
              ("Mixed_7a.branch7x7x3_1", 768, 192, (1, 1)), ("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7)),
              ("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1)), ("Mixed_7a.branch7x7x3_4", 192, 192, (3, 3))]
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        units += [(f"{name}.branch1x1", cin, 320, (1, 1)), (f"{name}.branch3x3_1", cin, 384, (1, 1)),
                  (f"{name}.branch3x3_2a", 384, 384, (1, 3)), (f"{name}.branch3x3_2b", 384, 384, (3, 1)),
                  (f"{name}.branch3x3dbl_1", cin, 448, (1, 1)), (f"{name}.branch3x3dbl_2", 448, 384, (3, 3)),
                  (f"{name}.branch3x3dbl_3a", 384, 384, (1, 3)), (f"{name}.branch3x3dbl_3b", 384, 384, (3, 1)),
                  (f"{name}.branch_pool", cin, 192, (1, 1))]
    return units


def batch_norm_shapes(prefix, width):
    return {f"{prefix}.{key}": (width,) for key in ("weight", "bias", "running_mean", "running_var")}


def cnn_encoder_shapes(width):
    """``CNN_ENCODER``: the Inception units, ``emb_features`` (1×1 conv, no bias), ``emb_cnn_code`` (Linear)."""
    shapes = {}
    for name, cin, cout, (kh, kw) in inception_units():
        shapes[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        shapes.update(batch_norm_shapes(f"{name}.bn", cout))
    shapes.update({"emb_features.weight": (width, 768, 1, 1), "emb_cnn_code.weight": (width, 2048),
                   "emb_cnn_code.bias": (width,)})
    return shapes


def g_net_shapes(ngf, stages=3, residual=2, condition=100, noise=100, text=256):
    """``G_NET``: CA_NET, INIT_STAGE_G(16·ngf), NEXT_STAGE_G × (stages − 1), GET_IMAGE_G × stages."""
    top = 16 * ngf
    shapes = {"ca_net.fc.weight": (4 * condition, text), "ca_net.fc.bias": (4 * condition,),
              "h_net1.fc.0.weight": (top * 16 * 2, condition + noise), **batch_norm_shapes("h_net1.fc.1", top * 32)}
    for i in range(1, 5):
        cin, cout = top // 2 ** (i - 1), top // 2**i
        shapes[f"h_net1.upsample{i}.1.weight"] = (2 * cout, cin, 3, 3)
        shapes.update(batch_norm_shapes(f"h_net1.upsample{i}.2", 2 * cout))
    for k in range(2, stages + 1):
        shapes[f"h_net{k}.att.conv_context.weight"] = (ngf, text, 1, 1)
        for r in range(residual):
            shapes[f"h_net{k}.residual.{r}.block.0.weight"] = (4 * ngf, 2 * ngf, 3, 3)
            shapes.update(batch_norm_shapes(f"h_net{k}.residual.{r}.block.1", 4 * ngf))
            shapes[f"h_net{k}.residual.{r}.block.3.weight"] = (2 * ngf, 2 * ngf, 3, 3)
            shapes.update(batch_norm_shapes(f"h_net{k}.residual.{r}.block.4", 2 * ngf))
        shapes[f"h_net{k}.upsample.1.weight"] = (2 * ngf, 2 * ngf, 3, 3)
        shapes.update(batch_norm_shapes(f"h_net{k}.upsample.2", 2 * ngf))
    for k in range(1, stages + 1):
        shapes[f"img_net{k}.img.0.weight"] = (3, ngf, 3, 3)
    return shapes


def random_state(shapes, seed=0, scale=0.1):
    """Random values; BN running variances positive, convs scaled to keep activations O(1)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith("bn.weight") or (key.endswith(".weight") and len(shape) == 1):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        else:
            state[key] = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
    return state


def parameters(shapes):
    return sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var")))


# ----------------------------------------------------------------------------- reading
def test_read_state_dict_strips_dataparallel_and_names_the_fix_without_torch(tmp_path, monkeypatch):
    path = str(tmp_path / "weights.npz")
    np.savez(path, **{"module.encoder.weight": np.ones((3, 2), np.float64), "module.bn.num_batches_tracked": np.array(7)})
    state = official.read_state_dict(path)
    assert sorted(state) == ["bn.num_batches_tracked", "encoder.weight"] and state["encoder.weight"].dtype == np.float32
    pth = tmp_path / "text_encoder200.pth"
    pth.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(UserError) as error:
        official.read_state_dict(str(pth))
    message = str(error.value)
    assert "text_encoder200.pth" in message and "pip install torch" in message
    assert "python -m t2igan.torch_weights convert text_encoder200.pth text_encoder200.npz" in message
    with pytest.raises(FileNotFoundError, match="AttnGAN"):
        official.read_state_dict(str(tmp_path / "missing.pth"))


# ----------------------------------------------------------------------------- text encoder
def numpy_text_encoder(state, ids, lengths):
    """RNN_ENCODER in eval mode over PyTorch packed sequences: each direction reads only the real words."""
    def lstm(inputs, suffix):
        w_ih, w_hh = state[f"rnn.weight_ih_l0{suffix}"], state[f"rnn.weight_hh_l0{suffix}"]
        b = state[f"rnn.bias_ih_l0{suffix}"] + state[f"rnn.bias_hh_l0{suffix}"]
        h, c = np.zeros(w_hh.shape[1]), np.zeros(w_hh.shape[1])
        outputs = np.zeros((len(inputs), w_hh.shape[1]))
        for t in (reversed(range(len(inputs))) if suffix else range(len(inputs))):
            i, f, g, o = np.split(w_ih @ inputs[t] + w_hh @ h + b, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            outputs[t] = h
        return outputs, h

    words = np.zeros(ids.shape + (2 * state["rnn.weight_hh_l0"].shape[1],))
    sentences = []
    for b, (row, length) in enumerate(zip(ids, lengths)):
        x = state["encoder.weight"][row[:length]].astype(np.float64)
        forward, last = lstm(x, "")
        backward, first = lstm(x, "_reverse")  # its final state is the one after word 0
        words[b, :length] = np.concatenate([forward, backward], axis=1)
        sentences.append(np.concatenate([last, first]))
    return words, np.stack(sentences)


def test_text_encoder_equals_the_packed_lstm_formula():
    shapes = rnn_encoder_shapes(11, 6, 5)
    state = random_state(shapes, seed=1, scale=0.5)
    encoder = official.build_text_encoder(dict(state, **{"rnn.num_batches_tracked": np.array(0)}), "text.npz")
    ids = np.array([[3, 7, 1, 9, 2], [4, 10, 0, 0, 0], [5, 0, 0, 0, 0]], np.int32)
    lengths = np.array([5, 2, 1], np.int32)
    words, sentence = encoder([ids, lengths], training=False)
    expected_words, expected_sentence = numpy_text_encoder(state, ids, lengths)
    np.testing.assert_allclose(words.numpy(), expected_words, atol=1e-5)
    np.testing.assert_allclose(sentence.numpy(), expected_sentence, atol=1e-5)
    assert np.all(words.numpy()[1, 2:] == 0.0)  # exact zeros at padding, as pad_packed_sequence gives


def test_text_encoder_errors_name_what_is_wrong():
    state = random_state(rnn_encoder_shapes(11, 6, 5))
    encoder = official.build_text_encoder(state, "text.npz")
    with pytest.raises(UserError, match=r"unexpected rnn\.weight_ih_l1"):
        official.load_text_encoder(encoder, dict(state, **{"rnn.weight_ih_l1": np.zeros((20, 6))}), "text.npz")
    with pytest.raises(UserError, match=r"missing rnn\.bias_hh_l0_reverse"):
        official.load_text_encoder(encoder, {k: v for k, v in state.items() if k != "rnn.bias_hh_l0_reverse"}, "text.npz")
    with pytest.raises(UserError, match=r"wrong shapes: rnn\.weight_hh_l0 \(20, 4\) \(expected \(20, 5\)\)"):
        official.load_text_encoder(encoder, dict(state, **{"rnn.weight_hh_l0": np.zeros((20, 4))}), "text.npz")
    with pytest.raises(UserError) as error:
        official.check_vocabulary(BIRDS_WORDS, "text_encoder200.pth", 5000, "our captions")
    assert "official birds vocabulary" in str(error.value) and "captions.pickle" in str(error.value)
    with pytest.raises(UserError, match="is not AttnGAN's DAMSM text encoder"):
        official.build_text_encoder({"emb_features.weight": np.zeros((2, 3))}, "image_encoder200.pth")


# ----------------------------------------------------------------------------- image encoder
def numpy_bilinear(image, size, align_corners):
    """PyTorch's bilinear interpolate of one (H, W) map to size × size."""
    def coordinates(length):
        out = np.arange(size, dtype=np.float64)
        if align_corners:
            source = out * (length - 1) / (size - 1)
        else:
            source = np.maximum((out + 0.5) * length / size - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(int), length - 1)
        return low, np.minimum(low + 1, length - 1), source - low

    (y0, y1, wy), (x0, x1, wx) = coordinates(image.shape[0]), coordinates(image.shape[1])
    rows = image[y0] * (1 - wy)[:, None] + image[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx)[None] + rows[:, x1] * wx[None]


def test_resize_to_299_in_both_pytorch_modes():
    image = np.random.default_rng(2).standard_normal((1, 5, 4, 1)).astype(np.float32)
    for align_corners in (False, True):
        resized = damsm.resize_bilinear(image, 9, align_corners).numpy()[0, :, :, 0]
        np.testing.assert_allclose(resized, numpy_bilinear(image[0, :, :, 0], 9, align_corners), atol=1e-5)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The official DAMSM (synthetic weights, birds sizes: 5,450 words) converted into our folder format."""
    folder = tmp_path_factory.mktemp("official")
    text_state = random_state(rnn_encoder_shapes(BIRDS_WORDS, 8, 4), seed=3, scale=0.3)
    image_state = random_state(cnn_encoder_shapes(8), seed=4)
    text_path, image_path = str(folder / "text_encoder200.npz"), str(folder / "image_encoder200.npz")
    np.savez(text_path, **text_state)
    np.savez(image_path, **{f"module.{k}": v for k, v in image_state.items()})
    captions = os.path.join(SHARED_DATA, "birds-metadata", "captions.pickle")
    if os.path.isfile(captions):
        words, source = official.official_vocabulary(captions), captions
    else:
        words, source = ["<end>"] + [f"word{i}" for i in range(1, BIRDS_WORDS)], "a synthetic vocabulary"
    out = str(folder / "damsm")
    record = official.convert_damsm(text_path, image_path, words, out, "birds", source)
    return dict(folder=out, record=record, text_state=text_state, image_state=image_state, words=words,
                source=source, text_path=text_path)


def load_converted(converted, index):
    config = dict(profiles.PROFILES["paper"])
    vocabulary, build = damsm.load(converted["folder"], config, index)
    return vocabulary, build()


class Index:
    """The parts of a DatasetIndex that ``damsm.load`` reads of an imported DAMSM."""

    def __init__(self, vocabulary_words=None):
        self.name, self.vocabulary_words = "birds", vocabulary_words

    def split(self, name):
        return []


@pytest.fixture(scope="module")
def loaded(converted):
    return load_converted(converted, Index())


def test_converted_folder_is_what_damsm_load_reads(converted, loaded):
    assert damsm.is_complete(converted["folder"])
    record = json.load(open(os.path.join(converted["folder"], "complete.json")))
    assert record["encoder_config"]["damsm_backbone"] == "inception_torchvision" and record["vocabulary_size"] == BIRDS_WORDS
    vocabulary, (text, image) = loaded
    assert vocabulary.words == converted["words"] and text.feature_dim == 8
    assert image.kind == "inception_torchvision" and not image.align_corners
    assert "official AttnGAN DAMSM" in image.source  # R-precision's protocol names it
    np.testing.assert_array_equal(text.embedding.embeddings.numpy(), converted["text_state"]["encoder.weight"])


def test_image_encoder_weights_land_where_the_official_names_say(converted, loaded):
    state, (_, (_, image)) = converted["image_state"], loaded
    expected = cnn_encoder_shapes(8)
    assert official.image_encoder_shapes(image) == expected and len(expected) == 94 * 5 + 3
    # The frozen backbone has the official 21,785,568 parameters (conv + BN γ, β).
    assert parameters({k: v for k, v in expected.items() if not k.startswith("emb_")}) == 21_785_568
    backbone = image.backbone
    conv = backbone.get_layer("Mixed_6b.branch7x7_2.conv").kernel.numpy()
    np.testing.assert_array_equal(conv, np.transpose(state["Mixed_6b.branch7x7_2.conv.weight"], (2, 3, 1, 0)))
    norm = backbone.get_layer("Mixed_7c.branch_pool.bn")
    np.testing.assert_array_equal(norm.gamma.numpy(), state["Mixed_7c.branch_pool.bn.weight"])
    np.testing.assert_array_equal(norm.moving_variance.numpy(), state["Mixed_7c.branch_pool.bn.running_var"])
    # Heads: regions = W_f · Mixed_6e per pixel, global = W_c · mean(Mixed_7c) + b (CNN_ENCODER.forward).
    pixels = np.random.default_rng(5).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
    mixed_6e, mixed_7c = (x.numpy() for x in backbone(pixels, training=False))
    assert mixed_6e.shape == (1, 17, 17, 768) and mixed_7c.shape == (1, 8, 8, 2048)
    regions = image.project_regions(mixed_6e).numpy()
    global_features = image.project_global(image.pool(mixed_7c)).numpy()
    np.testing.assert_allclose(regions, mixed_6e @ state["emb_features.weight"][:, :, 0, 0].T, rtol=1e-4, atol=1e-4)
    expected_global = mixed_7c.mean(axis=(1, 2)) @ state["emb_cnn_code.weight"].T + state["emb_cnn_code.bias"]
    np.testing.assert_allclose(global_features, expected_global, rtol=1e-4, atol=1e-4)


def test_torchvision_pools_count_the_padding_and_mixed_7c_averages(loaded):
    backbone = loaded[1][1].backbone
    names = {layer.name for layer in backbone.layers}
    assert "Mixed_7c.avg_pool" in names and "Mixed_7c.max_pool" not in names
    x = np.random.default_rng(6).standard_normal((1, 5, 6, 2)).astype(np.float32)
    pooled = backbone.get_layer("Mixed_5b.avg_pool")(backbone.get_layer("Mixed_5b.pad")(x)).numpy()
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(padded[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3)) / 9.0  # always ÷ 9
    np.testing.assert_allclose(pooled, expected, atol=1e-6)


def test_image_encoder_errors_name_what_is_wrong(converted, loaded, tmp_path):
    image, state = loaded[1][1], converted["image_state"]
    with pytest.raises(UserError, match=r"missing Mixed_7c\.branch_pool\.bn\.running_var"):
        official.load_image_encoder(image, {k: v for k, v in state.items()
                                            if k != "Mixed_7c.branch_pool.bn.running_var"}, "image_encoder200.pth")
    with pytest.raises(UserError, match=r"unexpected fc\.weight"):
        official.load_image_encoder(image, dict(state, **{"fc.weight": np.zeros((1000, 2048))}), "image_encoder200.pth")
    with pytest.raises(UserError, match=r"wrong shapes: emb_cnn_code\.bias \(9,\)"):
        official.load_image_encoder(image, dict(state, **{"emb_cnn_code.bias": np.zeros(9)}), "image_encoder200.pth")
    other = str(tmp_path / "image_encoder_coco.npz")  # only what the width check reads
    np.savez(other, **{"emb_features.weight": np.zeros((16, 768, 1, 1)), "Mixed_7c.branch_pool.conv.weight": np.zeros(1)})
    with pytest.raises(UserError, match="gives 16-d image features but .* 8-d word features"):
        official.convert_damsm(converted["text_path"], other, converted["words"], str(tmp_path / "unused"), "birds")
    assert not os.path.exists(tmp_path / "unused")  # checked before anything is written


def test_converted_text_encoder_reads_the_official_word_ids(converted, loaded):
    """Birds: the folder's vocabulary is captions.pickle's, and our tokenizer gives the official ids."""
    from t2igan.data import loaders, safe_pickle

    metadata, mini = os.path.join(SHARED_DATA, "birds-metadata"), os.path.join(SHARED_DATA, "birds-mini")
    if not (os.path.isdir(metadata) and os.path.isdir(mini)):
        pytest.skip(f"shared data birds-metadata / birds-mini not found in {SHARED_DATA} (set T2IGAN_SHARED_DATA)")
    assert official.find_captions("birds", metadata_dir=metadata) == os.path.join(metadata, "captions.pickle")
    index = loaders.load_dataset("birds", data_dir=mini, metadata_dir=metadata)
    vocabulary = damsm.vocabulary(converted["folder"], Index())  # the ids come from the DAMSM folder alone
    pickled = safe_pickle.load_pickle(os.path.join(metadata, "captions.pickle"))
    assert vocabulary.words == [pickled[2][i] for i in range(BIRDS_WORDS)] == index.vocabulary_words
    embedding = converted["text_state"]["encoder.weight"]
    for split, position in (("train", 0), ("test", 1)):
        names = safe_pickle.load_pickle(os.path.join(metadata, split, "filenames.pickle"))
        row = {name: i for i, name in enumerate(names)}
        for example in index.split(split)[:10]:
            first = row[example.key] * 10
            for c, caption in enumerate(example.captions):
                ids, unknown = vocabulary.encode(caption)
                assert ids == pickled[position][first + c] and not unknown, example.key
    # The converted encoder embeds an official id with the checkpoint's row for it.
    ids = np.array([pickled[0][0][:18]], np.int32)
    np.testing.assert_array_equal(loaded[1][0].embedding(ids).numpy()[0], embedding[ids[0]])
    # A data set that ships captions.pickle must ship this one (the encoders are built lazily: nothing heavy here).
    config = dict(profiles.PROFILES["paper"])
    damsm.load(converted["folder"], config, index)
    with pytest.raises(UserError, match="another captions.pickle"):
        damsm.load(converted["folder"], config, Index(["<end>", "bird"]))


def test_command_line_refuses_to_overwrite_and_converts_to_npz(converted, tmp_path, capsys):
    arguments = ["damsm", f"--text_encoder={converted['text_path']}", "--image_encoder=unused.npz", "--dataset=birds"]
    assert official.main(arguments + [f"--out={converted['folder']}"]) == 2
    assert "already holds a DAMSM; pass --overwrite" in capsys.readouterr().err
    assert official.main(arguments + [f"--out={tmp_path / 'new'}", f"--data_root={tmp_path}"]) == 2
    assert "Pass --captions=PATH/captions.pickle or --metadata_dir=FOLDER" in capsys.readouterr().err
    from t2igan import torch_weights

    assert torch_weights.main(["convert", converted["text_path"], str(tmp_path / "copy.npz")]) == 0
    copy = official.read_state_dict(str(tmp_path / "copy.npz"))
    np.testing.assert_array_equal(copy["rnn.weight_hh_l0"], converted["text_state"]["rnn.weight_hh_l0"])


# ----------------------------------------------------------------------------- generator
def small_generator(ngf=4, stages=3, residual=2, condition=6, noise=5, faithful_mask_bug=False):
    generator = model.AttnGanGenerator(noise, condition, ngf, stages, 64, residual, faithful_mask_bug)
    generator([tf.zeros((2, noise)), tf.zeros((2, 7)), tf.zeros((2, 3, 7)), tf.ones((2, 3), tf.bool)])
    return generator


def shaped(shapes):
    """Arrays of the given shapes without memory (what the configuration reader looks at)."""
    return {key: np.broadcast_to(np.float32(0), shape) for key, shape in shapes.items()}


@pytest.fixture(scope="module")
def generator():
    return small_generator()


def test_generator_keys_are_the_official_ones_with_the_official_count(generator):
    assert parameters(g_net_shapes(32)) == 7_084_592 and parameters(g_net_shapes(48, residual=3)) == 13_811_456
    assert attngan.state_shapes(generator) == g_net_shapes(4, 3, 2, 6, 5, 7)
    found = attngan.checkpoint_configuration(shaped(g_net_shapes(4, 3, 2, 6, 5, 7)), "G.pth")
    assert found == dict(generator_width=4, stages=3, residual_blocks=2, condition_dim=6, noise_dim=5, text_dim=7)


def test_generator_ca_and_first_fc_equal_the_official_formula(generator):
    shapes = g_net_shapes(4, 3, 2, 6, 5, 7)
    state = random_state(shapes, seed=7, scale=0.3)
    attngan.load_generator(generator, dict(state, **{"h_net1.fc.1.num_batches_tracked": np.array(3)}), "G.npz")
    rng = np.random.default_rng(8)
    z, sentence, epsilon = (rng.standard_normal((2, n)).astype(np.float32) for n in (5, 7, 6))
    words = rng.standard_normal((2, 3, 7)).astype(np.float32)
    _, _, mu, logvar = generator([z, sentence, words, np.ones((2, 3), bool), epsilon], training=False)
    # CA_NET: GLU(Linear(ē)) = [μ, log σ²]
    x = sentence @ state["ca_net.fc.weight"].T + state["ca_net.fc.bias"]
    gated = x[:, :12] * sigmoid(x[:, 12:])
    np.testing.assert_allclose(mu.numpy(), gated[:, :6], atol=1e-5)
    np.testing.assert_allclose(logvar.numpy(), gated[:, 6:], atol=1e-5)
    # INIT_STAGE_G.fc: Linear([c, z]) → BatchNorm1d (eval) → GLU → view (C, 4, 4)
    c = gated[:, :6] + np.exp(0.5 * gated[:, 6:]) * epsilon
    y = np.concatenate([c, z], axis=1) @ state["h_net1.fc.0.weight"].T
    bn = {k: state[f"h_net1.fc.1.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    y = (y - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) * bn["weight"] + bn["bias"]
    half = y.shape[1] // 2
    official_h = (y[:, :half] * sigmoid(y[:, half:])).reshape(2, 64, 4, 4)  # (B, C, 4, 4)
    h = stages_glu(generator, np.concatenate([c, z], axis=1))
    np.testing.assert_allclose(h, np.transpose(official_h, (0, 2, 3, 1)), atol=1e-5)


def stages_glu(generator, code):
    """Our stage-1 fc → BN → GLU → (B, 4, 4, C), as ``AttnGanGenerator.call`` computes it."""
    from chapters.ch2_stackgan.stages import glu

    h = glu(generator.fc_norm(generator.fc(code), training=False))
    return tf.reshape(h, [-1, 4, 4, generator.start_width]).numpy()


def test_generator_errors_say_which_settings_to_change(generator):
    state = random_state(g_net_shapes(4, 3, 2, 6, 5, 7))
    with pytest.raises(UserError, match=r"missing img_net3\.img\.0\.weight"):
        attngan.load_generator(generator, {k: v for k, v in state.items() if k != "img_net3.img.0.weight"}, "G.pth")
    with pytest.raises(UserError, match=r"unexpected h_net2\.residual\.2\.block\.0\.weight"):
        attngan.load_generator(generator, dict(state, **{"h_net2.residual.2.block.0.weight": np.zeros((16, 8, 3, 3))}),
                               "G.pth")
    config = dict(profiles.PROFILES["paper"], dataset="birds")
    coco = attngan.checkpoint_configuration(shaped(g_net_shapes(48, residual=3)), "coco_AttnGAN2.pth")
    with pytest.raises(UserError, match="generator_width 32 \\(the file: 48\\).*use DATASET=coco"):
        attngan.check_configuration(coco, config, "coco_AttnGAN2.pth", 256)
    with pytest.raises(UserError, match="PROFILE=paper"):
        attngan.check_configuration(coco, dict(profiles.PROFILES["course"], dataset="birds"), "G.pth", 256)
    with pytest.raises(UserError, match="is not an AttnGAN generator"):
        attngan.checkpoint_configuration({"encoder.weight": np.zeros((2, 2))}, "text_encoder200.pth")
    assert parameters(g_net_shapes(4, 3, 2, 6, 5, 7)) == sum(int(np.prod(v.shape)) for v in generator.trainable_variables)


# ----------------------------------------------------------------------------- against PyTorch (where installed)
def torch_modules():
    """The official networks, written from the architecture in PyTorch (state-dict names as in the releases)."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class Glu(nn.Module):
        def forward(self, x):
            half = x.size(1) // 2
            return x[:, :half] * torch.sigmoid(x[:, half:])

    class TextEncoder(nn.Module):  # RNN_ENCODER, eval mode
        def __init__(self, words, embedding, hidden):
            super().__init__()
            self.encoder = nn.Embedding(words, embedding)
            self.rnn = nn.LSTM(embedding, hidden, 1, batch_first=True, bidirectional=True)

        def forward(self, ids, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(self.encoder(ids), lengths, batch_first=True, enforce_sorted=False)
            output, (hidden, _) = self.rnn(packed)
            words = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=ids.shape[1])[0]
            return words, hidden.transpose(0, 1).reshape(ids.shape[0], -1)

    strided = {"Conv2d_1a_3x3", "Mixed_6a.branch3x3", "Mixed_6a.branch3x3dbl_3", "Mixed_7a.branch3x3_2",
               "Mixed_7a.branch7x7x3_4"}
    unpadded = strided | {"Conv2d_2a_3x3", "Conv2d_4a_3x3"}

    class Unit(nn.Module):  # torchvision BasicConv2d
        def __init__(self, name, cin, cout, kernel):
            super().__init__()
            padding = 0 if name in unpadded else (kernel[0] // 2, kernel[1] // 2)
            self.conv = nn.Conv2d(cin, cout, kernel, 2 if name in strided else 1, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class Mixed(nn.Module):
        """One Inception block: named branches (each a chain of units), joined in torchvision's order."""

        def __init__(self, block, chains):
            super().__init__()
            for name, cin, cout, kernel in inception_units():
                if name.startswith(block + "."):
                    self.add_module(name[len(block) + 1:], Unit(name, cin, cout, kernel))
            self.chains = chains

        def forward(self, x):
            outputs = []
            for chain in self.chains:
                if chain == "pool":
                    outputs.append(F.max_pool2d(x, 3, 2))
                    continue
                y = x
                if chain[0] == "branch_pool":
                    y = F.avg_pool2d(x, 3, 1, 1)  # count_include_pad=True: torchvision's default
                for step in chain:
                    if isinstance(step, tuple):  # a split: concatenate both units applied to y
                        y = torch.cat([getattr(self, name)(y) for name in step], 1)
                    else:
                        y = getattr(self, step)(y)
                outputs.append(y)
            return torch.cat(outputs, 1)

    def mixed(name):
        if name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            chains = [["branch1x1"], ["branch5x5_1", "branch5x5_2"],
                      ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], ["branch_pool"]]
        elif name == "Mixed_6a":
            chains = [["branch3x3"], ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], "pool"]
        elif name == "Mixed_7a":
            chains = [["branch3x3_1", "branch3x3_2"],
                      ["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"], "pool"]
        elif name.startswith("Mixed_6"):
            chains = [["branch1x1"], ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
                      ["branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"],
                      ["branch_pool"]]
        else:
            chains = [["branch1x1"], ["branch3x3_1", ("branch3x3_2a", "branch3x3_2b")],
                      ["branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")], ["branch_pool"]]
        return Mixed(name, chains)

    class ImageEncoder(nn.Module):  # CNN_ENCODER
        def __init__(self, width, align_corners):
            super().__init__()
            self.align_corners = align_corners
            for name, cin, cout, kernel in inception_units()[:5]:
                self.add_module(name, Unit(name, cin, cout, kernel))
            self.blocks = [f"Mixed_{n}" for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
            for name in self.blocks:
                self.add_module(name, mixed(name))
            self.emb_features = nn.Conv2d(768, width, 1, bias=False)
            self.emb_cnn_code = nn.Linear(2048, width)

        def forward(self, x):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=self.align_corners)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
            x = F.max_pool2d(x, 3, 2)
            for name in self.blocks:
                x = getattr(self, name)(x)
                if name == "Mixed_6e":
                    features = x
            code = self.emb_cnn_code(F.avg_pool2d(x, 8).flatten(1))
            return self.emb_features(features), code

    def up_block(cin, cout):
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, 2 * cout, 3, 1, 1, bias=False),
                             nn.BatchNorm2d(2 * cout), Glu())

    class ResBlock(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * channels),
                                       Glu(), nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

        def forward(self, x):
            return x + self.block(x)

    class Attention(nn.Module):  # GlobalAttentionGeneral, with the official mask tiling
        def __init__(self, ngf, text):
            super().__init__()
            self.conv_context = nn.Conv2d(text, ngf, 1, bias=False)

        def forward(self, h, words, padding):
            batch, channels, height, width = h.shape
            queries = h.view(batch, channels, -1).transpose(1, 2)              # (B, HW, C)
            keys = self.conv_context(words.unsqueeze(3)).squeeze(3)           # (B, C, T)
            scores = torch.bmm(queries, keys).view(batch * height * width, -1)
            scores = scores.masked_fill(padding.repeat(height * width, 1), -float("inf"))  # official tiling
            attention = torch.softmax(scores, 1).view(batch, height * width, -1).transpose(1, 2)
            return torch.bmm(keys, attention).view(batch, -1, height, width)

    class Generator(nn.Module):  # G_NET
        def __init__(self, ngf, stages, residual, condition, noise, text):
            super().__init__()
            self.ca_net = nn.Module()
            self.ca_net.fc = nn.Linear(text, 4 * condition)
            self.h_net1 = nn.Module()
            top = 16 * ngf
            self.h_net1.fc = nn.Sequential(nn.Linear(condition + noise, top * 32, bias=False), nn.BatchNorm1d(top * 32), Glu())
            for i in range(1, 5):
                setattr(self.h_net1, f"upsample{i}", up_block(top // 2 ** (i - 1), top // 2**i))
            for k in range(2, stages + 1):
                stage = nn.Module()
                stage.att = Attention(ngf, text)
                stage.residual = nn.Sequential(*[ResBlock(2 * ngf) for _ in range(residual)])
                stage.upsample = up_block(2 * ngf, ngf)
                setattr(self, f"h_net{k}", stage)
            for k in range(1, stages + 1):
                head = nn.Module()
                head.img = nn.Sequential(nn.Conv2d(ngf, 3, 3, 1, 1, bias=False), nn.Tanh())
                setattr(self, f"img_net{k}", head)
            self.ngf, self.stages, self.condition = ngf, stages, condition

        def forward(self, z, sentence, words, padding, epsilon):
            x = Glu()(self.ca_net.fc(sentence))
            mu, logvar = x[:, :self.condition], x[:, self.condition:]
            c = mu + torch.exp(0.5 * logvar) * epsilon
            h = self.h_net1.fc(torch.cat([c, z], 1)).view(z.shape[0], 16 * self.ngf, 4, 4)
            for i in range(1, 5):
                h = getattr(self.h_net1, f"upsample{i}")(h)
            images = [self.img_net1.img(h)]
            for k in range(2, self.stages + 1):
                stage = getattr(self, f"h_net{k}")
                h = stage.upsample(stage.residual(torch.cat([h, stage.att(h, words, padding)], 1)))
                images.append(getattr(self, f"img_net{k}").img(h))
            return images, mu, logvar

    return torch, TextEncoder, ImageEncoder, Generator


def randomise_batch_norms(torch, network, seed):
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.running_mean.data = torch.randn(n, generator=generator) * 0.1
            module.running_var.data = torch.rand(n, generator=generator) + 0.5
        elif isinstance(module, torch.nn.Conv2d):
            module.weight.data *= 6**0.5  # He scale: activations stay O(1) through the Inception


def numpy_state(network):
    return {key: value.detach().numpy().copy() for key, value in network.state_dict().items()}


def report(name, ours, theirs):
    difference = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
    print(f"{name}: max |ours − PyTorch| = {difference:.2e} (max |value| {float(np.max(np.abs(theirs))):.2e})")
    return difference


def test_text_encoder_equals_pytorch():
    torch, TextEncoder, _, _ = torch_modules()
    torch.manual_seed(0)
    network = TextEncoder(50, 12, 16).eval()
    encoder = official.build_text_encoder(numpy_state(network), "text.pth")
    ids = np.array([[3, 7, 1, 9, 2, 8], [4, 10, 0, 0, 0, 0], [5, 11, 12, 13, 0, 0]], np.int64)
    lengths = np.array([6, 2, 4])
    with torch.no_grad():
        words, sentence = network(torch.from_numpy(ids), torch.from_numpy(lengths))
    ours_words, ours_sentence = encoder([ids.astype(np.int32), lengths.astype(np.int32)], training=False)
    assert report("text words", ours_words.numpy(), words.numpy()) < 1e-5
    assert report("text sentence", ours_sentence.numpy(), sentence.numpy()) < 1e-5


def test_resize_equals_pytorch_interpolate():
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(11).standard_normal((2, 64, 48, 3)).astype(np.float32)
    for align_corners in (False, True):
        theirs = torch.nn.functional.interpolate(torch.from_numpy(np.transpose(images, (0, 3, 1, 2))), size=(299, 299),
                                                 mode="bilinear", align_corners=align_corners).numpy()
        ours = damsm.resize_bilinear(images, 299, align_corners).numpy()
        assert report(f"resize (align_corners={align_corners})", ours, np.transpose(theirs, (0, 2, 3, 1))) < 1e-4


def test_image_encoder_equals_pytorch(align_corners=False):  # the other resize mode: the test above
    torch, _, ImageEncoder, _ = torch_modules()
    torch.manual_seed(1)
    network = ImageEncoder(16, align_corners).eval()
    randomise_batch_norms(torch, network, 1)
    encoder = official.build_image_encoder(numpy_state(network), "image.pth", align_corners)
    pixels = np.random.default_rng(9).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        regions, code = network(torch.from_numpy(np.transpose(pixels, (0, 3, 1, 2))))
    ours_regions, ours_code = encoder(pixels, training=False)
    scale = float(np.max(np.abs(code.numpy())))
    assert report(f"image regions (align_corners={align_corners})", ours_regions.numpy(),
                  np.transpose(regions.numpy(), (0, 2, 3, 1))) < 1e-4 * max(1.0, scale)
    assert report(f"image global (align_corners={align_corners})", ours_code.numpy(), code.numpy()) < 1e-4 * max(1.0, scale)


def test_generator_equals_pytorch_with_the_official_mask():
    torch, _, _, Generator = torch_modules()
    torch.manual_seed(2)
    network = Generator(4, 3, 2, 6, 5, 7).eval()
    randomise_batch_norms(torch, network, 2)
    ours = small_generator(faithful_mask_bug=True)
    attngan.load_generator(ours, numpy_state(network), "G.pth")
    rng = np.random.default_rng(10)
    z, sentence, epsilon = (rng.standard_normal((3, n)).astype(np.float32) for n in (5, 7, 6))
    words = rng.standard_normal((3, 4, 7)).astype(np.float32)
    real = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], bool)
    words *= real[..., None]  # padded word features are exact zeros (the text encoder's)
    with torch.no_grad():
        images, mu, _ = network(*(torch.from_numpy(a) for a in (z, sentence, np.transpose(words, (0, 2, 1)), ~real, epsilon)))
    ours_images, _, ours_mu, _ = ours([z, sentence, words, real, epsilon], training=False)
    assert report("G mu", ours_mu.numpy(), mu.numpy()) < 1e-5
    for size, a, b in zip((64, 128, 256), ours_images, images):
        assert report(f"G image {size} px", a.numpy(), np.transpose(b.numpy(), (0, 2, 3, 1))) < 1e-4
