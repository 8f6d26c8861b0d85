"""The run folder: resolved config, checkpoints with automatic resume, metrics.json.

Layout of ``RUN_DIR``::

    config.json        the resolved configuration (chapter, data set, profile, every setting)
    checkpoints/       tf.train.Checkpoint files: networks, optimizers, EMA, epoch
    text_encoder/      the pretrained text encoder, its vocabulary / alphabet, caption embeddings
    logs/              TensorBoard event files
    samples/           PNG sample grids, one per epoch
    metrics.json       training summary and evaluation results
"""

from __future__ import annotations

import atexit
import json
import math
import os
import socket
import time
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging


#: Run folders written before the chapters were renamed record the old package names.
LEGACY_CHAPTER_NAMES = {"01_gan_int_cls": "ch1_gan_int_cls", "02_stackgan": "ch2_stackgan", "03_attngan": "ch3_attngan",
                        "04_dfgan_ratgan": "ch4_dfgan_ratgan", "05_vlmgan": "ch5_vlmgan"}


def owner_of(config: dict[str, Any]) -> str | None:
    """The chapter package that wrote a run's ``config.json`` (old names mapped to today's)."""
    owner = config.get("chapter")
    return LEGACY_CHAPTER_NAMES.get(owner, owner)


LOCK_NAME = ".lock"


def _process_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def make_folder(path: str) -> None:
    """``os.makedirs`` with the two user mistakes said in a sentence: a file in the way, no permission."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = path
        while blocking and not os.path.exists(blocking):
            blocking = os.path.dirname(blocking)
        raise ValueError(f"{blocking} is a file, not a folder, so the run folder {path} cannot be made there: "
                         f"move the file away or choose another RUN_DIR.") from None
    except PermissionError:
        raise ValueError(f"Cannot create {path}: permission denied (a read-only place?). Choose a writable "
                         f"RUN_DIR.") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"The run folder {path} is not writable (read-only?). Choose a writable RUN_DIR.")


class RunDirectory:
    def __init__(self, path: str, chapter: str):
        self.path = path
        self.chapter = chapter
        self.checkpoints = os.path.join(path, "checkpoints")
        self.text_encoder = os.path.join(path, "text_encoder")
        self.logs = os.path.join(path, "logs")
        self.samples = os.path.join(path, "samples")
        self.config_path = os.path.join(path, "config.json")
        self.metrics_path = os.path.join(path, "metrics.json")

    @property
    def lock_path(self) -> str:
        return os.path.join(self.path, LOCK_NAME)

    def lock(self) -> None:
        """Claim the run folder for this process (``RUN_DIR/.lock``: PID, host, start time), released when the
        process ends. A second training in the same folder is refused with a message; a lock left by a
        process that is gone (killed, crashed) on this host is taken over."""
        make_folder(self.path)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                descriptor = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == mine["host"]:
                    return  # already ours (a second start in one process: StackGAN-v1's stages)
                if holder is not None and (holder.get("host") != mine["host"] or _process_alive(holder.get("pid"))):
                    raise ValueError(
                        f"The run folder {self.path} is in use by another training (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('since')}). Wait for it to finish, or use another "
                        f"RUN_DIR. If that process is gone, delete {self.lock_path}.")
                logging.warning("Taking over the lock of %s: its process (pid %s) is gone.", self.path,
                                (holder or {}).get("pid"))
                try:
                    os.remove(self.lock_path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(mine, file)
            atexit.register(self.unlock)
            return
        raise ValueError(f"Could not lock {self.path}: {self.lock_path} keeps reappearing; is another training starting?")

    def unlock(self) -> None:
        holder = self._lock_holder()
        if holder is not None and holder.get("pid") == os.getpid():
            try:
                os.remove(self.lock_path)
            except FileNotFoundError:
                pass

    def _lock_holder(self) -> dict | None:
        try:
            with open(self.lock_path, encoding="utf-8") as file:
                holder = json.load(file)
            return holder if isinstance(holder, dict) else None
        except (OSError, json.JSONDecodeError):
            return None  # unreadable or half written: treated as stale

    def create(self) -> None:
        for folder in (self.path, self.checkpoints, self.text_encoder, self.logs, self.samples):
            make_folder(folder)

    def existing_config(self) -> dict[str, Any] | None:
        if not os.path.exists(self.config_path):
            return None
        try:
            with open(self.config_path, encoding="utf-8") as file:
                config = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.config_path} is not valid JSON ({error}); fix or delete it.") from error
        missing = [key for key in ("chapter",) if not isinstance(config, dict) or key not in config]
        if missing:
            what = f"lacks {', '.join(missing)}" if isinstance(config, dict) else f"holds a {type(config).__name__}"
            raise ValueError(f"{self.config_path} is not a run's configuration (it {what}); it was edited or "
                             f"written by something else: restore it, or use another RUN_DIR.")
        return config

    def check_owner(self) -> dict[str, Any] | None:
        """Refuse a run folder written by another chapter or for another data set."""
        config = self.existing_config()
        if config is not None and owner_of(config) != self.chapter:
            raise ValueError(
                f"The run folder {self.path} belongs to {config.get('chapter')!r}, not {self.chapter!r}. "
                "Choose another RUN_DIR (or delete that folder to start over)."
            )
        return config

    def read_config_text(self) -> str | None:
        try:
            with open(self.config_path, encoding="utf-8") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def restore_config_text(self, text: str | None) -> None:
        """``config.json`` back to ``text`` (atomically), or removed when there was none."""
        if text is None:
            if os.path.exists(self.config_path):
                os.remove(self.config_path)
            return
        temporary = f"{self.config_path}.tmp-{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, self.config_path)

    def write_config(self, config: dict[str, Any]) -> None:
        """``config.json`` (atomically), after :meth:`check_config`."""
        self.check_config(config)
        self.create()
        _write_json_atomic(self.config_path, {**config, "chapter": self.chapter})

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse a run folder of another chapter, or settings that cannot change within a run."""
        previous = self.check_owner()
        if previous is not None:
            for key in ("dataset", "image_size", "profile", "variant"):
                if key in previous and previous[key] != config.get(key):
                    raise ValueError(
                        f"The run folder {self.path} was created with {key}={previous[key]!r}, "
                        f"this run asks for {key}={config.get(key)!r}. Use another RUN_DIR to start a new run."
                    )

    def update_metrics(self, section: str, values: dict[str, Any]) -> None:
        metrics = {}
        if os.path.exists(self.metrics_path):
            with open(self.metrics_path, encoding="utf-8") as file:
                metrics = json.load(file)
        metrics[section] = values
        _write_json_atomic(self.metrics_path, metrics)


def _write_json_atomic(path: str, data: Any) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2, sort_keys=True, default=_json_default)
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or infinite values; the last good checkpoint was kept."""


def all_finite(variables) -> bool:
    for variable in variables:
        values = np.asarray(variable.numpy())
        if np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
            return False
    return True


class OrderedVariables(tf.Module):
    """Every variable of a Keras network or optimizer, in its (deterministic) creation order.

    ``tf.train.Checkpoint`` does not follow Keras 3's tracking of layers kept in
    Python lists (``self.blocks = [Conv2D(...), ...]``) and would silently leave
    their weights out; listing the variables explicitly saves all of them.
    """

    def __init__(self, source):
        super().__init__()
        if isinstance(source, tf.Variable):
            self.ordered = [source]
        elif hasattr(source, "apply_gradients"):  # an optimizer: iterations and slots
            self.ordered = list(source.variables)
        else:  # a network: weights, BatchNorm statistics included
            self.ordered = list(source.weights)


def remove_unfinished_saves(directory: str) -> list[str]:
    """A save killed half way leaves ``ckpt-N_temp/`` (TensorFlow writes there, then renames): never
    restored, but it would stay for ever. Removed when a run opens its checkpoints; returns what went."""
    import glob
    import shutil

    removed = sorted(glob.glob(os.path.join(glob.escape(directory), "ckpt-*_temp*")))
    for path in removed:
        logging.warning("Removing %s: an unfinished checkpoint save (the run was stopped while saving).", path)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return removed


class Checkpointer:
    """``tf.train.CheckpointManager`` that never writes non-finite weights.

    Saves are atomic (the manager updates its index only after the files are
    complete), so a run killed at any moment — even with ``kill -9`` — resumes
    from the last complete checkpoint. ``objects`` are Keras networks and
    optimizers; each is stored as its ordered list of variables.
    """

    def __init__(self, directory: str, max_to_keep: int = 3, **objects):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(
            epoch=self.epoch, **{name: OrderedVariables(source) for name, source in objects.items()})
        remove_unfinished_saves(directory)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)
        self.objects = objects

    def restore(self) -> int:
        """Restore the latest checkpoint if there is one; returns the epoch to continue from.

        Every variable asked for must be in the checkpoint with the same shape;
        anything else (another architecture, changed settings) is an error.
        """
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        try:
            status = self.checkpoint.restore(latest)
            status.expect_partial()  # e.g. sampling restores the generator only
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(
                f"The checkpoint {latest} does not fit the model built from this run's settings "
                f"({str(error).splitlines()[0][:300]}). Settings that change the networks cannot change "
                "within a run folder: use another RUN_DIR."
            ) from error
        epoch = int(self.epoch.numpy())
        logging.info("Resuming from %s (epoch %d).", latest, epoch)
        return epoch

    def save(self, epoch: int, variables) -> str:
        if not all_finite(variables):
            raise NonFiniteLossError(
                f"Weights became NaN/inf at epoch {epoch}; not saving. The last good checkpoint "
                f"({self.manager.latest_checkpoint}) is kept. Lower the learning rate or check the data."
            )
        self.epoch.assign(epoch)
        return self.manager.save(checkpoint_number=epoch)


class Timer:
    def __init__(self):
        self.started = time.time()

    def elapsed(self) -> float:
        return time.time() - self.started


def is_finite_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


#: marks a run folder that holds an official released model (``make chapterN-import``), with its record
IMPORTED = "imported.json"


def refuse_imported_run(run_dir: str) -> None:
    """An imported run holds a released model without its optimizer state (and, for some releases, without
    its discriminators): for sample and eval, there is nothing to train, resume or pretrain."""
    if os.path.exists(os.path.join(run_dir, IMPORTED)):
        from t2igan.errors import UserError

        raise UserError(f"{run_dir} holds an imported official model (for sample and eval), not a training run: "
                        "train in another RUN_DIR.")


def imported_record(run_dir: str) -> dict | None:
    """The ``imported.json`` of a run folder (None for a trained run)."""
    path = os.path.join(run_dir, IMPORTED)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)
