"""Chapter 4's importers of DF-GAN's and RAT-GAN's released checkpoints (``chapters/ch4_dfgan_ratgan/official.py``).

Without torch: synthetic files in the official key names and shapes (the released nesting
``model.netG/netD/netC``, a DataParallel ``module.``, the ``.npz`` of the convert command): every key
consumed, and one sentence for a wrong file, a missing key, a wrong shape and the other model's file.
With torch (the optional extra; skipped cleanly without it): PyTorch modules of the official architecture,
written here from tobran/DF-GAN ``code/models/GAN.py`` (CVPR 2022), with random weights at 256², saved
with ``torch.save`` as the released file is (DF-GAN's in the pre-1.6, non-zip format); after the import
the Keras G images and D logits equal PyTorch's to 1e-5. The same for RAT-GAN's ``NetG`` and both ``NetD``
revisions, written from senmaoy/RAT-GAN ``code/model.py`` and ``code/DAMSM.py`` (``CustomLSTM``).
"""

import functools

import numpy as np
import pytest

from chapters.ch4_dfgan_ratgan import model, official
from chapters.ch4_dfgan_ratgan.torch_reference import dfgan_modules as official_dfgan_modules
from chapters.ch4_dfgan_ratgan.torch_reference import ratgan_modules as official_ratgan_modules
from conftest import dfgan_synthetic_release as synthetic_checkpoint, ratgan_synthetic_release
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


# ---------------------------------------------------------------------------------------------- RAT-GAN
@functools.lru_cache(maxsize=None)  # built once per head (eager RAT-GAN builds take seconds); loads overwrite all
def ratgan_networks(base_width=4, image_size=32, noise_dim=8, sentence_dim=6, units=5, head="attention"):
    import tensorflow as tf

    generator = model.RatGanGenerator(noise_dim, sentence_dim, base_width, image_size, units)
    discriminator = model.RatGanDiscriminator(base_width, image_size, sentence_dim, head)
    generator([tf.zeros((1, noise_dim)), tf.zeros((1, sentence_dim))])
    discriminator([tf.zeros((1, image_size, image_size, 3)), tf.zeros((1, sentence_dim))])
    return generator, discriminator


@pytest.mark.parametrize("head", ["attention", "plain"])
def test_every_ratgan_key_lands_and_the_revision_is_read_off_the_file(tmp_path, head):
    generator, discriminator = ratgan_networks(head=head)
    g_state, d_state = ratgan_synthetic_release(generator, discriminator)
    # A DataParallel prefix (main_coco.py trains on two GPUs) and the .npz of the convert command read the same.
    np.savez(tmp_path / "netG_500.npz", **{f"module.{key}": value for key, value in g_state.items()})
    from t2igan.torch_weights import read_state_dict

    loaded = read_state_dict(str(tmp_path / "netG_500.npz"))
    found = official.ratgan_configuration(loaded, d_state, "g", "d")
    assert found == dict(generator_width=4, noise_dim=8, controller_units=5, sentence_dim=6, image_size=32,
                         discriminator_width=4, discriminator_head=head)
    report = official.load_ratgan(generator, discriminator, loaded, d_state, str(tmp_path / "netG_500.npz"), "d")
    assert report["epoch"] == 500
    dead = report["unused_official_keys"]
    assert "block0.affine4.fc_gamma.linear1.weight" in dead and "block3.fea_ll.bias" in dead
    assert ("netD:block2.conv_r.0.weight" in dead) == (head == "attention")  # block5 of 256 px: unused in the paper D
    np.testing.assert_array_equal(generator.controller.kernel.numpy(), g_state["lstm.W"])  # x·W: no transpose
    np.testing.assert_array_equal(generator.h0.kernel.numpy(), g_state["lstm.noise2h.weight"].T)
    np.testing.assert_array_equal(generator.blocks[2].affines[3].beta_out.bias.numpy(),
                                  g_state["block2.affine3.fc_beta.linear2.bias"])
    assert float(generator.blocks[1].gate.numpy()) == pytest.approx(float(g_state["block1.gamma"][0]))
    # Every variable of both networks came from the files.
    used = {id(variable) for entries in (official.ratgan_generator_entries(generator)[0],
                                         official.ratgan_discriminator_entries(discriminator)[0])
            for _, variable, _ in entries}
    assert used == {id(v) for v in generator.weights} | {id(v) for v in discriminator.weights}


@pytest.mark.parametrize("mistake, message", [
    ("missing", r"g is not a RAT-GAN generator .*: missing block1.c2.bias\. Check"),
    ("shape", r"g is not a RAT-GAN generator .*wrong shapes: lstm.W \(5, 20\) \(expected \(6, 20\)\)"),
    ("copy", r"block3.lstm.U differs from lstm.U, but the official network shares one LSTM"),
    ("flowers", r"g is RAT-GAN's flowers model \(code/model_flower.py"),
    ("dfgan file", r"is DF-GAN's \(model.netG / netD / netC\), not RAT-GAN's: pass VARIANT=dfgan"),
    ("other model", r"g is not a RAT-GAN generator .*: it has no conv_img.1.weight"),
    ("head", r"g was trained with other settings than this run's: discriminator_head plain \(the run has attention\)"),
    ("discriminator key", r"d is not a RAT-GAN discriminator .*: missing COND_DNET.joint_conv_att.0.weight"),
])
def test_a_wrong_ratgan_file_is_one_sentence(tmp_path, mistake, message):
    from types import SimpleNamespace

    generator, discriminator = ratgan_networks(head="attention")
    g_state, d_state = ratgan_synthetic_release(generator, discriminator)
    config = dict(generator_width=4, noise_dim=8, controller_units=5, image_size=32, text_hidden=3,
                  discriminator_width=4, discriminator_head="attention")
    if mistake == "missing":
        del g_state["block1.c2.bias"]
    elif mistake == "shape":
        g_state["lstm.W"] = np.zeros((5, 20), np.float32)
    elif mistake == "copy":
        g_state["block3.lstm.U"] = g_state["lstm.U"] + 1.0
    elif mistake == "flowers":
        g_state["block2.affine5.fc_beta.linear2.weight"][0, 0] = 0.5
    elif mistake == "other model":
        g_state = {"h_net1.fc.0.weight": np.zeros((4, 4), np.float32)}
    elif mistake == "head":
        d_state = ratgan_synthetic_release(*ratgan_networks(head="plain"))[1]
    elif mistake == "discriminator key":
        del d_state["COND_DNET.joint_conv_att.0.weight"]
    with pytest.raises(UserError, match=message):
        if mistake == "dfgan file":
            np.savez(tmp_path / "state.npz", **synthetic_checkpoint(*networks()))
            official._read_release(SimpleNamespace(variant="ratgan", checkpoint=str(tmp_path / "state.npz"),
                                                   discriminator_checkpoint=None))
        elif mistake in ("other model", "head"):
            official.check_ratgan_configuration(official.ratgan_configuration(g_state, d_state, "g", "d"), config, "g")
        else:
            official.load_ratgan(generator, discriminator, g_state, d_state, "g", "d")


# ------------------------------------------------------------------------ against PyTorch (torch extra)
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
                          "netC": net_c.state_dict()}, "epoch": 1220}, tmp_path / "state_epoch_1220.pth",
               _use_new_zipfile_serialization=False)  # the pre-1.6 format (a pickle, not a zip) the older releases use
    assert not __import__("zipfile").is_zipfile(tmp_path / "state_epoch_1220.pth")

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


def our_iteration(generator, discriminator, images, sentence, noise, **gan_options) -> dict[str, float]:
    """OneStageGan's iteration from given sentences and noise, with the official Adam settings: the D terms
    of ``discriminator_step`` and the G loss after it, named as torch_reference's iterations return them."""
    import keras
    import tensorflow as tf

    text = keras.layers.Layer()  # never called: the sentences are given
    gan = model.OneStageGan(generator, discriminator, text, **gan_options)
    gan.compile(keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9, epsilon=1e-8),
                keras.optimizers.Adam(4e-4, beta_1=0.0, beta_2=0.9, epsilon=1e-8))
    gan.build_optimizers()
    fake = generator([noise, sentence], training=True)
    terms = gan.discriminator_step(tf.constant(images), tf.stop_gradient(fake), tf.constant(sentence))
    ours = {name: float(value) for name, value in terms.items() if name != "d_loss"}
    ours["g_loss"] = float(-tf.reduce_mean(discriminator([fake, sentence], training=True)))
    return ours


def test_one_dfgan_iteration_equals_the_official_pytorch_one(tmp_path):
    """torch_reference.dfgan_iteration (the iteration --benchmark_pytorch times) and our OneStageGan compute the
    same iteration: from the same weights, images, sentences and noise, the D terms before the D step
    (hinge on real, rolled mismatched and fake pairs; MA-GP) and the G loss after it agree."""
    torch = pytest.importorskip("torch")
    from chapters.ch4_dfgan_ratgan.torch_reference import dfgan_iteration, optimizers
    from t2igan.torch_weights import read_state_dict

    torch.manual_seed(0)
    net_g, net_d, net_c = official_dfgan_modules(torch, nf=4, nz=8, cond_dim=6, imsize=64)
    with torch.no_grad():  # every γ, β layer and D gate away from its init, the weights larger (a live MA-GP)
        for parameter in list(net_g.parameters()) + list(net_d.parameters()) + list(net_c.parameters()):
            if parameter.dim() <= 1:
                parameter.normal_(0.0, 0.2)
            else:
                parameter.mul_(2.2)
    torch.save({"model": {"netG": net_g.state_dict(), "netD": net_d.state_dict(), "netC": net_c.state_dict()},
                "epoch": 1}, tmp_path / "state_epoch_1.pth")
    generator, discriminator = networks(4, 64, 8, 6)
    official.load_dfgan(generator, discriminator, read_state_dict(str(tmp_path / "state_epoch_1.pth")), "f")

    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    sentence, noise = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)
    expected = dfgan_iteration(torch, (net_g, net_d, net_c), optimizers(torch, (net_g, net_d, net_c)),
                               torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(sentence),
                               torch.from_numpy(noise))

    ours = our_iteration(generator, discriminator, images, sentence, noise, mismatch="roll", penalty_step="joint")
    assert expected["gradient_penalty"] > 1e-4 and expected["d_real"] != expected["d_fake"]  # every term alive
    for name, value in expected.items():
        np.testing.assert_allclose(ours[name], value, rtol=2e-4, atol=1e-6, err_msg=name)


def trained_like_ratgan_modules(torch, head, scale=1.5):
    """The official RAT-GAN modules (256 px) with weights as after training: every γ, β layer, gate and LSTM
    weight away from its init, the never-called affine4/5 at their official init."""
    torch.manual_seed(0)
    net_g, net_d = official_ratgan_modules(torch, attention=head == "attention")
    with torch.no_grad():
        for name, parameter in list(net_g.named_parameters()) + list(net_d.named_parameters()):
            if ".affine4." in name or ".affine5." in name:
                continue  # never called: a birds file keeps them at init
            if parameter.dim() <= 1:
                parameter.normal_(0.0, 0.2)
            elif name.startswith("lstm.") and name.count(".") == 1:
                parameter.mul_(0.1)  # W, U: keep the gates away from saturation, where a test sees nothing
            else:
                parameter.mul_(scale)
        for module in net_g.modules():
            if hasattr(module, "affine4"):
                for affine in (module.affine4, module.affine5):
                    for mlp, bias in ((affine.fc_gamma, 1.0), (affine.fc_beta, 0.0)):
                        mlp.linear2.weight.zero_()
                        mlp.linear2.bias.fill_(bias)
    return net_g, net_d


@pytest.mark.parametrize("head", ["attention", "plain"])
def test_imported_ratgan_equals_the_official_pytorch_one_at_256(tmp_path, head):
    torch = pytest.importorskip("torch")
    net_g, net_d = trained_like_ratgan_modules(torch, head)
    # As main_coco.py writes them: netG from DataParallel (module.), in torch's current zip format.
    torch.save({f"module.{k}": v for k, v in net_g.state_dict().items()}, tmp_path / "netG_274.pth")
    torch.save(net_d.state_dict(), tmp_path / "netD_274.pth")

    from t2igan.torch_weights import read_state_dict

    g_state, d_state = read_state_dict(str(tmp_path / "netG_274.pth")), read_state_dict(str(tmp_path / "netD_274.pth"))
    assert "block6.lstm.W" in g_state  # the shared LSTM, written under every block
    found = official.ratgan_configuration(g_state, d_state, "g", "d")
    assert found == dict(generator_width=8, noise_dim=100, controller_units=256, sentence_dim=256, image_size=256,
                         discriminator_width=8, discriminator_head=head)
    generator, discriminator = ratgan_networks(8, 256, 100, 256, 256, head)
    report = official.load_ratgan(generator, discriminator, g_state, d_state, str(tmp_path / "netG_274.pth"), "d")
    assert report["epoch"] == 274

    rng = np.random.default_rng(1)
    noise, sentence = rng.standard_normal((2, 100)).astype(np.float32), rng.standard_normal((2, 256)).astype(np.float32)
    with torch.no_grad():
        expected = net_g(torch.from_numpy(noise), torch.from_numpy(sentence)).numpy().transpose(0, 2, 3, 1)
        images = torch.from_numpy(expected.transpose(0, 3, 1, 2).copy())
        expected_logits = net_d.COND_DNET(net_d(images), torch.from_numpy(sentence)).numpy().reshape(-1)
    ours = generator([noise, sentence]).numpy()
    assert expected.std() > 0.05 and np.abs(expected).max() < 0.999  # neither constant nor saturated
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    logits = discriminator([expected, sentence]).numpy()
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected_logits).max()))
    if head == "attention":
        _, attention_map = discriminator.logits(discriminator.features(expected), sentence, return_attention=True)
        np.testing.assert_allclose(attention_map.numpy(), net_d.COND_DNET.p.numpy()[:, 0], atol=1e-6)


def test_one_ratgan_iteration_equals_the_official_pytorch_one(tmp_path):
    """torch_reference.ratgan_iteration (the iteration --benchmark_pytorch times) and our OneStageGan with
    mismatch="shift", penalty_step="separate" compute the same iteration: the hinge terms before the first D
    step, the MA-GP from a fresh forward of the once-updated D, and the G loss after both D steps agree."""
    torch = pytest.importorskip("torch")
    from chapters.ch4_dfgan_ratgan.torch_reference import optimizers, ratgan_iteration
    from t2igan.torch_weights import read_state_dict

    net_g, net_d = trained_like_ratgan_modules(torch, "attention")
    torch.save(net_g.state_dict(), tmp_path / "netG_1.pth")
    torch.save(net_d.state_dict(), tmp_path / "netD_1.pth")
    generator, discriminator = ratgan_networks(8, 256, 100, 256, 256, "attention")
    official.load_ratgan(generator, discriminator, read_state_dict(str(tmp_path / "netG_1.pth")),
                         read_state_dict(str(tmp_path / "netD_1.pth")), str(tmp_path / "netG_1.pth"), "d")

    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (3, 256, 256, 3)).astype(np.float32)
    sentence, noise = rng.standard_normal((3, 256)).astype(np.float32), rng.standard_normal((3, 100)).astype(np.float32)
    expected = ratgan_iteration(torch, (net_g, net_d), optimizers(torch, (net_g, net_d)),
                                torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), torch.from_numpy(sentence),
                                torch.from_numpy(noise))

    ours = our_iteration(generator, discriminator, images, sentence, noise, mismatch="shift",
                         penalty_step="separate")
    assert expected["gradient_penalty"] > 1e-4 and expected["d_real"] != expected["d_fake"]  # every term alive
    for name, value in expected.items():
        # Two Adam steps make near-zero gradients unit steps, so float32 noise reaches the G loss: ~1e-5.
        # A second D step left out moves it by 2.4e-4 (planted once).
        np.testing.assert_allclose(ours[name], value, rtol=2e-4, atol=1e-6 if name != "g_loss" else 4e-5, err_msg=name)
