"""Chapter 4's importer of DF-GAN's released checkpoints (``chapters/ch4_dfgan_ratgan/official.py``).

Without torch: synthetic files in the official key names and shapes (the released nesting
``model.netG/netD/netC``, a DataParallel ``module.``, the ``.npz`` of the convert command): every key
consumed, and one sentence for a wrong file, a missing key, a wrong shape and the other model's file.
With torch (the optional extra; skipped cleanly without it): PyTorch modules of the official architecture,
written here from tobran/DF-GAN ``code/models/GAN.py`` (CVPR 2022), with random weights at 256², saved
with ``torch.save`` as the released file is; after the import the Keras G images and D logits equal
PyTorch's to 1e-5.
"""

import numpy as np
import pytest

from chapters.ch4_dfgan_ratgan import model, official
from conftest import dfgan_synthetic_release as synthetic_checkpoint
from t2igan.errors import UserError


def networks(base_width=4, image_size=64, noise_dim=8, sentence_dim=6):  # 64 px: a block of equal widths
    import tensorflow as tf

    generator = model.DfGanGenerator(noise_dim, sentence_dim, base_width, image_size)
    discriminator = model.DfGanDiscriminator(base_width, image_size, sentence_dim)
    generator([tf.zeros((1, noise_dim)), tf.zeros((1, sentence_dim))])
    discriminator([tf.zeros((1, image_size, image_size, 3)), tf.zeros((1, sentence_dim))])
    return generator, discriminator


def test_every_key_lands_and_the_file_sizes_are_read_off_its_shapes(tmp_path):
    generator, discriminator = networks()
    state = synthetic_checkpoint(generator, discriminator)
    # DataParallel prefixes inside a part, and the .npz of the convert command, read the same.
    state = {key.replace("model.netD.", "model.netD.module."): value for key, value in state.items()}
    np.savez(tmp_path / "state_epoch_600.npz", **state)
    from t2igan.torch_weights import read_state_dict

    loaded = read_state_dict(str(tmp_path / "state_epoch_600.npz"))
    parts = official.split_checkpoint(loaded, "f")
    assert official.checkpoint_configuration(parts, "f") == dict(generator_width=4, discriminator_width=4, noise_dim=8,
                                                                 sentence_dim=6, image_size=64)
    report = official.load_dfgan(generator, discriminator, loaded, "f")
    assert report["epoch"] == 600 and report["unused_official_keys"]  # conv_s of equal-width blocks
    fc = state["model.netG.fc.weight"]
    np.testing.assert_array_equal(generator.fc.kernel.numpy(), fc.T)
    gate = state["model.netD.module.DBlocks.0.gamma"]
    assert float(discriminator.blocks[0].gate.numpy()) == pytest.approx(float(gate[0]))
    affine = generator.blocks[1].affines[3]  # fuse2.affine1 of the second block
    np.testing.assert_array_equal(affine.beta_out.bias.numpy(),
                                  state["model.netG.GBlocks.1.fuse2.affine1.fc_beta.linear2.bias"])
    # Every variable of both networks came from the file (none keeps its initial value).
    used = {id(variable) for entries in (official.generator_entries(generator), *official.discriminator_entries(discriminator)[:2])
            for _, variable, _ in entries}
    assert used == {id(v) for v in generator.weights} | {id(v) for v in discriminator.weights}


@pytest.mark.parametrize("mistake, message", [
    ("missing", r"\(model.netG\) is not a DF-GAN checkpoint .*: missing GBlocks.0.c1.bias\. Check that the run's settings"),
    ("shape", r"wrong shapes: to_rgb.1.weight \(3, 4, 5, 5\) \(expected \(3, 4, 3, 3\)\)"),
    ("other model", r"is not a DF-GAN checkpoint .* it has no model.netG, model.netD, model.netC"),
    ("sizes", r"was trained with other sizes than this run's: image_size 64 \(the run has 32\)"),
])
def test_a_wrong_file_is_one_sentence(mistake, message):
    generator, discriminator = networks()
    state = synthetic_checkpoint(generator, discriminator)
    if mistake == "missing":
        del state["model.netG.GBlocks.0.c1.bias"]
    elif mistake == "shape":
        state["model.netG.to_rgb.1.weight"] = np.zeros((3, 4, 5, 5), np.float32)
    elif mistake == "other model":
        state = {"h_net1.fc.0.weight": np.zeros((4, 4), np.float32)}  # an AttnGAN G_NET
    with pytest.raises(UserError, match=message):
        if mistake == "sizes":
            found = official.checkpoint_configuration(official.split_checkpoint(state, "f"), "f")
            official.check_configuration(found, dict(generator_width=4, discriminator_width=4, noise_dim=8,
                                                     image_size=32, text_hidden=3), "f")
        else:
            official.load_dfgan(generator, discriminator, state, "f")


# ------------------------------------------------------------------------ against PyTorch (torch extra)
def official_dfgan_modules(torch, nf=32, nz=100, cond_dim=256, imsize=256):
    """DF-GAN's NetG, NetD and NetC (CVPR 2022 code), written from its code/models/GAN.py."""
    nn, F = torch.nn, torch.nn.functional

    def widths(size):
        count = int(np.log2(size)) - 1
        return [nf * min(2**i, 8) for i in range(count)]

    class Affine(nn.Module):
        def __init__(self, condition, channels):
            super().__init__()
            self.fc_gamma = nn.Sequential()
            self.fc_gamma.add_module("linear1", nn.Linear(condition, channels))
            self.fc_gamma.add_module("relu1", nn.ReLU())
            self.fc_gamma.add_module("linear2", nn.Linear(channels, channels))
            self.fc_beta = nn.Sequential()
            self.fc_beta.add_module("linear1", nn.Linear(condition, channels))
            self.fc_beta.add_module("relu1", nn.ReLU())
            self.fc_beta.add_module("linear2", nn.Linear(channels, channels))

        def forward(self, x, y):
            return self.fc_gamma(y)[:, :, None, None] * x + self.fc_beta(y)[:, :, None, None]

    class Fuse(nn.Module):  # DFBLK
        def __init__(self, condition, channels):
            super().__init__()
            self.affine0, self.affine1 = Affine(condition, channels), Affine(condition, channels)

        def forward(self, x, y):
            return F.leaky_relu(self.affine1(F.leaky_relu(self.affine0(x, y), 0.2), y), 0.2)

    class GBlock(nn.Module):
        def __init__(self, condition, fin, fout):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(fin, fout, 3, 1, 1), nn.Conv2d(fout, fout, 3, 1, 1)
            self.fuse1, self.fuse2 = Fuse(condition, fin), Fuse(condition, fout)
            self.c_sc = nn.Conv2d(fin, fout, 1) if fin != fout else None

        def forward(self, x, y):
            x = F.interpolate(x, scale_factor=2)
            shortcut = x if self.c_sc is None else self.c_sc(x)
            return shortcut + self.c2(self.fuse2(self.c1(self.fuse1(x, y)), y))

    class NetG(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(nz, nf * 8 * 4 * 4)
            channels = widths(imsize)[::-1]
            self.GBlocks = nn.ModuleList([GBlock(cond_dim + nz, a, b) for a, b in zip(channels, channels[1:])])
            self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(channels[-1], 3, 3, 1, 1), nn.Tanh())

        def forward(self, noise, sentence):
            out = self.fc(noise).view(noise.size(0), 8 * nf, 4, 4)
            condition = torch.cat((noise, sentence), 1)
            for block in self.GBlocks:
                out = block(out, condition)
            return self.to_rgb(out)

    class DBlock(nn.Module):
        def __init__(self, fin, fout):
            super().__init__()
            self.conv_r = nn.Sequential(nn.Conv2d(fin, fout, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                                        nn.Conv2d(fout, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2))
            self.conv_s = nn.Conv2d(fin, fout, 1)  # built for every block, used where fin ≠ fout
            self.gamma = nn.Parameter(torch.zeros(1))
            self.learned = fin != fout

        def forward(self, x):
            residual = self.conv_r(x)
            x = self.conv_s(x) if self.learned else x
            return F.avg_pool2d(x, 2) + self.gamma * residual

    class NetD(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_img = nn.Conv2d(3, nf, 3, 1, 1)
            channels = widths(imsize)
            self.DBlocks = nn.ModuleList([DBlock(a, b) for a, b in zip(channels, channels[1:])])

        def forward(self, x):
            out = self.conv_img(x)
            for block in self.DBlocks:
                out = block(out)
            return out

    class NetC(nn.Module):
        def __init__(self):
            super().__init__()
            self.joint_conv = nn.Sequential(nn.Conv2d(nf * 8 + cond_dim, nf * 2, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                            nn.Conv2d(nf * 2, 1, 4, 1, 0, bias=False))

        def forward(self, out, y):
            return self.joint_conv(torch.cat((out, y[:, :, None, None].repeat(1, 1, 4, 4)), 1))

    return NetG(), NetD(), NetC()


def test_imported_networks_equal_the_official_pytorch_ones_at_256(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net_g, net_d, net_c = official_dfgan_modules(torch)
    with torch.no_grad():  # the released weights are not at their init: every γ, β layer and D gate random
        for parameter in list(net_g.parameters()) + list(net_d.parameters()) + list(net_c.parameters()):
            if parameter.dim() <= 1:
                parameter.normal_(0.0, 0.2)
            else:
                parameter.mul_(1.5)
    torch.save({"model": {"netG": net_g.state_dict(), "netD": {f"module.{k}": v for k, v in net_d.state_dict().items()},
                          "netC": net_c.state_dict()}, "epoch": 1220}, tmp_path / "state_epoch_1220.pth")

    from t2igan.torch_weights import read_state_dict

    state = read_state_dict(str(tmp_path / "state_epoch_1220.pth"))
    found = official.checkpoint_configuration(official.split_checkpoint(state, "f"), "f")
    assert found == dict(generator_width=32, discriminator_width=32, noise_dim=100, sentence_dim=256, image_size=256)
    generator, discriminator = networks(32, 256, 100, 256)
    assert official.load_dfgan(generator, discriminator, state, "f")["epoch"] == 1220

    rng = np.random.default_rng(1)
    noise, sentence = rng.standard_normal((2, 100)).astype(np.float32), rng.standard_normal((2, 256)).astype(np.float32)
    with torch.no_grad():
        expected = net_g(torch.from_numpy(noise), torch.from_numpy(sentence)).numpy().transpose(0, 2, 3, 1)
        images = torch.from_numpy(expected.transpose(0, 3, 1, 2).copy())
        expected_logits = net_c(net_d(images), torch.from_numpy(sentence)).numpy().reshape(-1)
    ours = generator([noise, sentence]).numpy()
    assert expected.std() > 0.05  # not a saturated or constant picture
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    logits = discriminator([expected, sentence]).numpy()
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected_logits).max()))
