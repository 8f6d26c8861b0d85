"""Chapter 2's importer of StackGAN++'s released birds generator (``chapters/ch2_stackgan/official.py``).

Without torch: synthetic files in the official key names and shapes (``G_NET`` of hanzhanggit/StackGAN-v2,
the DataParallel ``module.`` prefix the release has, the ``.npz`` of the convert command): every key consumed,
the fc's (C, 4, 4) view reproduced, and one sentence for a wrong file, a missing key, a wrong shape, other
sizes and another model's file (DF-GAN, AttnGAN). Reed's embeddings as StackGAN publishes them (a Python 2
pickle of numpy arrays) through the restricted unpickler, into the run's ``text_encoder`` folder, and sampling
a data set caption from it (a sentence of one's own refused, with the reason).
With torch (the optional extra; skipped cleanly without it): PyTorch modules of the official ``G_NET``, written
here from its ``code/model.py``, at the birds configuration (256², 21,239,696 parameters) with random weights
and BatchNorm statistics, saved as the release was (DataParallel, the pre-1.6 non-zip format, from a GPU):
after the import the Keras G's three images equal PyTorch's to 1e-5 in eval mode, with the same CA noise ε.
"""

import functools
import os
import pickle
import struct
import types

import numpy as np
import pytest

from chapters.ch2_stackgan import model, official, stages
from t2igan.errors import UserError


@functools.lru_cache(maxsize=2)  # built once per size (~3 s each): every test loads its own file into it
def tree(text_dim=12, noise_dim=6, condition_dim=4, base_width=4, stages_=3, residual_blocks=2):
    """A built TreeGenerator of the official layout (base 64 px: INIT_STAGE_G's four up-blocks), small widths."""
    import tensorflow as tf

    generator = model.TreeGenerator(text_dim, noise_dim, condition_dim, base_width, stages_, 64, residual_blocks)
    generator([tf.zeros((1, noise_dim)), tf.zeros((1, text_dim))])
    return generator


def synthetic_release(generator, seed=0, counters=False):
    """A released ``netG_*.pth``'s state dict for a built generator: the official keys with the ``module.`` of
    a DataParallel G_NET, random values of the official shapes (BatchNorm variances positive)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in official.expected_shapes(official.generator_entries(generator)).items():
        value = rng.standard_normal(shape).astype(np.float32)
        state[f"module.{key}"] = np.abs(value) + 0.5 if key.endswith("running_var") else value
        if counters and key.endswith("running_var"):  # PyTorch ≥ 0.4.1 adds one per BatchNorm
            state[f"module.{key[:-len('running_var')]}num_batches_tracked"] = np.asarray(7, np.int64)
    return state


def test_every_key_lands_and_the_sizes_are_read_off_the_shapes(tmp_path):
    generator = tree()
    state = synthetic_release(generator, counters=True)
    np.savez(tmp_path / "netG_210000.npz", **state)
    from t2igan.torch_weights import read_state_dict

    loaded = read_state_dict(str(tmp_path / "netG_210000.npz"))
    assert official.checkpoint_configuration(loaded, "f") == dict(
        text_dim=12, condition_dim=4, noise_dim=6, generator_width=4, stages=3, residual_blocks=2, base_size=64,
        image_size=256)
    official.load_generator(generator, loaded, "f")
    np.testing.assert_array_equal(generator.ca.fc.kernel.numpy(), state["module.ca_net.fc.weight"].T)
    np.testing.assert_array_equal(generator.joins[1].norm.moving_variance.numpy(),
                                  state["module.h_net3.jointConv.1.running_var"])
    np.testing.assert_array_equal(generator.residuals[0][1].conv.kernel.numpy(),
                                  state["module.h_net2.residual.1.block.3.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(generator.to_images[2].kernel.numpy(),
                                  state["module.img_net3.img.0.weight"].transpose(2, 3, 1, 0))
    # Every variable of the generator came from the file, and every key of the file went somewhere.
    entries = official.generator_entries(generator)
    assert {id(variable) for _, variable, _ in entries} == {id(v) for v in generator.weights}
    assert len(entries) == len(generator.weights) == len([k for k in state if "num_batches" not in k])


def test_the_first_stage_reads_the_fc_as_the_official_view(tmp_path):
    """[c, z] → Linear → BatchNorm1d (eval) → GLU → view(C, 4, 4), in NumPy from the file's own arrays, against
    our fc, fc_norm, GLU and (4, 4, C) reshape: the permutation of the fc's features is right."""
    import tensorflow as tf

    generator = tree()
    state = {key[len("module."):]: value for key, value in synthetic_release(generator, seed=3).items()}
    official.load_generator(generator, state, "f")
    rng = np.random.default_rng(4)
    joined = rng.standard_normal((2, 4 + 6)).astype(np.float32)  # [c, z]
    h = joined @ state["h_net1.fc.0.weight"].T
    h = ((h - state["h_net1.fc.1.running_mean"]) / np.sqrt(state["h_net1.fc.1.running_var"] + 1e-5)
         * state["h_net1.fc.1.weight"] + state["h_net1.fc.1.bias"])
    half = h.shape[1] // 2
    h = h[:, :half] / (1 + np.exp(-h[:, half:]))
    expected = h.reshape(2, generator.start_width, 4, 4).transpose(0, 2, 3, 1)
    ours = stages.glu(generator.fc_norm(generator.fc(tf.constant(joined)), training=False))
    np.testing.assert_allclose(tf.reshape(ours, [2, 4, 4, generator.start_width]).numpy(), expected, rtol=1e-4, atol=1e-5)


def _dfgan_keys():
    return {"model.netG.fc.weight": np.zeros((4, 4), np.float32), "model.netG.GBlocks.0.c1.weight": np.zeros((1,))}


def _attngan_keys(generator):
    state = {key[len("module."):]: value for key, value in synthetic_release(generator).items()}
    state["h_net2.att.conv_context.weight"] = np.zeros((4, 12, 1, 1), np.float32)
    return state


@pytest.mark.parametrize("mistake, message", [
    ("missing", r"^f is not StackGAN\+\+'s birds generator .*: missing h_net2\.residual\.0\.block\.4\.running_var\. "
                r"Check that the run's settings"),
    ("shape", r"wrong shapes: img_net1\.img\.0\.weight \(3, 4, 5, 5\) \(expected \(3, 4, 3, 3\)\)"),
    ("unexpected", r"unexpected h_net2\.residual\.2\.block\.0\.weight"),
    ("dfgan", r"^f is a DF-GAN checkpoint, not StackGAN\+\+'s .*: import it with make chapter4-import\.$"),
    ("attngan", r"^f is an AttnGAN generator \(it has h_net2\.att\.conv_context\.weight\), not .*make chapter3-import\.$"),
    ("unconditional", r"^f is an unconditional StackGAN\+\+ generator \(no ca_net"),
    ("empty", r"^f is not StackGAN\+\+'s .*: it has no ca_net\.fc\.weight, h_net1\.fc\.0\.weight, img_net1\.img\.0\.weight"),
    ("sizes", r"^f was built with other sizes than this run's: generator_width 4 \(the run has 64\), stages 3 \(the "
              r"run has 2\)\. Use PROFILE=paper DATASET=birds .* --set generator_width=4 --set stages=3\.$"),
])
def test_a_wrong_file_is_one_sentence(mistake, message):
    generator = tree()
    state = synthetic_release(generator)
    if mistake == "missing":
        del state["module.h_net2.residual.0.block.4.running_var"]
    elif mistake == "shape":
        state["module.img_net1.img.0.weight"] = np.zeros((3, 4, 5, 5), np.float32)
    elif mistake == "unexpected":
        state["module.h_net2.residual.2.block.0.weight"] = np.zeros((8, 4, 3, 3), np.float32)
    elif mistake == "dfgan":
        state = _dfgan_keys()
    elif mistake == "attngan":
        state = _attngan_keys(generator)
    elif mistake == "unconditional":
        del state["module.ca_net.fc.weight"], state["module.ca_net.fc.bias"]
    elif mistake == "empty":
        state = {}
    with pytest.raises(UserError, match=message):
        if mistake == "sizes":
            config = dict(text_dim=12, condition_dim=4, noise_dim=6, generator_width=64, stages=2, base_size=64,
                          image_size=256, residual_blocks=2)
            official.check_configuration(official.checkpoint_configuration(state, "f"), config, "f")
        else:
            official.load_generator(generator, state, "f")


def test_a_file_that_is_no_state_dict_is_one_sentence(tmp_path):
    from t2igan.torch_weights import read_state_dict

    (tmp_path / "netG_210000.npz").write_text("<html>Google Drive: virus scan warning</html>")
    with pytest.raises(UserError, match=r"netG_210000\.npz is not a weights \.npz of plain arrays .*convert the checkpoint"):
        read_state_dict(str(tmp_path / "netG_210000.npz"))


# ------------------------------------------------------------------ Reed's embeddings (StackGAN's pickle)
class _Example:
    """The fields of a data set example (``t2igan.data.records.Example``) that the importer reads."""

    def __init__(self, key, captions=("a caption",)):
        self.key, self.captions = key, list(captions)


class _Index:
    """The parts of a ``DatasetIndex`` that the importer reads."""

    def __init__(self, root, train, test):
        self.root, self.train, self.test = root, train, test

    def split(self, name):
        return self.train if name == "train" else self.test


def python2_pickle(arrays) -> bytes:
    """What Python 2.7's ``cPickle.dump(list_of_arrays, file, 2)`` writes for float32 arrays (numpy 1.x):
    ``numpy.core.multiarray._reconstruct``, a dtype from ``numpy.dtype('f4')`` and the raw data as a Python 2
    ``str`` (BINSTRING); memo opcodes left out."""
    def integer(n):
        return b"J" + struct.pack("<i", n)

    out = [b"\x80\x02](", ]
    for array in arrays:
        array = np.ascontiguousarray(array, "<f4")
        out += [b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n", integer(0), b"\x85U\x01b\x87R",
                b"(", integer(1), b"(", *[integer(d) for d in array.shape], b"t",
                b"cnumpy\ndtype\n", b"U\x02f4", integer(0), integer(1), b"\x87R",
                b"(", integer(3), b"U\x01<NNN", integer(-1), integer(-1), integer(0), b"tb",
                b"\x89T", struct.pack("<I", array.nbytes), array.tobytes(), b"tb"]
    return b"".join(out + [b"e."])


def test_reeds_embeddings_load_through_the_restricted_unpickler(tmp_path):
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((10, 16)).astype(np.float32) for _ in range(3)]
    data = python2_pickle(rows)
    np.testing.assert_array_equal(np.array(pickle.loads(data, encoding="latin1")), np.stack(rows))  # a real pickle
    path = tmp_path / "train" / official.EMBEDDINGS
    path.parent.mkdir()
    path.write_bytes(data)
    np.testing.assert_array_equal(official.read_embeddings(str(path)), np.stack(rows))
    path.write_bytes(pickle.dumps(np.stack(rows), protocol=2))  # one array, written by Python 3's numpy 2
    np.testing.assert_array_equal(official.read_embeddings(str(path)), np.stack(rows))

    class RunsACommand:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path.write_bytes(pickle.dumps([rows[0], RunsACommand()], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load the global 'posix\.system'"):
        official.read_embeddings(str(path))
    assert not (tmp_path / "pwned").exists()
    path.write_bytes(pickle.dumps([np.array([{"a": 1}], dtype=object)], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refused numpy dtype 'O"):
        official.read_embeddings(str(path))

    # Rows follow the filenames.pickle beside the embeddings; the data set's examples are looked up by key.
    path.write_bytes(data)
    with pytest.raises(UserError, match=r"needs the filenames\.pickle released with it beside it"):
        official.aligned_embeddings([_Example("b")], str(path), 16)
    (path.parent / "filenames.pickle").write_bytes(pickle.dumps(["a", "b", "c"], protocol=2))
    aligned = official.aligned_embeddings([_Example("c"), _Example("a")], str(path), 16)
    np.testing.assert_array_equal(aligned, np.stack([rows[2], rows[0]]))
    with pytest.raises(UserError, match=r"has no embeddings for 1 of the data set's images \(e\.g\. d\)"):
        official.aligned_embeddings([_Example("d")], str(path), 16)
    with pytest.raises(UserError, match=r"holds 16-d embeddings, the generator reads 1024-d ones"):
        official.aligned_embeddings([_Example("a")], str(path), 1024)


# ------------------------------------------------------------------ the run folder of an import
def test_the_text_folder_holds_reeds_embeddings_and_sampling_takes_the_data_sets_captions(tmp_path):
    """What an import writes in ``text_encoder``: Reed's rows in the data set's order, read back by chapter 1's
    ``run_embeddings`` as a pretrained run's; ``sample`` then draws a data set caption (matched by its words)
    and refuses a sentence of one's own with the reason."""
    from chapters.ch1_gan_int_cls import char_cnn_rnn

    rng = np.random.default_rng(5)
    rows = {"train": rng.standard_normal((3, 10, 16)), "test": rng.standard_normal((2, 10, 16))}
    names = {"train": ["001.Bird/a.jpg", "001.Bird/b.jpg", "002.Bird/c.jpg"], "test": ["003.Bird/d", "003.Bird/e"]}
    for split in ("train", "test"):
        folder = tmp_path / "stackgan-birds" / split
        folder.mkdir(parents=True)
        (folder / official.EMBEDDINGS).write_bytes(python2_pickle(rows[split]))
        (folder / "filenames.pickle").write_bytes(pickle.dumps(names[split], protocol=2))
    index = _Index(str(tmp_path / "birds"), [_Example("002.Bird/c"), _Example("001.Bird/a")],
                   [_Example("003.Bird/e", ["This bird is red,  with a SHORT beak.", "a second one"])])
    with pytest.raises(UserError, match=r"none of .*birds has train/char-CNN-RNN-embeddings\.pickle .*--embeddings=FOLDER"):
        official.find_embeddings([None, index.root])
    paths = official.find_embeddings([index.root, str(tmp_path / "stackgan-birds")])
    run = types.SimpleNamespace(path=str(tmp_path / "run"), text_encoder=str(tmp_path / "run" / "text_encoder"),
                                chapter="ch2_stackgan")
    official.write_text_folder(run.text_encoder, index, paths, 16)
    tables = char_cnn_rnn.run_embeddings(run, {"normalise_text_embeddings": False}, index, "data")
    np.testing.assert_array_equal(tables["train"].values, rows["train"][[2, 0]].astype(np.float32))
    np.testing.assert_array_equal(tables["test"].values, rows["test"][[1]].astype(np.float32))
    assert list(tables["test"].counts) == [2]

    (tmp_path / "run" / official.IMPORTED).write_text("{}")
    encode = official.caption_encoder(run, {})
    np.testing.assert_array_equal(encode("this bird is red with a short beak"), rows["test"][1, 0].astype(np.float32))
    np.testing.assert_array_equal(encode("A caption."), rows["train"][2, 0].astype(np.float32))
    with pytest.raises(UserError, match=r"^The imported StackGAN\+\+ reads Reed's char-CNN-RNN embeddings, made by his "
                                        r"Torch7 encoder, which this project does not run, .*'a purple bird' is none"):
        encode("a purple bird")
    with pytest.raises(UserError, match=r"holds an imported official model \(for sample and eval\)"):
        official.refuse_imported_run(run.path)


def test_import_refuses_v1_and_a_missing_file_before_writing(tmp_path):
    options = types.SimpleNamespace(variant="v1", checkpoint=str(tmp_path / "netG_210000.pth"), embeddings=None)
    with pytest.raises(UserError, match=r"^Only StackGAN\+\+'s released generator imports: leave VARIANT out"):
        official.import_run(None, options, str(tmp_path / "run"))
    options.variant, options.checkpoint = "v2", None
    with pytest.raises(UserError, match=r"^Pass the released file: --checkpoint=netG_210000\.pth"):
        official.import_run(None, options, str(tmp_path / "run"))
    options.checkpoint = str(tmp_path / "netG_210000.pth")
    with pytest.raises(FileNotFoundError, match=r"netG_210000\.pth does not exist\. The released birds generator .* "
                                                r"Google Drive downloads listed in https://github\.com/hanzhanggit"):
        official.import_run(None, options, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ against PyTorch (torch extra)
def official_g_net(torch, gf=64, ef=128, z_dim=100, t_dim=1024, r_num=2, branches=3):
    """StackGAN++'s ``G_NET`` (``code/model.py`` of hanzhanggit/StackGAN-v2; ``cfg`` → arguments). ``ca_net.eps``:
    the test's ε; the official ``reparametrize`` draws ``torch.FloatTensor(std.size()).normal_()`` itself."""
    nn = torch.nn

    class GLU(nn.Module):
        def forward(self, x):
            nc = x.size(1) // 2
            return x[:, :nc] * torch.sigmoid(x[:, nc:])

    def conv3x3(in_planes, out_planes):
        return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)

    def up_block(in_planes, out_planes):
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(in_planes, out_planes * 2),
                             nn.BatchNorm2d(out_planes * 2), GLU())

    def block3x3_relu(in_planes, out_planes):
        return nn.Sequential(conv3x3(in_planes, out_planes * 2), nn.BatchNorm2d(out_planes * 2), GLU())

    class ResBlock(nn.Module):
        def __init__(self, channel_num):
            super().__init__()
            self.block = nn.Sequential(conv3x3(channel_num, channel_num * 2), nn.BatchNorm2d(channel_num * 2), GLU(),
                                       conv3x3(channel_num, channel_num), nn.BatchNorm2d(channel_num))

        def forward(self, x):
            return self.block(x) + x

    class CA_NET(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(t_dim, ef * 4, bias=True)
            self.relu = GLU()
            self.eps = None

        def forward(self, text_embedding):
            x = self.relu(self.fc(text_embedding))
            mu, logvar = x[:, :ef], x[:, ef:]
            std = logvar.mul(0.5).exp_()
            eps = self.eps if self.eps is not None else torch.randn_like(std)
            return eps.mul(std).add_(mu), mu, logvar

    class INIT_STAGE_G(nn.Module):
        def __init__(self, ngf):
            super().__init__()
            self.gf_dim = ngf
            self.fc = nn.Sequential(nn.Linear(z_dim + ef, ngf * 4 * 4 * 2, bias=False), nn.BatchNorm1d(ngf * 4 * 4 * 2), GLU())
            self.upsample1 = up_block(ngf, ngf // 2)
            self.upsample2 = up_block(ngf // 2, ngf // 4)
            self.upsample3 = up_block(ngf // 4, ngf // 8)
            self.upsample4 = up_block(ngf // 8, ngf // 16)

        def forward(self, z_code, c_code):
            out_code = self.fc(torch.cat((c_code, z_code), 1)).view(-1, self.gf_dim, 4, 4)
            return self.upsample4(self.upsample3(self.upsample2(self.upsample1(out_code))))

    class NEXT_STAGE_G(nn.Module):
        def __init__(self, ngf):
            super().__init__()
            self.jointConv = block3x3_relu(ngf + ef, ngf)
            self.residual = nn.Sequential(*[ResBlock(ngf) for _ in range(r_num)])
            self.upsample = up_block(ngf, ngf // 2)

        def forward(self, h_code, c_code):
            s_size = h_code.size(2)
            c_code = c_code.view(-1, ef, 1, 1).repeat(1, 1, s_size, s_size)
            return self.upsample(self.residual(self.jointConv(torch.cat((c_code, h_code), 1))))

    class GET_IMAGE_G(nn.Module):
        def __init__(self, ngf):
            super().__init__()
            self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

        def forward(self, h_code):
            return self.img(h_code)

    class G_NET(nn.Module):
        def __init__(self):
            super().__init__()
            self.ca_net = CA_NET()
            self.h_net1, self.img_net1 = INIT_STAGE_G(gf * 16), GET_IMAGE_G(gf)
            if branches > 1:
                self.h_net2, self.img_net2 = NEXT_STAGE_G(gf), GET_IMAGE_G(gf // 2)
            if branches > 2:
                self.h_net3, self.img_net3 = NEXT_STAGE_G(gf // 2), GET_IMAGE_G(gf // 4)

        def forward(self, z_code, text_embedding):
            c_code, mu, logvar = self.ca_net(text_embedding)
            h_code = self.h_net1(z_code, c_code)
            images = [self.img_net1(h_code)]
            for k in range(2, branches + 1):
                h_code = getattr(self, f"h_net{k}")(h_code, c_code)
                images.append(getattr(self, f"img_net{k}")(h_code))
            return images, mu, logvar

    return G_NET()


def test_imported_generator_equals_the_official_pytorch_one_at_256(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import tensorflow as tf

    torch.manual_seed(0)
    net_g = official_g_net(torch)
    assert sum(p.numel() for p in net_g.parameters()) == 21_239_696  # the reference sheet's measured count
    with torch.no_grad():  # a trained file is not at its init: every BN γ, β and running statistic random
        for name, tensor in net_g.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_mean") or name.endswith("bias"):
                tensor.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.dim() == 1:
                tensor.normal_(1.0, 0.2)
            elif name.startswith("h_net1.fc") or name.startswith("ca_net"):
                tensor.mul_(3.0)
    net_g.eval()
    # Saved as the release was: a DataParallel state dict (module.…), PyTorch's pre-1.6 non-zip format, from a GPU.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save(torch.nn.DataParallel(net_g).state_dict(), tmp_path / "netG_210000.pth", _use_new_zipfile_serialization=False)
    monkeypatch.undo()
    assert (tmp_path / "netG_210000.pth").read_bytes()[:2] != b"PK"  # not a zip archive

    from t2igan.torch_weights import read_state_dict

    state = read_state_dict(str(tmp_path / "netG_210000.pth"))
    assert official.checkpoint_configuration(state, "f") == dict(
        text_dim=1024, condition_dim=128, noise_dim=100, generator_width=64, stages=3, residual_blocks=2,
        base_size=64, image_size=256)
    for module in (stages, model):  # the file overwrites every weight: skip the orthogonal init's QR (~20 s)
        monkeypatch.setattr(module, "orthogonal", tf.keras.initializers.Zeros)
    generator = tree(1024, 100, 128, 64, 3, 2)
    official.load_generator(generator, state, "f")

    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, 100)).astype(np.float32)
    text = rng.standard_normal((2, 1024)).astype(np.float32)
    epsilon = rng.standard_normal((2, 128)).astype(np.float32)  # the CA noise, the same for both
    net_g.ca_net.eps = torch.from_numpy(epsilon)
    with torch.no_grad():
        expected, mu, logvar = net_g(torch.from_numpy(noise), torch.from_numpy(text))
    ours, our_mu, our_logvar = generator([noise, text, epsilon], training=False)
    np.testing.assert_allclose(our_mu.numpy(), mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(our_logvar.numpy(), logvar.numpy(), atol=1e-5)
    for size, image, reference in zip((64, 128, 256), ours, expected):
        reference = reference.numpy().transpose(0, 2, 3, 1)
        assert image.shape == (2, size, size, 3)
        assert reference.std() > 0.1 and (np.abs(reference) < 0.95).mean() > 0.5  # neither flat nor saturated
        difference = np.abs(image.numpy() - reference).max()
        print(f"{size} px: max |Keras − PyTorch| = {difference:.2e} (PyTorch's pixels: std {reference.std():.2f})")
        assert difference <= 1e-5, size
