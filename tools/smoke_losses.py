"""Every chapter's smoke training (each variant), its TensorBoard scalars per step, and a comparison of two
such records: the check that a refactoring changed no number.

    python tools/smoke_losses.py record CHECKOUT OUT [N]  # runs the smoke trainings of CHECKOUT into OUT
                                                          # (N: only chapter N's)
    python tools/smoke_losses.py compare OUT_A OUT_B      # largest relative difference per run

CHECKOUT is a source tree (e.g. ``git worktree add /tmp/before <commit>``); its own ``src`` is put first on
``PYTHONPATH`` so the installed package does not shadow it. Older trees name the chapters ``01_gan_int_cls``…,
newer ones ``ch1_gan_int_cls``…; both are found.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

RUNS = [("1", None), ("2", "v2"), ("2", "v1"), ("3", None), ("4", "ratgan"), ("4", "dfgan"), ("5", "dfgan"),
        ("5", "attngan")]
TIMING_TAGS = ("seconds", "time", "steps_per_second")


def chapter_packages(checkout: str) -> dict[str, str]:
    packages = {}
    for name in sorted(os.listdir(os.path.join(checkout, "chapters"))):
        if os.path.isfile(os.path.join(checkout, "chapters", name, "__main__.py")):
            packages[name.removeprefix("ch").split("_", 1)[0].lstrip("0")] = name
    return packages


def scalars(run_dir: str) -> dict[str, list]:
    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "logs", "**", "events.*"), recursive=True)):
        folder = os.path.relpath(os.path.dirname(path), run_dir)
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.dtype == 1 and not value.tensor.tensor_shape.dim:
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = value.simple_value
                else:
                    continue
                found.setdefault(f"{folder}:{value.tag}", []).append((event.step, number))
    return found


def record(checkout: str, out: str, only: str | None = None) -> int:
    packages = chapter_packages(checkout)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": os.pathsep.join([os.path.join(checkout, "src"), checkout])}
    results, failed = {}, 0
    for chapter, variant in RUNS:
        if only and chapter != only:
            continue
        name = f"ch{chapter}" + (f"-{variant}" if variant else "")
        run_dir = os.path.join(out, "runs", name)
        command = [sys.executable, "-m", f"chapters.{packages[chapter]}", "train", "--profile=smoke",
                   f"--run_dir={run_dir}", f"--data_root={os.path.join(out, 'data')}"]
        command += [f"--variant={variant}"] if variant else []
        started = time.time()
        finished = subprocess.run(command, cwd=checkout, capture_output=True, text=True, env=environment)
        print(f"{name}: exit {finished.returncode}, {time.time() - started:.1f} s", flush=True)
        if finished.returncode:
            print(finished.stderr[-3000:])
            failed += 1
            continue
        results[name] = scalars(run_dir)
    with open(os.path.join(out, "losses.json"), "w", encoding="utf-8") as file:
        json.dump(results, file)
    return 1 if failed else 0


def compare(first: str, second: str) -> int:
    a, b = (json.load(open(os.path.join(folder, "losses.json"), encoding="utf-8")) for folder in (first, second))
    different = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'first' if name in a else 'second'}")
            different += 1
            continue
        tags = sorted(tag for tag in set(a[name]) & set(b[name]) if not any(t in tag for t in TIMING_TAGS))
        worst, where, count = 0.0, "", 0
        for tag in tags:
            if [s for s, _ in a[name][tag]] != [s for s, _ in b[name][tag]]:
                print(f"{name}: {tag} logged at other steps")
                different += 1
            for (step, x), (_, y) in zip(a[name][tag], b[name][tag]):
                count += 1
                difference = abs(x - y) / max(abs(x), 1e-6)
                if difference > worst:
                    worst, where = difference, f" ({tag}, step {step}: {x!r} vs {y!r})"
        only = sorted(set(a[name]) ^ set(b[name]))
        print(f"{name}: {len(tags)} tags, {count} values, largest relative difference {worst:.2e}{where}"
              + (f"; tags in one only: {only[:6]}" if only else ""))
        different += bool(worst) or bool(only)
    return 1 if different else 0


if __name__ == "__main__":
    if not (len(sys.argv) == 4 or (len(sys.argv) == 5 and sys.argv[1] == "record")) or sys.argv[1] not in (
            "record", "compare"):
        sys.exit(__doc__)
    sys.exit((record if sys.argv[1] == "record" else compare)(*sys.argv[2:]))
