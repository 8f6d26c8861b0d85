"""Where a training step's time goes: ``train --time_steps=N`` (``make benchmark``) measures a chapter's
step against the machine instead of training the run.

For the chapter's real networks, losses, input pipeline and callbacks, as ``train`` builds them, it reports:

- **FLOPs per step**: the floating-point operations of one ``train_step``, counted from its graph by
  TensorFlow's own registry (``tf.compat.v1.profiler``: convolutions and their two gradients, matrix
  products, element-wise arithmetic, with the shapes of the traced batch). ``tests/test_benchmark.py`` checks
  the count against the formula for a convolution and a dense layer.
- **the step in the training loop**: the median time between two steps of the loop ``train`` runs
  (``t2igan.training.loop``, every per-step callback and the input pipeline included), over one epoch of N
  steps after a warm-up epoch that traces; and the epoch-end work (checkpoint, sample grid, in-training
  metrics when due) of that epoch, spread over the profile's steps per epoch.
- **the bare loop**: the same ``train_step`` in a plain ``tf.function``, called N times on one batch already in
  memory: no loop, no callbacks, no pipeline. What the step costs the machine, and the floor for the loop.
- **this CPU's peak**: FLOP/s of a large matrix product and of a 3×3 convolution, made with the same
  TensorFlow and threads: the ceiling the step's FLOP/s is compared with.

One device only: the numbers are per device, and a multi-replica step adds its collectives.
"""

from __future__ import annotations

import time

if __name__ == "__main__":  # the table command: TensorFlow's start-up notes hidden, as in every command
    from t2igan.startup import quiet_tensorflow

    quiet_tensorflow()

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from t2igan.errors import UserError


# --------------------------------------------------------------------------- counting
def graph_flops(graph) -> dict[str, int]:
    """Floating-point operations of one run of ``graph`` (a ``tf.function``'s concrete graph) by op type,
    from TensorFlow's flops registry, which ``tf.compat.v1.profiler`` uses: a convolution, each of its two
    gradients, a matrix product: 2 × multiply-adds; an element-wise op: one per element. An op with no
    registered count (a while loop's body, a batched matrix product) adds nothing: the total is a lower bound.
    Only ops that the outputs or the state updates need are counted: a gradient builds both of a convolution's
    gradients, and TensorFlow prunes the one nothing uses (the images' own) before it runs."""
    from tensorflow.python.framework import ops
    from tensorflow.python.util import deprecation

    counts: dict[str, int] = {}
    with deprecation.silence():
        for operation in _executed(graph):
            try:
                flops = ops.get_stats_for_node_def(graph, operation.node_def, "flops").value
            except ValueError:  # no count registered for this op type, or a shape unknown at trace time
                continue
            if flops:
                counts[operation.type] = counts.get(operation.type, 0) + int(flops)
    return counts


def _executed(graph) -> list:
    """The ops of ``graph`` that its outputs and its control outputs (variable updates) depend on."""
    pending = [tensor.op for tensor in graph.outputs] + list(getattr(graph, "control_outputs", []))
    seen: dict[str, object] = {}
    while pending:
        operation = pending.pop()
        if operation.name in seen:
            continue
        seen[operation.name] = operation
        pending.extend(tensor.op for tensor in operation.inputs)
        pending.extend(operation.control_inputs)
    return list(seen.values())


# ------------------------------------------------------------------------------ peak
def peak_flops(repeats: int = 10) -> dict[str, float]:
    """FLOP/s of a 2048² matrix product and of a 3×3, 128 → 128 channel convolution on 32 × 32 × 32 float32
    inputs, best of ``repeats`` (one warm-up call first), in ``tf.function`` on this machine's threads."""
    shapes = {"matmul": (tf.random.normal((2048, 2048)), tf.random.normal((2048, 2048))),
              "conv 3×3": (tf.random.normal((32, 32, 32, 128)), tf.random.normal((3, 3, 128, 128)))}
    work = {"matmul": (tf.function(lambda a, b: tf.linalg.matmul(a, b)), 2 * 2048 ** 3),
            "conv 3×3": (tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")), 2 * 32 * 32 * 32 * 9 * 128 * 128)}
    rates = {}
    for name, (function, flops) in work.items():
        function(*shapes[name]).numpy()
        best = min(_timed(lambda: function(*shapes[name]).numpy()) for _ in range(repeats))
        rates[name] = flops / best
    return rates


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ loops
class StepClock(keras.callbacks.Callback):
    """Per epoch: the time of each step (from one step's end to the next's, the first from the epoch's start),
    the epoch-end work after the last step (every callback's ``on_epoch_end``: this one must come last), and
    the whole epoch."""

    def __init__(self):
        super().__init__()
        self.epochs: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last = time.perf_counter()
        self.steps: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.steps.append(now - self.last)
        self.last = now

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epochs.append({"steps": self.steps, "epoch_end": now - self.last, "seconds": now - self.started})


def bare_loop(train_step, batch, steps: int, jit_compile: bool = False) -> tuple[float, dict[str, int]]:
    """Seconds per call of ``train_step(batch)`` in a plain ``tf.function``, over ``steps`` calls after a
    traced one, the result read once at the end (nothing waits in between); and the FLOPs of one call by op
    type, counted from that trace's graph."""
    step = tf.function(train_step, jit_compile=bool(jit_compile))
    _ = {name: float(np.mean(value)) for name, value in step(batch).items()}
    started = time.perf_counter()
    for _ in range(steps):
        logs = step(batch)
    _ = {name: float(np.mean(value)) for name, value in logs.items()}
    seconds = (time.perf_counter() - started) / steps
    return seconds, graph_flops(step.get_concrete_function(batch).graph)


def check_one_device(strategy) -> None:
    if strategy.num_replicas_in_sync > 1:
        raise UserError(f"--time_steps times one device, but this run has {strategy.num_replicas_in_sync} "
                        "replicas: add --distribution=default (and drop --cpu_replicas or TF_CONFIG).")


def measure(gan, dataset, run, config: dict, strategy, callbacks: list, *, steps: int, steps_per_epoch: int,
            initial_epoch: int, title: str, phase: str | None = None) -> dict:
    """The benchmark of one GAN (see the module's docstring); printed, stored in metrics.json under
    ``benchmark`` (``benchmark_<phase>`` for a stage), and returned."""
    from t2igan.training.loop import train

    check_one_device(strategy)
    if steps < 2:
        raise UserError(f"--time_steps must be ≥ 2 (a median of steps), got {steps}.")
    logging.info("Benchmark of %s: a warm-up epoch of %d steps, then %d timed steps in the training loop and %d "
                 "in a bare tf.function; this run folder's checkpoints are benchmark ones.", title, steps, steps, steps)
    clock = StepClock()
    train(gan, dataset, epochs=initial_epoch + 2, initial_epoch=initial_epoch, steps_per_epoch=steps,
          callbacks=list(callbacks) + [clock], verbose=0)
    if len(clock.epochs) < 2:
        raise RuntimeError("The benchmark's training stopped before its timed epoch (see the log above).")
    warm_up, timed = clock.epochs
    loop_step, epoch_end = float(np.median(timed["steps"])), timed["epoch_end"]
    batch = next(iter(dataset))
    bare, counts = bare_loop(gan.train_step, batch, steps, gan.jit_compile)
    flops = sum(counts.values())
    dense = sum(value for op, value in counts.items() if op.startswith(("Conv", "MatMul", "BatchMatMul", "Depthwise")))
    peaks = peak_flops()
    peak = max(peaks.values())
    per_step = loop_step + epoch_end / steps_per_epoch
    result = {
        "title": title + (f" ({phase.replace('stage', 'stage ')})" if phase else ""), "profile": config["profile"], "image_size": config["image_size"],
        "batch_size": config["batch_size"], "steps_timed": steps,
        "gflops_per_step": round(flops / 1e9, 3),
        "conv_and_matmul_share": round(dense / flops, 3),
        "loop_ms_per_step": round(1000 * loop_step, 1),
        "epoch_end_seconds": round(epoch_end, 2), "steps_per_epoch": steps_per_epoch,
        "course_ms_per_step": round(1000 * per_step, 1),
        "bare_ms_per_step": round(1000 * bare, 1),
        "loop_over_bare": round(per_step / bare, 2),
        "gflops_per_second": round(flops / per_step / 1e9, 2),
        "peak_gflops_per_second": {name: round(rate / 1e9, 1) for name, rate in peaks.items()},
        "fraction_of_peak": round(flops / per_step / peak, 3),
        "warm_up_epoch_seconds": round(warm_up["seconds"], 1),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
        "jit_compile": bool(gan.jit_compile),
    }
    print(report(result))
    run.update_metrics("benchmark" + (f"_{phase}" if phase else ""), result)
    return result


TABLE_HEADER = ("| model | size, batch | GFLOP per step | ms per step | bare loop ms | loop / bare | GFLOP/s | "
                "peak GFLOP/s | of peak |\n|---|---|---|---|---|---|---|---|---|")


def table_row(result: dict) -> str:
    title = result["title"] + (" (XLA)" if result.get("jit_compile") else "")  # the course profile compiles it
    return (f"| {title} | {result['image_size']}², {result['batch_size']} | {result['gflops_per_step']:.2f} | "
            f"{result['course_ms_per_step']:.0f} | {result['bare_ms_per_step']:.0f} | {result['loop_over_bare']:.2f} | "
            f"{result['gflops_per_second']:.1f} | {max(result['peak_gflops_per_second'].values()):.0f} | "
            f"{100 * result['fraction_of_peak']:.1f} % |")


def report(result: dict) -> str:
    """The benchmark as a few lines, and its row for a chapter README's step-time table."""
    peaks = ", ".join(f"{name} {rate:.0f}" for name, rate in result["peak_gflops_per_second"].items())
    return "\n".join([
        f"Benchmark of {result['title']} ({result['profile']}: {result['image_size']}² px, batch {result['batch_size']}, "
        f"{'XLA' if result.get('jit_compile') else 'no XLA'}):",
        f"  {result['gflops_per_step']:.2f} GFLOP per training step (counted from its graph; "
        f"{100 * result.get('conv_and_matmul_share', 0):.0f} % in convolutions and matrix products)",
        f"  training loop: {result['loop_ms_per_step']:.0f} ms per step (median of {result['steps_timed']}), plus "
        f"{result['epoch_end_seconds']:.1f} s of epoch-end work over {result['steps_per_epoch']} steps per epoch "
        f"→ {result['course_ms_per_step']:.0f} ms per step",
        f"  bare tf.function loop: {result['bare_ms_per_step']:.0f} ms per step; loop / bare = {result['loop_over_bare']:.2f}",
        f"  {result['gflops_per_second']:.1f} GFLOP/s achieved; this CPU's peak: {peaks} GFLOP/s → "
        f"{100 * result['fraction_of_peak']:.1f} % of it",
        "  " + table_row(result),
    ])


def main(folders: list[str]) -> None:
    """``python -m t2igan.training.benchmark FOLDER...``: the step-time table of every benchmark run under them."""
    import glob
    import json
    import os

    rows = []
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "**", "metrics.json"), recursive=True)):
            with open(path) as file:
                metrics = json.load(file)
            rows += [table_row(value) for key, value in sorted(metrics.items()) if key.startswith("benchmark")]
    if not rows:
        import sys

        print(f"No benchmark results under {' '.join(folders)}: run make benchmark first.", file=sys.stderr)
        sys.exit(2)
    print(TABLE_HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or ["runs/benchmark"])
