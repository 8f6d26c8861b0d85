"""User mistakes get one sentence naming the setting, flag or file and the fix, exit code 2, no traceback.

One table: each row makes the mistake through the function the command line calls, and checks the
message and that the command line treats it as a user error (exit 2); one row runs the real command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types

import pytest

from conftest import ROOT, time_limit
from t2igan import cli
from t2igan.config import resolve_config
from t2igan.training import harness
from t2igan.training.run import RunDirectory

PROFILES = {"course": dict(batch_size=8, epochs=2, image_size=32, steps_per_epoch=0, learning_rate_generator=2e-4,
                           ema_decay=0.0, text_rnn_width=16, damsm_small_widths=[8, 16], kl_weight=1.0)}


def resolve(*overrides):
    return resolve_config(PROFILES, "course", "shapes", list(overrides), None)


def file_in_the_way(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    RunDirectory(str(blocker), "ch1_gan_int_cls").lock()


def checkpoints_is_a_file(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("")
    RunDirectory(str(tmp_path / "run"), "ch1_gan_int_cls").create()


def set_on_sample(tmp_path):
    options = types.SimpleNamespace(run_dir=str(tmp_path), dataset="shapes", profile="course", set=["batch_size=4"],
                                    data_dir=None, metadata_dir=None, mixed_precision=False)
    harness.open_run("ch1_gan_int_cls", options)


def corrupt_pickle(tmp_path):
    from t2igan.data.safe_pickle import load_pickle

    (tmp_path / "captions.pickle").write_bytes(b"\x80\x04not a pickle at all")
    load_pickle(tmp_path / "captions.pickle")


def malicious_pickle(tmp_path):
    import pickle

    from t2igan.data.safe_pickle import load_pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (tmp_path / "captions.pickle").write_bytes(pickle.dumps(Exploit()))
    load_pickle(tmp_path / "captions.pickle")


def pickled_npz(tmp_path):
    import numpy as np

    from t2igan.torch_weights import read_state_dict

    np.savez(tmp_path / "weights.npz", kernel=np.array([object()], dtype=object))
    read_state_dict(str(tmp_path / "weights.npz"))


def crafted_config(content):
    def make_mistake(tmp_path):
        (tmp_path / "config.json").write_text(content)
        RunDirectory(str(tmp_path), "ch1_gan_int_cls").existing_config()
    return make_mistake


def open_crafted_run(tmp_path):
    (tmp_path / "config.json").write_text('{"chapter": "ch1_gan_int_cls"}')
    options = types.SimpleNamespace(run_dir=str(tmp_path), dataset="shapes", profile="smoke", set=[],
                                    data_dir=None, metadata_dir=None, mixed_precision=False)
    harness.open_run("ch1_gan_int_cls", options)


def sample_without_a_run(tmp_path):
    options = types.SimpleNamespace(run_dir=str(tmp_path / "none"), dataset="shapes", profile="smoke", set=[],
                                    data_dir=None, metadata_dir=None, mixed_precision=False)
    harness.open_run("ch1_gan_int_cls", options)


def custom_data(train="a\nb\n", test="c\n", classes=None, attributes=None):
    """A three-image custom data set with the given lists, loaded as ``train`` loads it."""
    def make_mistake(tmp_path):
        from PIL import Image

        from t2igan.data.loaders import load_dataset

        root = tmp_path / "custom"
        (root / "images").mkdir(parents=True)
        (root / "captions").mkdir()
        for key in "abc":
            Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "images" / f"{key}.png")
            (root / "captions" / f"{key}.txt").write_text(f"a red bird {key}\n")
        (root / "train.txt").write_text(train)
        (root / "test.txt").write_text(test)
        for name, content in (("classes.txt", classes), ("attributes.jsonl", attributes)):
            if content is not None:
                (root / name).write_text(content)
        load_dataset(str(root))
    return make_mistake


def chapter_networks(chapter, variant, setting):
    """A setting only the networks can refuse, checked as ``train`` checks it before any pretraining."""
    def make_mistake(tmp_path):
        if chapter == 4:
            from chapters.ch4_dfgan_ratgan.build import build_networks as check
            from chapters.ch4_dfgan_ratgan.profiles import PROFILES as profiles
            from chapters.ch4_dfgan_ratgan.profiles import VARIANTS
            config = resolve_config(profiles, "smoke", "shapes", [setting], None, VARIANTS["smoke"][variant])
            config["variant"] = variant
        else:
            from chapters.ch5_vlmgan.build import check_networks as check
            from chapters.ch5_vlmgan.profiles import PROFILES
            config = resolve_config(PROFILES[variant], "smoke", "shapes", [setting], None)
            config["vlm_variant"] = variant
        check(config)
    return make_mistake


CASES = [
    ("batch_size=0", lambda tmp: resolve("batch_size=0"), r"^batch_size=0: must be a whole number ≥ 1 \(set it with --set batch_size=…\)"),
    ("epochs=0", lambda tmp: resolve("epochs=0"), r"^epochs=0: must be a whole number ≥ 1"),
    ("a negative width", lambda tmp: resolve("text_rnn_width=-3"), r"^text_rnn_width=-3: must be a whole number ≥ 1"),
    ("an empty width list", lambda tmp: resolve("damsm_small_widths=[]"), r"^damsm_small_widths=\[\]: must be a non-empty list"),
    ("a learning rate of 0", lambda tmp: resolve("learning_rate_generator=0"), r"^learning_rate_generator=0.0: must be > 0"),
    ("an EMA decay of 1", lambda tmp: resolve("ema_decay=1"), r"^ema_decay=1.0: must be in \[0, 1\)"),
    ("a negative loss weight", lambda tmp: resolve("kl_weight=-1"), r"^kl_weight=-1.0: must be ≥ 0"),
    ("a typo in --set", lambda tmp: resolve("batch_sise=4"), r"^--set batch_sise: no such setting\. Did you mean batch_size\?$"),
    ("a key far from every setting", lambda tmp: resolve("colour=4"), r"^--set colour: no such setting\. This profile's settings: batch_size, "),
    ("a value of the wrong type", lambda tmp: resolve("batch_size=big"), r"^--set batch_size=big: expected a int like 8\."),
    ("a batch larger than the data set", lambda tmp: harness.steps_per_epoch(resolve(), 5, 8),
     r"^batch_size=8 is larger than the 5 training images of shapes, so an epoch has no step; use --set batch_size=5"),
    ("RUN_DIR is a file", file_in_the_way, r" is a file, not a folder, so the run folder .* cannot be made there: move the file"),
    ("RUN_DIR/checkpoints is a file", checkpoints_is_a_file, r"run/checkpoints is a file, not a folder"),
    ("--set on sample or eval", set_on_sample, r"^--set batch_size=4: settings belong to training; sample and eval use the run's config.json"),
    ("a corrupt pickle", corrupt_pickle, r"captions.pickle: not a readable pickle .*re-download it"),
    ("a malicious pickle", malicious_pickle, r"captions.pickle: .*refused"),
    ("an .npz with pickled objects", pickled_npz, r"weights.npz is not a weights .npz of plain arrays"),
    ("config.json holding a list", crafted_config("[1, 2]"), r"config.json is not a run's configuration \(it holds a list\)"),
    ("config.json without a chapter", crafted_config('{"dataset": "shapes"}'),
     r"config.json is not a run's configuration \(it lacks chapter\)"),
    ("config.json without the run's keys", open_crafted_run,
     r"config.json is not a trained run's configuration \(it lacks dataset, profile, seed\)"),
    ("an image size DF-GAN cannot build", chapter_networks(4, "dfgan", "image_size=24"),
     r"^image_size must be a power of two ≥ 8 \(256 in the papers\), not 24\.$"),
    ("MSB heads that do not divide its width", chapter_networks(5, "attngan", "msb_heads=3"),
     r"^MSB width 16 must be divisible by the number of heads 3\.$"),
    ("a key listed twice in train.txt", custom_data(train="a\nb\na\n"),
     r"custom/train.txt lists 1 key\(s\) more than once \('a'\): keep one line per key and remove the repeats\.$"),
    ("a key in both train.txt and test.txt", custom_data(train="a\nb\nc\n", test="c\n"),
     r"^1 key\(s\) are in both .*custom/train.txt and test.txt \('c'\): the test split must hold images the model "
     r"never trains on"),
    ("a key given two classes", custom_data(classes="a 1\nb 2\na 3\n"),
     r"custom/classes.txt gives a class to 1 key\(s\) more than once \('a'\)"),
    ("a key described twice", custom_data(attributes='{"key": "a"}\n{"key": "a"}\n'),
     r"custom/attributes.jsonl describes the key 'a' more than once"),
    ("the hint keeps DATASET and PROFILE", sample_without_a_run,
     r"Train first: make chapter1-train DATASET=shapes PROFILE=smoke RUN_DIR=.*none$"),
]


@pytest.mark.parametrize("name, make_mistake, message", CASES, ids=[case[0] for case in CASES])
def test_a_user_mistake_is_one_sentence_and_exit_2(name, make_mistake, message, tmp_path):
    with pytest.raises(Exception) as caught:
        make_mistake(tmp_path)
    assert re.search(message, str(caught.value)), str(caught.value)
    assert cli._is_user_error(caught.value)  # run_commands prints "error: <message>" and exits 2
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to read-only folders")
def test_a_read_only_run_folder_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    os.chmod(tmp_path / "run", 0o555)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            RunDirectory(str(tmp_path / "run"), "ch1_gan_int_cls").lock()
    finally:
        os.chmod(tmp_path / "run", 0o755)


def test_the_real_command_line_exits_2_without_a_traceback(tmp_path):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    finished = subprocess.run([sys.executable, "-m", "chapters.ch1_gan_int_cls", "train", "--profile=smoke",
                               "--set", "batch_size=0", f"--run_dir={tmp_path / 'run'}"], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=time_limit(60))
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert finished.stderr.strip().splitlines()[-1].startswith("error: batch_size=0: must be a whole number ≥ 1")
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "run" / "config.json").exists()  # refused before anything was written


def test_a_setting_the_networks_refuse_fails_before_any_pretraining(tmp_path):
    """Finding 3: chapter 5 pretrains the DAMSM and the VLM before it builds the GAN; a bad MSB or image size
    used to surface only after both (minutes on the course profile). Now the networks are built first."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    finished = subprocess.run([sys.executable, "-m", "chapters.ch5_vlmgan", "train", "--profile=smoke",
                               "--set", "msb_heads=3", f"--run_dir={tmp_path / 'run'}"], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=time_limit(60))
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert finished.stderr.strip().splitlines()[-1] == "error: MSB width 16 must be divisible by the number of heads 3."
    assert "Pretraining" not in finished.stderr and not (tmp_path / "run" / "text_encoder").exists()
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_variant_other_than_the_run_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"chapter": "ch4_dfgan_ratgan", "variant": "ratgan", "seed": 0, '
                                          '"dataset": "shapes", "profile": "course"}')
    options = types.SimpleNamespace(run_dir=str(tmp_path), dataset="shapes", profile="course", set=[], data_dir=None,
                                    metadata_dir=None, mixed_precision=False, variant="dfgan", given=frozenset({"variant"}))
    with pytest.raises(ValueError, match=r"holds a ratgan run, not dfgan: leave VARIANT out to use it as trained"):
        harness.open_run("ch4_dfgan_ratgan", options, variant_key="variant")
    options.given = frozenset()  # VARIANT not given: the run is used as trained
    assert harness.open_run("ch4_dfgan_ratgan", options, variant_key="variant")[1]["variant"] == "ratgan"


def test_make_refuses_a_misspelt_variable_and_passes_text_verbatim():
    # as a user types it, also when the suite itself runs under make (CI: make test)
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    make = ["make", "--no-print-directory", "-n", "chapter1-sample"]
    typo = subprocess.run([*make, "TXET=a blue star"], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert typo.returncode == 2 and "TXET: not a variable of this Makefile (a typo?)" in typo.stderr
    text = "a $HOME it's"
    dry = subprocess.run([*make, f"TEXT={text}"], cwd=ROOT, env=environment, capture_output=True, text=True)
    command = next(line for line in dry.stdout.splitlines() if "--text=" in line)
    assert "--text='a $HOME it'\\''s'" in command
    echoed = subprocess.run(["bash", "-c", "printf %s " + command.split("--text=", 1)[1].split(" --n=")[0]],
                            capture_output=True, text=True)
    assert echoed.stdout == text  # what the program receives


@pytest.mark.parametrize("raised, code, message", [
    ("OSError(errno.ENOSPC, 'No space left on device', 'runs/x/checkpoints/ckpt-3.index')", 2,
     r"^error: the disk is full \(\[Errno 28\] No space left on device: .*\)\. Free some space"),
    ("KeyboardInterrupt()", 130, r"^stopped \(Ctrl-C\) after 0 s\. The run folder keeps its last complete checkpoint"),
    ("NotImplementedError(\"TODO(student): task 'magp' (magp in model.py) is not written yet; replace this line.\")",
     2, r"^error: TODO\(student\): task 'magp' \(magp in model.py\) is not written yet"),
], ids=["a full disk", "Ctrl-C", "an assignment stub"])
def test_the_command_line_ends_these_with_a_sentence(raised, code, message):
    program = ("import errno\nfrom t2igan import cli\n"
               f"def train(options):\n    raise {raised}\n"
               "cli.run_commands({'train': train}, 'usage')\n")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    finished = subprocess.run([sys.executable, "-c", program, "train"], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=time_limit(30))
    assert finished.returncode == code, finished.stderr[-2000:]
    assert re.search(message, finished.stderr.strip().splitlines()[-1]), finished.stderr[-1000:]
    assert "Traceback" not in finished.stderr


def test_an_unfinished_checkpoint_save_is_removed(tmp_path):
    import tensorflow as tf

    from t2igan.training.run import Checkpointer

    (tmp_path / "ckpt-3_temp" / "part-0").mkdir(parents=True)
    checkpointer = Checkpointer(str(tmp_path), weights=tf.Variable(1.0))
    assert not (tmp_path / "ckpt-3_temp").exists() and checkpointer.restore() == 0


def test_tensorflow_notes_while_training_are_filtered_and_the_rest_passes_in_order():
    """Finding 8: "E0000 … oneDNN supports DT_BOOL only on platforms with AVX-512" came in every pretraining;
    the filter drops it (C++ writes to file descriptor 2 too) and keeps every other line, in order, up to
    the last one before exit, also under a Ctrl-C sent to the whole process group."""
    program = ("import os, signal, sys, time\nfrom t2igan.startup import quiet_tensorflow\nquiet_tensorflow()\n"
               "os.write(2, b'E0000 00:00:1 1 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. "
               "Falling back to the default Eigen-based implementation if present.\\n')\n"
               "print('first', file=sys.stderr, flush=True)\nos.write(2, b'second\\n')\n"
               "signal.signal(signal.SIGINT, lambda *_: print('stopped', file=sys.stderr))\n"
               "os.killpg(os.getpgrp(), signal.SIGINT)\ntime.sleep(0.5)\nprint('last', file=sys.stderr)\n"
               "raise SystemExit(2)\n")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    finished = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=environment, capture_output=True,
                              text=True, timeout=time_limit(60), start_new_session=True)
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == ["first", "second", "stopped", "last"], finished.stderr


def test_tensorflow_start_up_noise_is_filtered_and_verbose_brings_it_back(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), ROOT])
    command = [sys.executable, "-m", "chapters.ch1_gan_int_cls", "sample", f"--run_dir={tmp_path}"]
    quiet = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=time_limit(60))
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()]  # one line: the error itself
    assert quiet.stderr.startswith("error: No trained run in ")
    loud = subprocess.run([*command, "--verbose"], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=time_limit(60))
    # TF's own start-up lines differ by CPU (the oneDNN note appears on some only); absl's first line does not.
    assert loud.returncode == 2 and "All log messages before absl::InitializeLog() is called" in loud.stderr
    assert len(loud.stderr.strip().splitlines()) > 1 and "error: No trained run in " in loud.stderr


def test_a_long_epoch_is_never_a_silence_without_a_terminal():
    """Finding 8: with Keras' one line per epoch (no terminal), a progress line every 30 s inside the epoch."""
    from t2igan.training.callbacks import ProgressLine, duration

    now, printed = [0.0], []
    progress = ProgressLine(epochs=3, steps_per_epoch=100, every_seconds=30, clock=lambda: now[0],
                            write=lambda text, flush=True: printed.append(text))
    progress.on_epoch_begin(1)  # resumed at the second epoch
    now[0] = 20.0
    progress.on_train_batch_end(0)  # the first step traced for 20 s
    for batch in range(1, 100):
        now[0] = 20.0 + 0.5 * batch
        progress.on_train_batch_end(batch)
    assert printed == ["  epoch 2/3, step 21/100 (21 %), 0.50 s/step, epoch left 40s, run left ≈ 1m30s",  # at 30 s
                       "  epoch 2/3, step 81/100 (81 %), 0.50 s/step, epoch left 10s, run left ≈ 1m00s"]  # at 60 s
    assert (duration(59), duration(75), duration(3725)) == ("59s", "1m15s", "1h02m")


def test_prepare_check_of_a_bad_layout_is_one_sentence(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "captions.txt").write_text("a bird\n")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    finished = subprocess.run([sys.executable, os.path.join(ROOT, "datasets", "prepare.py"), "check",
                               f"--dataset={tmp_path}"], cwd=ROOT, env=environment, capture_output=True, text=True,
                              timeout=time_limit(60))
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert re.match(r"error: .* is not in the custom layout: expected images/, captions/, train.txt, test.txt",
                    finished.stderr.strip().splitlines()[-1])
    assert "Traceback" not in finished.stderr


def test_make_eval_of_a_run_naming_another_module_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"chapter": "ch1_gan_int_cls.profiles", "dataset": "shapes"}')
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    finished = subprocess.run([sys.executable, "-m", "t2igan.evaluate_folders", f"--run={tmp_path}"], cwd=ROOT,
                              env=environment, capture_output=True, text=True, timeout=time_limit(60))
    assert finished.returncode == 2, finished.stderr[-2000:]  # before: exit 0, having run profiles.py
    assert "names the chapter 'ch1_gan_int_cls.profiles', which is not one of this project's (ch1_gan_int_cls, " \
           in finished.stderr
