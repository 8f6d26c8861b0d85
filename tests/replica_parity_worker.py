"""One training step of chapter 1's GAN under N replicas; used by test_distribute.py.

python tests/replica_parity_worker.py --replicas=N --init=init.npz --out=after.npz

The first run (no init file yet) saves the initial weights so that later runs
start from exactly the same point. Plain SGD, because Adam's first step is
g/|g| and would hide a wrong loss scale.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

parser = argparse.ArgumentParser()
parser.add_argument("--replicas", type=int, required=True)
parser.add_argument("--init", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--ema_decay", type=float, default=0.9)
args = parser.parse_args()

from t2igan.training.distribute import make_strategy  # noqa: E402

strategy = make_strategy("auto", cpu_replicas=args.replicas if args.replicas > 1 else 0)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras.utils.set_random_seed(0)
from chapters.ch1_gan_int_cls import model
GLOBAL_BATCH, SIZE, TEXT, NOISE = 8, 32, 32, 16

rng = np.random.default_rng(0)
batch = {
    "image": rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 3)).astype(np.float32),
    "wrong_image": rng.uniform(-1, 1, (GLOBAL_BATCH, SIZE, SIZE, 3)).astype(np.float32),
    "text_embedding": rng.standard_normal((GLOBAL_BATCH, TEXT)).astype(np.float32),
    "wrong_text_embedding": rng.standard_normal((GLOBAL_BATCH, TEXT)).astype(np.float32),
    "noise": rng.standard_normal((GLOBAL_BATCH, 3, NOISE)).astype(np.float32),
}
dataset = tf.data.Dataset.from_tensors(batch).repeat()

with strategy.scope():
    def make_generator():
        generator = model.Generator(TEXT, NOISE, 16, 8, SIZE)
        generator([tf.zeros((2, NOISE)), tf.zeros((2, TEXT))])
        return generator

    discriminator = model.Discriminator(TEXT, 16, 8, SIZE)
    discriminator([tf.zeros((2, SIZE, SIZE, 3)), tf.zeros((2, TEXT))])
    gan = model.GanIntCls(make_generator(), discriminator, ema_decay=args.ema_decay)
    gan.enable_ema(make_generator)
    gan.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
    gan.build_optimizers()

networks = {"generator": gan.generator, "discriminator": gan.discriminator}
if gan.ema_generator is not None:
    networks["ema"] = gan.ema_generator
if os.path.exists(args.init):
    saved = np.load(args.init)
    for name, network in networks.items():
        network.set_weights([saved[f"{name}/{i}"] for i in range(len(network.weights))])
else:
    np.savez(args.init, **{f"{name}/{i}": w for name, network in networks.items() for i, w in enumerate(network.get_weights())})

from t2igan.training.loop import train  # noqa: E402  (the loop every chapter trains with)

history = train(gan, dataset, epochs=1, steps_per_epoch=1, verbose=0)
np.savez(args.out, **{f"{name}/{i}": w for name, network in networks.items() for i, w in enumerate(network.get_weights())},
         **{f"log/{k}": np.array(v[-1]) for k, v in history.history.items()})
print("replicas", strategy.num_replicas_in_sync, "ok")
