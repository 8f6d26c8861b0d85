"""The command line every chapter shares: its flags, parsed once into a plain options object, and errors.

A chapter's ``__main__`` (the entry module) defines its own flags with ``absl.flags`` and calls
:func:`run_commands` with its commands; each command receives the :func:`options` object and passes
plain values on. Nothing below the entry modules reads ``FLAGS`` (``tests/test_structure.py`` checks it).
Users meet this as ``make chapterN-<command> DATASET=... PROFILE=... RUN_DIR=... ARGS=...``.
"""

from __future__ import annotations

import pickle
import re
import sys
import time
import types
from typing import Callable

from absl import app, flags, logging

from t2igan.config import PROFILE_NAMES
from t2igan.errors import UserError  # noqa: F401  (re-exported for entry modules)

FLAGS = flags.FLAGS

flags.DEFINE_string("dataset", "shapes", "Data set: shapes, shapes-pairs, birds, flowers, coco, or a folder in the custom layout.")
flags.DEFINE_enum("profile", "course", PROFILE_NAMES, "smoke: seconds (tests); course: ≤ 20 min on a 2-core CPU; paper: the official configuration (GPUs).")
flags.DEFINE_string("run_dir", None, "Run folder (config, checkpoints, logs, samples, metrics). Default: runs/<chapter>-<dataset>-<profile>.")
flags.DEFINE_string("data_dir", None, "Folder of a real data set (default: data/<dataset>).")
flags.DEFINE_string("data_root", "data", "Where generated data sets and caches are kept.")
flags.DEFINE_string("metadata_dir", None, "Folder with official metadata (e.g. AttnGAN's captions.pickle, for the official vocabulary).")
flags.DEFINE_multi_string("set", [], "Override a profile setting: --set batch_size=32 --set image_size=32 (repeatable).")
flags.DEFINE_integer("epochs", None, "Override the profile's number of epochs.")
flags.DEFINE_integer("seed", 0, "Random seed of the run (data order, initialisation, noise).")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many logical devices and train with MirroredStrategy over them.")
flags.DEFINE_enum("distribution", "auto", ["auto", "default", "mirrored", "multiworker"], "tf.distribute strategy (auto: TF_CONFIG → multi-worker, GPUs → mirrored, else one device).")
flags.DEFINE_float("peer_timeout", 300, "Multi-worker: seconds to wait for every address of TF_CONFIG to answer "
                   "before exiting with an error naming the ones that did not.")
flags.DEFINE_bool("mixed_precision", False, "Train with mixed_float16 (GPUs).")
flags.DEFINE_bool("jit_compile", None, "Compile the GAN's training step with XLA (--nojit_compile: not). Default: the "
                  "profile's jit_compile setting, on in chapter 4's course (README: Speed on a CPU with XLA). The text "
                  "encoders' pretraining is compiled only with --set=pretrain_jit_compile=true (slower on the CPUs measured).")
flags.DEFINE_integer("time_steps", 0, "train: instead of training, time this many steps of the run's GAN "
                     "(after a warm-up epoch as long): FLOPs per step, the training loop, a bare tf.function loop, "
                     "this CPU's peak (make benchmark). Use a run folder of its own.")
flags.DEFINE_string("text", None, "Sampling: the caption to draw.")
flags.DEFINE_integer("n", 8, "Sampling: number of images (different noise each).")
flags.DEFINE_integer("sample_seed", 0, "Sampling / evaluation: noise seed.")
flags.DEFINE_string("output", None, "Sampling: PNG path (default: <run_dir>/samples/sample-….png).")
flags.DEFINE_integer("eval_samples", 0, "Evaluation: number of generated images (0: every test caption once).")
flags.DEFINE_bool("traceback", False, "Show the Python traceback of a user error.")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's C++ start-up log (hidden by default; read by chapters/__init__.py).")


def options() -> types.SimpleNamespace:
    """Every flag's value (the shared ones above and the entry module's own) as one plain object;
    ``given``: the flags the command line named (a default is not a choice the user made)."""
    given = frozenset(name for name in FLAGS if FLAGS[name].present)
    return types.SimpleNamespace(**FLAGS.flag_values_dict(), given=given)


def fit_verbosity() -> int:
    """Keras' progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if sys.stdout.isatty() else 2


def run_commands(commands: dict[str, Callable[[types.SimpleNamespace], None]], usage: str) -> None:
    """absl entry point: ``python -m chapters.chN_name <command> --flags``; ``commands[name](options)``."""

    def main(argv):
        if len(argv) != 2 or argv[1] not in commands:
            given = " ".join(argv[1:]) or "nothing"
            print(f"error: expected one command of: {', '.join(commands)} (got {given}).\n\n{usage}", file=sys.stderr)
            sys.exit(2)
        started = time.time()
        values = options()
        try:
            commands[argv[1]](values)
        except NotImplementedError as error:
            from t2igan.assignments.regions import TODO

            if values.traceback or TODO not in str(error):
                raise
            # an assignment copy: the command needs a task the student has not written yet. Keras wraps the
            # message in its own (bold, with the call's arguments): keep the stub's sentence only.
            # A step traced by tf.function also quotes the stub's source line (the raise statement itself):
            # the sentence is the part from the marker to its closing quote.
            sentence = next(line for line in str(error).splitlines() if TODO in line)
            sentence = re.sub(r"\x1b\[[0-9;]*m", "", sentence).strip()
            sentence = sentence[sentence.index(TODO):]
            sentence = re.sub(r"""["']\)\s*$""", "", sentence)
            print(f"error: {sentence} (--traceback shows the call that needed it.)", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if values.traceback:
                raise
            print(f"stopped (Ctrl-C) after {time.time() - started:.0f} s. "
                  + ("The run folder keeps its last complete checkpoint: the same command resumes from it."
                     if argv[1] == "train" else ""), file=sys.stderr)
            sys.exit(130)
        except (ValueError, FileNotFoundError, RuntimeError, OSError, pickle.UnpicklingError) as error:
            if values.traceback:
                raise
            if _is_disk_full(error):
                print(_disk_full_message(error), file=sys.stderr)
                sys.exit(2)
            if not _is_user_error(error):
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(_exit_code(error))
        except Exception as error:  # TensorFlow's own errors: a full disk is the user's to fix, the rest is ours
            if values.traceback or not _is_disk_full(error):
                raise
            print(_disk_full_message(error), file=sys.stderr)
            sys.exit(2)
        logging.info("%s finished in %.1f s.", argv[1], time.time() - started)

    app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, but a bad flag is a user error like any other: one sentence, exit code 2 (absl: 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}. (--helpshort lists this command's flags.)", file=sys.stderr)
        sys.exit(2)


def _exit_code(error: Exception) -> int:
    """2: the user's to fix; 3: training stopped at a NaN (the last good checkpoint kept); 4: a worker of the
    cluster was lost (start the same command again on every machine)."""
    from t2igan.training.distribute import PEER_LOST_EXIT_CODE, PeerLostError
    from t2igan.training.run import NonFiniteLossError

    if isinstance(error, NonFiniteLossError):
        return 3
    return PEER_LOST_EXIT_CODE if isinstance(error, PeerLostError) else 2


def _is_user_error(error: Exception) -> bool:
    """Errors whose message we wrote for the user; anything from TensorFlow's internals keeps its traceback.
    (Refused or corrupt pickles come from ``t2igan.data.safe_pickle``, whose messages name the file.)"""
    from t2igan.training.run import NonFiniteLossError

    from t2igan.training.distribute import PeerLostError

    return (isinstance(error, (UserError, FileNotFoundError, NonFiniteLossError, PeerLostError, pickle.UnpicklingError))
            or type(error) is ValueError)


def _disk_full_message(error: Exception) -> str:
    return (f"error: the disk is full ({str(error).splitlines()[0][:200]}). Free some space or choose a RUN_DIR on "
            "another disk; the last complete checkpoint is kept, and the same command resumes from it.")


def _is_disk_full(error: Exception) -> bool:
    """``OSError(ENOSPC)`` from Python, or TensorFlow's ResourceExhaustedError of a save on a full disk (a
    memory ResourceExhaustedError is not this, and keeps its traceback)."""
    import errno

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return type(error).__name__ == "ResourceExhaustedError" and "No space left" in str(error)
