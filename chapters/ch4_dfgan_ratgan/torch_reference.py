"""DF-GAN's and RAT-GAN's networks and one training iteration in PyTorch, written from the official code (the
torch extra: ``pip install torch``). Two uses: the import tests check that a converted release computes what
these modules compute, and ``make chapter4-benchmark ARGS=--benchmark_pytorch`` times one iteration of each
beside ours, interleaved. Nothing here is needed to train, sample or evaluate.

The iterations follow the official training loops: DF-GAN (CVPR 2022, ``code/lib/modules.py``) one D step
with MA-GP inside; RAT-GAN (``code/main.py``) a D step on the hinge terms, then a second D step on MA-GP with a
fresh forward; both then a G step on the fake batch made before the D update, scored by the updated D.
"""

from __future__ import annotations

import numpy as np


def down_block(torch):
    """The discriminator's residual down block of both codes (DF-GAN's ``DBlock``, RAT-GAN's ``resD``): a 4×4
    stride-2 and a 3×3 conv, each with LReLU, gated by γ (0 at init), plus the average-pooled input through a
    1×1 conv where the width changes (the 1×1 conv is built for every block, as the official code does)."""
    nn, F = torch.nn, torch.nn.functional

    class DBlock(nn.Module):
        def __init__(self, fin, fout):
            super().__init__()
            self.conv_r = nn.Sequential(nn.Conv2d(fin, fout, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
                                        nn.Conv2d(fout, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2))
            self.conv_s = nn.Conv2d(fin, fout, 1)
            self.gamma = nn.Parameter(torch.zeros(1))
            self.learned = fin != fout

        def forward(self, x):
            return F.avg_pool2d(self.conv_s(x) if self.learned else x, 2) + self.gamma * self.conv_r(x)

    return DBlock


def dfgan_modules(torch, nf=32, nz=100, cond_dim=256, imsize=256):
    """DF-GAN's NetG, NetD and NetC (CVPR 2022 code), written from its code/models/GAN.py
    (the reference sheet's architecture): ``(netG, netD, netC)``."""
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

    class NetD(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_img = nn.Conv2d(3, nf, 3, 1, 1)
            channels = widths(imsize)
            DBlock = down_block(torch)
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


def ratgan_modules(torch, nf=8, nz=100, attention=True):
    """RAT-GAN's NetG (with the shared CustomLSTM) and NetD, written from senmaoy/RAT-GAN code/model.py and
    code/DAMSM.py: ``attention`` = the paper revision (D_GET_LOGITS_att, block5 built and not called), else
    the repository HEAD (D_GET_LOGITS after block5). 256 px, as the official classes are."""
    nn, F = torch.nn, torch.nn.functional

    class CustomLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.W, self.U = nn.Parameter(torch.rand(256, 1024) - 0.5), nn.Parameter(torch.rand(256, 1024) - 0.5)
            self.bias = nn.Parameter(torch.rand(1024) - 0.5)
            self.noise2h, self.noise2c = nn.Linear(nz, 256), nn.Linear(nz, 256)

        def init_hidden(self, noise):
            self.h_t, self.c_t = self.noise2h(noise), self.noise2c(noise)

        def forward(self, x):
            gates = x @ self.W + self.h_t @ self.U + self.bias
            i, f, g, o = gates.chunk(4, 1)
            self.c_t = torch.sigmoid(f) * self.c_t + torch.sigmoid(i) * torch.tanh(g)
            self.h_t = torch.sigmoid(o) * torch.tanh(self.c_t)
            return self.h_t, self.c_t

    class Affine(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.fc_gamma = nn.Sequential()
            self.fc_gamma.add_module("linear1", nn.Linear(256, 256))
            self.fc_gamma.add_module("relu1", nn.ReLU())
            self.fc_gamma.add_module("linear2", nn.Linear(256, channels))
            self.fc_beta = nn.Sequential()
            self.fc_beta.add_module("linear1", nn.Linear(256, 256))
            self.fc_beta.add_module("relu1", nn.ReLU())
            self.fc_beta.add_module("linear2", nn.Linear(256, channels))

        def forward(self, x, y):
            return self.fc_gamma(y)[:, :, None, None] * x + self.fc_beta(y)[:, :, None, None]

    class GBlock(nn.Module):
        def __init__(self, fin, fout, lstm):
            super().__init__()
            self.lstm = lstm
            self.c1, self.c2 = nn.Conv2d(fin, fout, 3, 1, 1), nn.Conv2d(fout, fout, 3, 1, 1)
            self.affine0, self.affine1, self.affine4 = Affine(fin), Affine(fin), Affine(fin)
            self.affine2, self.affine3, self.affine5 = Affine(fout), Affine(fout), Affine(fout)
            self.fea_l, self.fea_ll = nn.Linear(fin, 256), nn.Linear(fout, 256)
            self.gamma = nn.Parameter(torch.zeros(1))
            self.c_sc = nn.Conv2d(fin, fout, 1) if fin != fout else None

        def forward(self, x, sentence):
            h = x
            for k, affine in enumerate((self.affine0, self.affine1, self.affine2, self.affine3)):
                h = F.leaky_relu(affine(h, self.lstm(sentence)[0]), 0.2)
                if k == 1:
                    h = self.c1(h)
            return (x if self.c_sc is None else self.c_sc(x)) + self.gamma * self.c2(h)

    class NetG(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = CustomLSTM()
            self.fc = nn.Linear(nz, nf * 8 * 4 * 4)
            widths = [8, 8, 8, 8, 8, 4, 2, 1]
            for i in range(7):
                setattr(self, f"block{i}", GBlock(nf * widths[i], nf * widths[i + 1], self.lstm))
            self.conv_img = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(nf, 3, 3, 1, 1), nn.Tanh())

        def forward(self, noise, sentence):
            self.lstm.init_hidden(noise)
            out = self.fc(noise).view(noise.size(0), 8 * nf, 4, 4)
            for i in range(7):
                out = getattr(self, f"block{i}")(out if i == 0 else F.interpolate(out, scale_factor=2), sentence)
            return self.conv_img(out)

    ResD = down_block(torch)  # the same block as DF-GAN's DBlock (names too)

    class Logits(nn.Module):  # D_GET_LOGITS_att (paper) or D_GET_LOGITS (HEAD)
        def __init__(self):
            super().__init__()
            self.joint_conv = nn.Sequential(nn.Conv2d(nf * 16 + 256, nf * 2, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                            nn.Conv2d(nf * 2, 1, 4, 1, 0, bias=False))
            if attention:
                self.block = ResD(nf * 16 + 256, nf * 16)
                self.joint_conv_att = nn.Sequential(nn.Conv2d(nf * 16 + 256, nf * 2, 3, 1, 1, bias=False),
                                                    nn.LeakyReLU(0.2), nn.Conv2d(nf * 2, 1, 1, 1, 0, bias=False),
                                                    nn.Sigmoid())

        def forward(self, out, sentence):
            if attention:
                y = sentence.view(-1, 256, 1, 1).repeat(1, 1, 8, 8)
                p = torch.softmax(self.joint_conv_att(torch.cat((out, y), 1)).view(-1, 1, 64), 2).reshape(-1, 1, 8, 8)
                self.p = p
                out = self.block(torch.cat((out, y * p.repeat(1, 256, 1, 1)), 1))
            return self.joint_conv(torch.cat((out, sentence.view(-1, 256, 1, 1).repeat(1, 1, 4, 4)), 1))

    class NetD(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_img = nn.Conv2d(3, nf, 3, 1, 1)
            widths = [1, 2, 4, 8, 16, 16, 16]
            for i in range(6):
                setattr(self, f"block{i}", ResD(nf * widths[i], nf * widths[i + 1]))
            self.COND_DNET = Logits()

        def forward(self, x):
            out = self.conv_img(x)
            for i in range(5 if attention else 6):  # the paper revision never calls block5
                out = getattr(self, f"block{i}")(out)
            return out

    return NetG(), NetD()


def optimizers(torch, networks: tuple, learning_rate_generator: float = 1e-4, learning_rate_discriminator: float = 4e-4):
    """The official Adam optimizers, β = (0, 0.9): ``(G's, D's)`` (D's covers netC for DF-GAN)."""
    generator, *discriminator = networks
    d_parameters = [p for network in discriminator for p in network.parameters()]
    return (torch.optim.Adam(generator.parameters(), lr=learning_rate_generator, betas=(0.0, 0.9)),
            torch.optim.Adam(d_parameters, lr=learning_rate_discriminator, betas=(0.0, 0.9)))


def _ma_gp(torch, images, sentence, logits):
    """2 · mean(‖∇_(x, s) D(x, s)‖₂⁶), the norm of the concatenated per-example gradient (as both codes)."""
    gradients = torch.autograd.grad(outputs=logits, inputs=(images, sentence), grad_outputs=torch.ones_like(logits),
                                    retain_graph=True, create_graph=True, only_inputs=True)
    flat = torch.cat([g.reshape(g.size(0), -1) for g in gradients], dim=1)
    return 2.0 * torch.mean(torch.sqrt(torch.sum(flat ** 2, dim=1)) ** 6)


def dfgan_iteration(torch, networks, optimizer_pair, images, sentence, noise) -> dict[str, float]:
    """One DF-GAN (CVPR 2022) iteration: hinge on real / rolled mismatched / fake, + MA-GP, one D step; G step.
    Returns the D terms (before the D step) and the G loss (after it), named as our training logs."""
    relu = torch.nn.functional.relu
    net_g, net_d, net_c = networks
    optimizer_g, optimizer_d = optimizer_pair
    images, sentence = images.requires_grad_(), sentence.requires_grad_()
    real_features = net_d(images)
    real_logits = net_c(real_features, sentence)
    error_real = relu(1.0 - real_logits).mean()
    mismatched = torch.cat((real_features[1:], real_features[0:1]), dim=0)
    error_mismatch = relu(1.0 + net_c(mismatched, sentence)).mean()
    fake = net_g(noise, sentence)
    error_fake = relu(1.0 + net_c(net_d(fake.detach()), sentence)).mean()
    penalty = _ma_gp(torch, images, sentence, real_logits)
    error_d = error_real + (error_fake + error_mismatch) / 2.0 + penalty
    optimizer_d.zero_grad()
    error_d.backward()
    optimizer_d.step()
    error_g = -net_c(net_d(fake), sentence).mean()
    optimizer_g.zero_grad()
    error_g.backward()
    optimizer_g.step()
    return {name: float(value.detach()) for name, value in dict(
        d_real=error_real, d_fake=error_fake, d_mismatch=error_mismatch, gradient_penalty=penalty, g_loss=error_g).items()}


def ratgan_iteration(torch, networks, optimizer_pair, images, sentence, noise) -> dict[str, float]:
    """One RAT-GAN iteration (``main.py``): a hinge D step (mismatched: real[0:B−1] with s[1:B]), a second D step
    on MA-GP with a fresh forward of the updated D, then the G step. Returns the hinge terms (before the first
    D step), the MA-GP (between the two) and the G loss (after both), named as our training logs."""
    relu = torch.nn.functional.relu
    net_g, net_d = networks
    optimizer_g, optimizer_d = optimizer_pair
    batch = images.size(0)
    real_features = net_d(images)
    error_real = relu(1.0 - net_d.COND_DNET(real_features, sentence)).mean()
    error_mismatch = relu(1.0 + net_d.COND_DNET(real_features[:batch - 1], sentence[1:batch])).mean()
    fake = net_g(noise, sentence)
    error_fake = relu(1.0 + net_d.COND_DNET(net_d(fake.detach()), sentence)).mean()
    error_d = error_real + (error_fake + error_mismatch) / 2.0
    optimizer_d.zero_grad()
    optimizer_g.zero_grad()
    error_d.backward()
    optimizer_d.step()
    interpolated, sentence_inter = images.detach().requires_grad_(), sentence.detach().requires_grad_()
    penalty = _ma_gp(torch, interpolated, sentence_inter, net_d.COND_DNET(net_d(interpolated), sentence_inter))
    optimizer_d.zero_grad()
    optimizer_g.zero_grad()
    penalty.backward()
    optimizer_d.step()
    error_g = -net_d.COND_DNET(net_d(fake), sentence).mean()
    optimizer_g.zero_grad()
    optimizer_d.zero_grad()
    error_g.backward()
    optimizer_g.step()
    return {name: float(value.detach()) for name, value in dict(
        d_real=error_real, d_fake=error_fake, d_mismatch=error_mismatch, gradient_penalty=penalty, g_loss=error_g).items()}
