"""A run's configuration: shared settings, a chapter's profile, its per-data-set lines, then the user's ``--set``.

A profile is a plain dict of settings (``chapters/chN_*/profiles.py``). :func:`resolve_config` returns a
:class:`Config`: the dict written to ``config.json``, which also remembers which keys the user set, so
that a variant's own settings apply unless the user gave the same key (nothing re-reads the flags).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from t2igan.errors import UserError

PROFILE_NAMES = ("smoke", "course", "paper")

# Settings every chapter has (a chapter's profile may override them): the in-training metrics
# (t2igan.training.callbacks.PeriodicMetrics), whether the GAN's training step is compiled with XLA
# (README: Speed on a CPU with XLA; --jit_compile / --nojit_compile override it; on where a whole course run
# was measured with it: chapter 4's profiles), whether the text encoders' pretraining is (off everywhere: its
# bi-LSTM step measured as fast with XLA on an AVX2-only CPU and 1.6–2.1× slower on an AVX-512 one) and the
# Inception weights for FID/IS on real data sets.
SHARED_SETTINGS = {
    # smoke: tests turn the metrics on where they check them.
    "smoke": dict(metrics_every_epochs=0, metrics_samples=32, jit_compile=False, pretrain_jit_compile=False),
    "course": dict(metrics_every_epochs=5, metrics_samples=256, jit_compile=False, pretrain_jit_compile=False),
    "paper": dict(metrics_every_epochs=10, metrics_samples=5000, jit_compile=False, pretrain_jit_compile=False),
}
INCEPTION_SETTINGS = dict(fid_weights="", fid_extractor="pytorch-fid",  # or torchvision, keras-imagenet (inception.py)
                          r_precision_protocol="dm-gan",  # or "other-images" (t2igan.metrics.r_precision)
                          eval_caption_plan="every-caption")  # or "dm-gan": 30,000, a random caption per image and pass


class Config(dict):
    """The resolved settings (a dict, as stored in ``config.json``) and ``user_set``: the keys given with ``--set``."""

    def __init__(self, *args, user_set: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.user_set = frozenset(user_set)

    def apply_defaults(self, settings: dict[str, Any]) -> None:
        """``settings`` (a variant's own values) override the profile's, except the keys the user set."""
        self.update({key: value for key, value in settings.items() if key not in self.user_set})


def default_run_dir(chapter_number: int, dataset: str, profile: str, suffix: str = "") -> str:
    """``runs/ch<N>-<dataset>-<profile>[-suffix]`` (a data set given as a folder is named by its last part)."""
    name = os.path.basename(os.path.normpath(dataset)) if os.path.sep in dataset else dataset
    return os.path.join("runs", f"ch{chapter_number}-{name}-{profile}" + (f"-{suffix}" if suffix else ""))


def _parse_value(key: str, raw: str, current: Any) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if current is None or isinstance(value, type(current)):
        return value
    if isinstance(current, bool):
        raise UserError(f"--set {key}={raw}: expected true or false.")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (list, tuple)) and isinstance(value, list):
        return value
    raise UserError(f"--set {key}={raw}: expected a {type(current).__name__} like {json.dumps(current)}.")


def resolve_config(profiles: dict[str, dict], profile: str, dataset: str, overrides: list[str], epochs: int | None,
                   variant_settings: dict[str, Any] | None = None) -> Config:
    """Shared settings, the profile's, its per-data-set adjustments, a variant's own settings, then the
    ``--set key=value`` overrides (type-checked against the profile's value) and ``--epochs``."""
    if profile not in profiles:
        raise UserError(f"Unknown PROFILE {profile!r}; choose one of {', '.join(profiles)}.")
    config = {**INCEPTION_SETTINGS, **SHARED_SETTINGS.get(profile, {}), **copy.deepcopy(profiles[profile])}
    per_dataset = config.pop("datasets", {})
    family = "shapes" if dataset.startswith("shapes") else dataset
    config.update(copy.deepcopy(per_dataset.get(family, {})))
    config.update(copy.deepcopy(variant_settings or {}))
    user_set = set()
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}.")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in config:
            import difflib

            close = difflib.get_close_matches(key, config, n=3, cutoff=0.7)
            hint = (f" Did you mean {' or '.join(close)}?" if close else
                    f" This profile's settings: {', '.join(sorted(config))}.")
            raise UserError(f"--set {key}: no such setting.{hint}")
        config[key] = _parse_value(key, raw, config[key])
        user_set.add(key)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs must be ≥ 1, got {epochs}.")
        config["epochs"] = epochs
    config["profile"] = profile
    config["dataset"] = dataset
    check_settings(config)
    return Config(config, user_set=frozenset(user_set))


#: Settings that must be whole numbers ≥ 1 (sizes, counts) …
POSITIVE_INTEGERS = {"batch_size", "epochs", "image_size", "base_size", "stages", "words_num", "doc_length",
                     "captions_per_sample", "checkpoint_keep", "log_every_steps", "residual_blocks",
                     "v1_residual_blocks"}
#: … and ≥ 0 (0 means "the whole data set" or "never").
NON_NEGATIVE_INTEGERS = {"steps_per_epoch", "shapes_train", "shapes_test", "oracle_epochs", "metrics_samples"}


def check_settings(config: dict) -> None:
    """Refuse values no run can use, before anything runs or is written: one sentence naming the setting."""
    def refuse(key, rule):
        raise UserError(f"{key}={json.dumps(config[key])}: {rule} (set it with --set {key}=…).")

    for key, value in config.items():
        whole = isinstance(value, int) and not isinstance(value, bool)
        if key in POSITIVE_INTEGERS or key.endswith(("_dim", "_width", "_units", "_batch_size")):
            if whole and value < 1:
                refuse(key, "must be a whole number ≥ 1")
        elif key in NON_NEGATIVE_INTEGERS or key.endswith(("_epochs", "_steps_per_epoch", "_every_epochs")):
            if whole and value < 0:
                refuse(key, "must be a whole number ≥ 0")
        elif key.endswith("_widths") and isinstance(value, list):
            if not value or any(not isinstance(v, int) or v < 1 for v in value):
                refuse(key, "must be a non-empty list of whole numbers ≥ 1")
        elif "learning_rate" in key and not key.endswith(("_decay", "_every_epochs")):
            if isinstance(value, (int, float)) and not value > 0:
                refuse(key, "must be > 0")
        elif key in ("ema_decay", "beta_1", "beta_2", "text_dropout") or key.endswith("_learning_rate_decay"):
            if isinstance(value, (int, float)) and not 0 <= value < 1:
                refuse(key, "must be in [0, 1)")
        elif key.endswith("_weight") and isinstance(value, (int, float)) and value < 0:
            refuse(key, "must be ≥ 0")
        elif key == "fid_extractor" and value not in ("pytorch-fid", "torchvision", "keras-imagenet", "tf-fid"):
            refuse(key, "must be pytorch-fid (family A, the default), torchvision (family B: DM-GAN's and DF-GAN's "
                        "FID) or keras-imagenet (docs/metrics.md)")
        elif key == "eval_caption_plan" and value not in ("every-caption", "dm-gan"):
            refuse(key, "must be every-caption (each test caption once) or dm-gan (DM-GAN's 30,000: a random "
                        "caption per test image, pass after pass)")
        elif key == "r_precision_protocol" and value not in ("dm-gan", "other-images"):
            refuse(key, "must be dm-gan (DM-GAN's evaluation) or other-images (this project's before it)")
