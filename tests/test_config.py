"""Profiles, overrides and the run folder: the errors users meet first."""

import json

import numpy as np
import pytest

from t2igan.config import resolve_config
from t2igan.errors import UserError
from t2igan.training.run import Checkpointer, NonFiniteLossError, RunDirectory

PROFILES = {"course": {"batch_size": 64, "learning_rate": 2e-4, "augment": True, "widths": [1, 2],
                       "datasets": {"shapes": {"augment": False}}}}


def test_profile_dataset_adjustments_and_typed_overrides():
    config = resolve_config(PROFILES, "course", "shapes-pairs", ["batch_size=32", "learning_rate=1", "widths=[3,4]"], 5)
    assert config["augment"] is False  # per-data-set adjustment for the shapes family
    assert config["batch_size"] == 32 and config["learning_rate"] == 1.0 and config["widths"] == [3, 4]
    assert config["epochs"] == 5 and config["profile"] == "course" and config["dataset"] == "shapes-pairs"
    assert resolve_config(PROFILES, "course", "birds", [], None)["augment"] is True


@pytest.mark.parametrize("override, message", [
    ("batch_size=big", "expected a int"),
    ("augment=1", "true or false"),
    ("colour=red", "no such setting"),
    ("batch_size", "key=value"),
])
def test_bad_overrides_name_the_setting(override, message):
    with pytest.raises(UserError, match=message):
        resolve_config(PROFILES, "course", "shapes", [override], None)


def test_unknown_profile_and_bad_epochs():
    with pytest.raises(UserError, match="Unknown PROFILE"):
        resolve_config(PROFILES, "huge", "shapes", [], None)
    with pytest.raises(UserError, match="epochs"):
        resolve_config(PROFILES, "course", "shapes", [], 0)


def test_run_folder_belongs_to_one_chapter_and_data_set(tmp_path):
    run = RunDirectory(str(tmp_path / "run"), "ch1_gan_int_cls")
    run.write_config({"dataset": "shapes", "image_size": 32, "profile": "course"})
    assert json.loads((tmp_path / "run" / "config.json").read_text())["chapter"] == "ch1_gan_int_cls"
    with pytest.raises(ValueError, match="dataset='shapes'"):
        run.write_config({"dataset": "birds", "image_size": 32, "profile": "course"})
    with pytest.raises(ValueError, match="belongs to 'ch1_gan_int_cls'"):
        RunDirectory(str(tmp_path / "run"), "ch2_stackgan").check_owner()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunDirectory(str(tmp_path / "broken"), "ch1_gan_int_cls").check_owner()


def test_checkpointer_never_saves_non_finite_weights(tmp_path):
    import tensorflow as tf

    weight = tf.Variable(np.ones(3, np.float32))
    checkpointer = Checkpointer(str(tmp_path), weight=weight)
    checkpointer.save(1, [weight])
    weight.assign([1.0, np.nan, 1.0])
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        checkpointer.save(2, [weight])
    assert checkpointer.manager.latest_checkpoint.endswith("ckpt-1")
    weight.assign([5.0, 5.0, 5.0])
    assert Checkpointer(str(tmp_path), weight=weight).restore() == 1
    np.testing.assert_array_equal(weight.numpy(), [1.0, 1.0, 1.0])


def test_checkpoints_keep_layers_held_in_lists_and_optimizer_state(tmp_path):
    """Keras 3 layers kept in Python lists are invisible to tf.train.Checkpoint's own tracking;
    a restored network must nevertheless reproduce the saved one's outputs exactly."""
    import keras
    import tensorflow as tf

    class Stack(keras.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [keras.layers.Dense(4), keras.layers.BatchNormalization(), keras.layers.Dense(2)]

        def call(self, x, training=False):
            for block in self.blocks:
                x = block(x, training=training)
            return x

    def build():
        network = Stack()
        network(tf.zeros((1, 3)))
        optimizer = keras.optimizers.Adam(0.1)
        optimizer.build(network.trainable_variables)
        return network, optimizer

    network, optimizer = build()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(network(tf.ones((2, 3)), training=True) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, network.trainable_variables), network.trainable_variables))
    Checkpointer(str(tmp_path), network=network, optimizer=optimizer).save(1, network.weights)

    restored, restored_optimizer = build()
    assert Checkpointer(str(tmp_path), network=restored, optimizer=restored_optimizer).restore() == 1
    inputs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(restored(inputs).numpy(), network(inputs).numpy())
    for saved, loaded in zip(optimizer.variables, restored_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved))
    only_network, _ = build()
    assert Checkpointer(str(tmp_path), network=only_network).restore() == 1  # partial restore (sampling)

    class Wider(Stack):
        def __init__(self):
            super().__init__()
            self.blocks[0] = keras.layers.Dense(8)

    wider = Wider()
    wider(tf.zeros((1, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        Checkpointer(str(tmp_path), network=wider).restore()


def test_run_folders_of_the_old_chapter_names_still_load(tmp_path):
    from t2igan.training.run import RunDirectory

    (tmp_path / "config.json").write_text(json.dumps({"chapter": "04_dfgan_ratgan", "dataset": "shapes"}))
    assert RunDirectory(str(tmp_path), "ch4_dfgan_ratgan").check_owner()["dataset"] == "shapes"
    with pytest.raises(ValueError, match="belongs to '04_dfgan_ratgan'"):
        RunDirectory(str(tmp_path), "ch3_attngan").check_owner()


def test_a_variant_applies_its_settings_except_what_the_user_set():
    config = resolve_config(PROFILES, "course", "shapes", ["batch_size=32"], None,
                            variant_settings={"batch_size": 64, "learning_rate": 0.5})
    assert config["batch_size"] == 32 and config["learning_rate"] == 0.5
    assert config.user_set == {"batch_size"}


def test_xla_is_on_where_a_course_run_was_measured_with_it():
    """``jit_compile`` (a shared setting, off; the GAN's step): on in chapter 4's course profile (both variants); off in its
    smoke and paper profiles, in chapter 5's DF-GAN course, which builds on it (its XLA run drew less shape),
    and in the other chapters."""
    from chapters.ch1_gan_int_cls.profiles import PROFILES as CHAPTER_1
    from chapters.ch3_attngan.profiles import PROFILES as CHAPTER_3
    from chapters.ch4_dfgan_ratgan.profiles import PROFILES as CHAPTER_4, VARIANTS
    from chapters.ch5_vlmgan.profiles import PROFILES as CHAPTER_5

    def compiled(profiles, profile, variant_settings=None):
        return resolve_config(profiles, profile, "shapes", [], None, variant_settings)["jit_compile"]

    assert all(compiled(CHAPTER_4, "course", VARIANTS["course"][variant]) for variant in ("ratgan", "dfgan"))
    assert not compiled(CHAPTER_5["dfgan"], "course") and not compiled(CHAPTER_5["attngan"], "course")
    assert not any(compiled(profiles, profile) for profiles in (CHAPTER_1, CHAPTER_3, CHAPTER_4, CHAPTER_5["dfgan"])
                   for profile in ("smoke", "paper"))
    assert not compiled(CHAPTER_1, "course") and not compiled(CHAPTER_3, "course")
    # The text encoders' pretraining is compiled nowhere: with XLA its step measured as fast (AVX2 CPU) or
    # 1.6–2.1× slower (AVX-512 CPU).
    assert not any(resolve_config(profiles, profile, "shapes", [], None)["pretrain_jit_compile"]
                   for profiles in (CHAPTER_1, CHAPTER_3, CHAPTER_4, CHAPTER_5["dfgan"], CHAPTER_5["attngan"])
                   for profile in ("smoke", "course", "paper"))


@pytest.mark.parametrize("profile, flag, compiled", [
    ("course", None, False), ("course", True, True), ("smoke", None, False), ("smoke", True, True),
    ("course", False, False),
])
def test_the_xla_flag_overrides_the_profile_and_compiles_the_step(tmp_path, profile, flag, compiled):
    """``--jit_compile`` / ``--nojit_compile`` (``options.jit_compile`` True / False; None when not given) override
    the profile's ``jit_compile``, and the GAN's train step is compiled (or not) as config.json says."""
    import types

    from chapters.ch1_gan_int_cls.__main__ import build_gan
    from chapters.ch1_gan_int_cls.profiles import PROFILES as CHAPTER_1
    from t2igan.training import harness

    options = types.SimpleNamespace(distribution="default", cpu_replicas=0, run_dir=str(tmp_path / "run"),
                                    dataset="shapes", profile=profile, set=["image_size=16", "generator_width=4",
                                                                            "discriminator_width=4"],
                                    epochs=None, seed=0, data_dir=None, metadata_dir=None, mixed_precision=False,
                                    jit_compile=flag)
    strategy, run, config = harness.start_training("ch1_gan_int_cls", options, CHAPTER_1)
    try:
        assert config["jit_compile"] is compiled
        gan, *_ = harness.build_for_training(strategy, run, config, lambda: build_gan(config), 1)
        assert bool(gan.jit_compile) is compiled
    finally:
        run.unlock()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_encoders_pretraining_compiles_its_steps_as_the_run_says(tmp_path, jit_compile):
    """``pretrain_encoders(jit_compile=…)``, which chapters 1, 3 and 5 pass the run's ``pretrain_jit_compile``
    (off in every profile; ``--jit_compile`` is the GAN's): the pretraining model's train and test steps are
    compiled with XLA, or not."""
    import keras
    import tensorflow as tf

    from t2igan.training.pretrain import pretrain_encoders

    class Matcher(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.dense.build((None, 2))
            self.mean = keras.metrics.Mean(name="loss")

        def train_step(self, batch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.dense(batch)))
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
            self.mean.update_state(loss)
            return {"loss": self.mean.result()}

    data = tf.data.Dataset.from_tensors(tf.ones((4, 2))).repeat()
    model, history, _ = pretrain_encoders(tf.distribute.get_strategy(), Matcher, lambda: keras.optimizers.SGD(0.1), data,
                                          None, epochs=1, steps_per_epoch=2, log_dir=str(tmp_path), verbose=0,
                                          jit_compile=jit_compile)
    assert bool(model.jit_compile) is jit_compile and len(history.history["loss"]) == 1


def test_xla_stays_off_for_several_replicas_on_cpus_and_says_so(caplog):
    """One XLA cluster cannot hold the variables of several CPU devices (``--cpu_replicas=2 --jit_compile`` failed
    with "Trying to access resource … located in device CPU:1 from device CPU:0"): the profile's default is turned
    off with a warning, an explicit ``--jit_compile`` is refused in one sentence; one replica keeps it."""
    import logging
    import types

    from t2igan.config import Config
    from t2igan.training.harness import _check_jit_compile

    two, one = types.SimpleNamespace(num_replicas_in_sync=2), types.SimpleNamespace(num_replicas_in_sync=1)
    config = Config(jit_compile=True)
    _check_jit_compile(config, one)
    assert config["jit_compile"] is True
    with caplog.at_level(logging.WARNING):
        _check_jit_compile(config, two)
    assert config["jit_compile"] is False and "XLA off" in caplog.text
    with pytest.raises(UserError, match="drop --jit_compile"):
        _check_jit_compile(Config(jit_compile=True, user_set=frozenset({"jit_compile"})), two)
    # The pretraining's own setting follows the same rule.
    config = Config(jit_compile=False, pretrain_jit_compile=True)
    _check_jit_compile(config, two)
    assert config["pretrain_jit_compile"] is False and "pretrain_jit_compile" in caplog.text
    with pytest.raises(UserError, match="drop --set=pretrain_jit_compile=true"):
        _check_jit_compile(Config(pretrain_jit_compile=True, user_set=frozenset({"pretrain_jit_compile"})), two)


@pytest.mark.parametrize("chapter", [1, 3, 5])
def test_each_chapters_encoder_pretraining_is_compiled_as_pretrain_jit_compile_says(tmp_path, monkeypatch, chapter):
    """Chapters 1 (char-CNN-RNN), 3 (DAMSM) and 5 (VLM) hand ``pretrain_jit_compile`` to ``pretrain_encoders``,
    not the GAN's ``jit_compile``: each is called with the two set opposite ways, up to the pretraining itself."""
    import types

    import numpy as np
    import tensorflow as tf

    import t2igan.training.pretrain
    from chapters.ch1_gan_int_cls import char_cnn_rnn
    from chapters.ch1_gan_int_cls.profiles import PROFILES as CHAPTER_1
    from chapters.ch3_attngan import damsm
    from chapters.ch3_attngan.profiles import PROFILES as CHAPTER_3
    from chapters.ch5_vlmgan import vlm
    from chapters.ch5_vlmgan.profiles import PROFILES as CHAPTER_5
    from t2igan.data import loaders

    class Reached(Exception):
        pass

    index = loaders.load_dataset("shapes", data_root=str(tmp_path / "data"), image_size=16, num_train=16, num_test=8,
                                 seed=3)
    strategy = tf.distribute.get_strategy()
    for pretrain_compiled in (True, False):
        seen = {}

        def pretrain_encoders(*args, jit_compile=False, **kwargs):
            seen["jit_compile"] = jit_compile
            raise Reached

        for module in (char_cnn_rnn, damsm, t2igan.training.pretrain):
            monkeypatch.setattr(module, "pretrain_encoders", pretrain_encoders)
        settings = [f"pretrain_jit_compile={str(pretrain_compiled).lower()}",
                    f"jit_compile={str(not pretrain_compiled).lower()}"]
        profiles = {1: CHAPTER_1, 3: CHAPTER_3, 5: CHAPTER_5["dfgan"]}[chapter]
        config = resolve_config(profiles, "smoke", "shapes", settings, None)
        config["seed"] = 0  # the command line sets it

        def images(split, size=config["image_size"]):
            return np.zeros((len(index.split(split)), size, size, 3), np.uint8)

        with pytest.raises(Reached):
            if chapter == 1:
                char_cnn_rnn.pretrain(strategy, str(tmp_path / "enc"), str(tmp_path / "logs"), config, index, images)
            elif chapter == 3:
                damsm.pretrain(strategy, str(tmp_path / "enc"), str(tmp_path / "logs"), config, index, images)
            else:
                run = types.SimpleNamespace(path=str(tmp_path / "run"), logs=str(tmp_path / "logs"))
                vocabulary = damsm.vocabulary(str(tmp_path / "enc"), index)
                vlm.pretrain_vlm(strategy, run, config, index, None, vocabulary, str(tmp_path / "data"))
        assert seen["jit_compile"] is pretrain_compiled
