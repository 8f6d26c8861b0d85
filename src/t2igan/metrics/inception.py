"""Feature extractors for FID and IS: the named FID protocols, each printed on the protocol card.

Reported FIDs in this literature come from three different networks ("families"), and an FID is
comparable only with FIDs of the same family, sample count and input pipeline (``docs/metrics.md``):

* ``pytorch-fid`` (family A, the default): the FID Inception (the 2015-12-05 TensorFlow graph, pool3,
  2048-d) as TTUR, pytorch-fid ≥ 0.1 and clean-fid use it. Built here layer by layer as pytorch-fid's
  ``FIDInceptionV3`` (torchvision names): conv → BN(ε = 1e-3) → ReLU units without conv bias; the average
  pools of Mixed_5b … Mixed_7b exclude padding (TF ``SAME`` average pooling divides by the number of valid
  inputs, the ``count_include_pad=False`` of pytorch-fid); Mixed_7c pools its pool branch with a *max*-pool.
  Weights come from the file users download for pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``,
  read with torch, ``weights_only=True``) or from the ``.npz`` that ``python -m t2igan.metrics.inception
  convert`` writes from it (no torch needed afterwards).
  Input as pytorch-fid's ``InceptionV3``: RGB u8 → x = u/255 in [0, 1] → bilinear resize to 299
  (``F.interpolate(align_corners=False)``: TensorFlow's half-pixel bilinear, no antialias) → 2x − 1.
  Both steps are linear, so this is the bilinear resize of the [-1, 1] image (u/127.5 − 1) itself.
  Checked against pytorch-fid itself (``tests/test_fid_reference.py``).
  ``tf-fid``, this protocol's former name, is read as ``pytorch-fid``. A protocol of the TF graph with
  its *own* resize (TTUR's ``fid.py``) is not offered: that resize is TF1's legacy bilinear inside the
  frozen graph, which TF 2's ops do not reproduce and which could not be checked here (no TF1); TTUR and
  pytorch-fid are documented to agree closely, and the card names the pipeline used.
* ``torchvision`` (family B): torchvision's ImageNet ``Inception3`` (``inception_v3_google-*.pth``), the
  average-pooled Mixed_7c (2048-d), as DM-GAN's ``eval/FID`` and DF-GAN's FID (their ``.npz`` reference
  statistics, e.g. ``bird_val256_FIDK0.npz``) use it, with their input transform: [0, 1] → bilinear
  resize to 299 (half-pixel, as DF-GAN's ``F.interpolate``) → x·(σ_c/0.5) + (μ_c − 0.5)/0.5 with
  ImageNet's μ, σ — the transform of pytorch-fid 802da39, written for [-1, 1] inputs and fed [0, 1] ones
  (so each channel spans about [−0.03, 0.43], [−0.09, 0.36], [−0.19, 0.26]; kept, because their figures
  were made so). DM-GAN resizes with PIL on u8 images instead, which differs by rounding. No logits: no IS.
* ``keras-imagenet``: ``keras.applications.InceptionV3`` (ImageNet, 1000 classes) from a local ``.h5`` —
  not the FID network; its FID and IS are labelled "not comparable with papers".
* Family C (StackGAN's CUB fine-tuned TF-slim Inception, RAT-GAN's FID) needs a checkpoint whose
  download is restricted: not offered; IS with a user's fine-tuned classifier is ``--classifier``.

Statistics files written here record their family; a file of one family is refused with another
family's extractor. Files made elsewhere (DF-GAN's, DM-GAN's) record nothing: the card says so.

The same builder gives torchvision's ``Inception3`` (``variant="torchvision"``): the same convolutions and
names, but every average pool *includes* the padding (``avg_pool2d(3, 1, padding=1)``'s default
``count_include_pad=True``) and Mixed_7c averages like Mixed_7b; it returns the Mixed_6e and Mixed_7c maps.
AttnGAN's DAMSM image encoder (``CNN_ENCODER``) is built on it, so its released weights load exactly
(``chapters.ch3_attngan.damsm.DamsmImageEncoder(backbone="inception_torchvision")``, chapter 3's ``official.py``).

Nothing here downloads: a missing file raises an error that says what to fetch and where.
"""

from __future__ import annotations

import os

import numpy as np

from t2igan.torch_weights import conv_kernel, read_state_dict, sha256  # noqa: F401  (read_state_dict: kept importable from here)

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
KERAS_WEIGHTS_NAME = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + KERAS_WEIGHTS_NAME
KERAS_WEIGHTS_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"   # keras.applications' own file_hash for this file
FID_CLASSES = 1008                                        # the 2015 graph's classifier (1001 used, 7 unused)
TORCHVISION_WEIGHTS_NAME = "inception_v3_google-1a9a5a14.pth"   # torchvision's ImageNet Inception3 (AttnGAN's DAMSM)
TORCHVISION_WEIGHTS_URL = "https://download.pytorch.org/models/" + TORCHVISION_WEIGHTS_NAME


def missing_weights_message(extractor: str, path: str | None) -> str:
    where = f"'{path}' does not exist. " if path else "No weights file given. "
    if extractor == "torchvision":
        return (where + f"torchvision's ImageNet Inception-v3 weights are never downloaded at run time. Download "
                f"{TORCHVISION_WEIGHTS_URL} (the file AttnGAN's DAMSM starts from) and pass its path (reading a .pth "
                "needs `pip install torch`, or convert it once: python -m t2igan.torch_weights convert PATH.pth OUT.npz).")
    if extractor in ("pytorch-fid", "tf-fid"):
        return (where + "The FID Inception weights are not bundled and never downloaded at run time. Download "
                f"{FID_WEIGHTS_URL} (95.6 MB; by torch-hub convention its SHA-256 begins with 6726825d), then either "
                "pass it as --inception_weights=PATH (reading a .pth needs `pip install torch`), or convert it once: "
                "python -m t2igan.metrics.inception convert PATH.pth fid_inception.npz  and pass the .npz.")
    return (where + f"Download {KERAS_WEIGHTS_URL} (MD5 {KERAS_WEIGHTS_MD5}) and pass it as --inception_weights=PATH.")


# ---------------------------------------------------------------------------------------------- the network
VARIANTS = ("fid", "torchvision")


def _fid_inception_layers(variant="fid"):
    """(builder of the Keras graph, ordered torch prefixes of its conv units). Imports Keras lazily.

    ``variant="fid"``: pytorch-fid's FID Inception (pools exclude padding, max-pool in Mixed_7c; outputs
    pool3 and logits). ``"torchvision"``: torchvision's ``Inception3`` up to Mixed_7c (pools include
    padding, average pool in Mixed_7c; outputs the Mixed_6e and Mixed_7c maps, no classifier).
    """
    import keras
    from keras import layers

    if variant not in VARIANTS:
        raise ValueError(f"Inception variant must be one of {', '.join(VARIANTS)}, not {variant!r}.")
    include_padding = variant == "torchvision"
    units: dict[str, tuple] = {}

    def unit(x, name, filters, kernel, strides=1, padding="same"):
        conv = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}.conv")
        norm = layers.BatchNormalization(epsilon=1e-3, name=f"{name}.bn")
        units[name] = (conv, norm)
        return layers.ReLU(name=f"{name}.relu")(norm(conv(x), training=False))

    def average_pool(x, name):
        if include_padding:  # torchvision: zero padding counted in the mean, always divided by 9
            x = layers.ZeroPadding2D(1, name=f"{name}.pad")(x)
            return layers.AveragePooling2D(3, strides=1, padding="valid", name=f"{name}.avg_pool")(x)
        # TF SAME average pooling excludes the padding: count_include_pad=False
        return layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}.avg_pool")(x)

    def block_a(x, name, pool_features):                                  # Mixed_5b/5c/5d
        b1 = unit(x, f"{name}.branch1x1", 64, 1)
        b5 = unit(unit(x, f"{name}.branch5x5_1", 48, 1), f"{name}.branch5x5_2", 64, 5)
        b3 = unit(x, f"{name}.branch3x3dbl_1", 64, 1)
        b3 = unit(unit(b3, f"{name}.branch3x3dbl_2", 96, 3), f"{name}.branch3x3dbl_3", 96, 3)
        bp = unit(average_pool(x, name), f"{name}.branch_pool", pool_features, 1)
        return layers.Concatenate(name=name)([b1, b5, b3, bp])

    def block_b(x, name):                                                 # Mixed_6a
        b3 = unit(x, f"{name}.branch3x3", 384, 3, strides=2, padding="valid")
        bd = unit(unit(x, f"{name}.branch3x3dbl_1", 64, 1), f"{name}.branch3x3dbl_2", 96, 3)
        bd = unit(bd, f"{name}.branch3x3dbl_3", 96, 3, strides=2, padding="valid")
        bp = layers.MaxPooling2D(3, strides=2, name=f"{name}.max_pool")(x)
        return layers.Concatenate(name=name)([b3, bd, bp])

    def block_c(x, name, c7):                                             # Mixed_6b … 6e
        b1 = unit(x, f"{name}.branch1x1", 192, 1)
        b7 = unit(x, f"{name}.branch7x7_1", c7, 1)
        b7 = unit(unit(b7, f"{name}.branch7x7_2", c7, (1, 7)), f"{name}.branch7x7_3", 192, (7, 1))
        bd = unit(x, f"{name}.branch7x7dbl_1", c7, 1)
        for i, (filters, kernel) in enumerate([(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))], start=2):
            bd = unit(bd, f"{name}.branch7x7dbl_{i}", filters, kernel)
        bp = unit(average_pool(x, name), f"{name}.branch_pool", 192, 1)
        return layers.Concatenate(name=name)([b1, b7, bd, bp])

    def block_d(x, name):                                                 # Mixed_7a
        b3 = unit(unit(x, f"{name}.branch3x3_1", 192, 1), f"{name}.branch3x3_2", 320, 3, strides=2, padding="valid")
        b7 = unit(x, f"{name}.branch7x7x3_1", 192, 1)
        b7 = unit(unit(b7, f"{name}.branch7x7x3_2", 192, (1, 7)), f"{name}.branch7x7x3_3", 192, (7, 1))
        b7 = unit(b7, f"{name}.branch7x7x3_4", 192, 3, strides=2, padding="valid")
        bp = layers.MaxPooling2D(3, strides=2, name=f"{name}.max_pool")(x)
        return layers.Concatenate(name=name)([b3, b7, bp])

    def block_e(x, name, max_pool):                                       # Mixed_7b (avg), Mixed_7c (max)
        b1 = unit(x, f"{name}.branch1x1", 320, 1)
        b3 = unit(x, f"{name}.branch3x3_1", 384, 1)
        b3 = layers.Concatenate()([unit(b3, f"{name}.branch3x3_2a", 384, (1, 3)),
                                   unit(b3, f"{name}.branch3x3_2b", 384, (3, 1))])
        bd = unit(unit(x, f"{name}.branch3x3dbl_1", 448, 1), f"{name}.branch3x3dbl_2", 384, 3)
        bd = layers.Concatenate()([unit(bd, f"{name}.branch3x3dbl_3a", 384, (1, 3)),
                                   unit(bd, f"{name}.branch3x3dbl_3b", 384, (3, 1))])
        pooled = (layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}.max_pool")(x) if max_pool
                  else average_pool(x, name))
        bp = unit(pooled, f"{name}.branch_pool", 192, 1)
        return layers.Concatenate(name=name)([b1, b3, bd, bp])

    def build(input_size=299):
        images = keras.Input((input_size, input_size, 3), name=f"normalised_{input_size}")
        x = unit(images, "Conv2d_1a_3x3", 32, 3, strides=2, padding="valid")
        x = unit(x, "Conv2d_2a_3x3", 32, 3, padding="valid")
        x = unit(x, "Conv2d_2b_3x3", 64, 3)
        x = layers.MaxPooling2D(3, strides=2, name="maxpool1")(x)
        x = unit(x, "Conv2d_3b_1x1", 80, 1, padding="valid")
        x = unit(x, "Conv2d_4a_3x3", 192, 3, padding="valid")
        x = layers.MaxPooling2D(3, strides=2, name="maxpool2")(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = block_a(x, name, pool_features)
        x = block_b(x, "Mixed_6a")
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = block_c(x, name, c7)
        mixed_6e = x
        x = block_d(x, "Mixed_7a")
        x = block_e(x, "Mixed_7b", max_pool=False)
        x = block_e(x, "Mixed_7c", max_pool=not include_padding)
        if variant == "torchvision":
            return keras.Model(images, [mixed_6e, x], name="torchvision_inception_v3")
        pool3 = layers.GlobalAveragePooling2D(name="pool3")(x)
        # IS as improved-gan computes it on this graph: softmax(pool3 · W), the bias left out.
        logits = layers.Dense(FID_CLASSES, use_bias=False, name="fc")(pool3)
        return keras.Model(images, [pool3, logits], name="fid_inception_v3")

    return build, units


class FidInception:
    """The FID Inception-v3: ``features(images)`` → pool3 (N, 2048); ``logits(images)`` → (N, 1008).

    ``variant="torchvision"`` builds torchvision's ``Inception3`` instead (see the module docstring): its
    ``model`` maps normalised images (``input_size``²) to the Mixed_6e and Mixed_7c maps, and ``load``
    takes torchvision's state dict (its ``AuxLogits.*`` and ``fc.*`` entries, if any, are left out).
    """

    name = "pytorch-fid"
    family = "A: the 2015 FID Inception (pool3)"
    has_logits = True
    variant = "fid"

    def __init__(self, weights: str | None = None, variant: str = "fid", input_size: int = 299):
        build, self.units = _fid_inception_layers(variant)
        self.variant = variant
        self.model = build(input_size)
        self.weights_path, self.weights_sha256 = weights, None
        if weights is not None:
            if not os.path.isfile(weights):
                raise FileNotFoundError(missing_weights_message("pytorch-fid" if variant == "fid" else variant, weights))
            self.load(read_state_dict(weights))
            self.weights_sha256 = sha256(weights)

    # torch layout ↔ Keras layout ---------------------------------------------------------------
    def state_shapes(self) -> dict[str, tuple]:
        """The torch state-dict keys and shapes this network expects (pytorch-fid's / torchvision's names)."""
        shapes = {}
        for unit, (conv, norm) in self.units.items():
            kh, kw, cin, cout = conv.kernel.shape
            shapes[f"{unit}.conv.weight"] = (cout, cin, kh, kw)
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{unit}.bn.{key}"] = (cout,)
        if self.variant == "fid":
            shapes["fc.weight"] = (FID_CLASSES, 2048)
            shapes["fc.bias"] = (FID_CLASSES,)
        return shapes

    def load(self, state: dict[str, np.ndarray]) -> None:
        expected = self.state_shapes()
        state = {k: np.asarray(v) for k, v in state.items() if not k.endswith("num_batches_tracked")}
        if self.variant == "torchvision":  # a whole torchvision Inception3: its classifier heads are not used
            state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [f"{k}: {state[k].shape} ≠ {expected[k]}" for k in expected if k in state
                 and tuple(state[k].shape) != tuple(expected[k])]
        if missing or unexpected or wrong:
            what, file = (("pytorch-fid's FID Inception", FID_WEIGHTS_NAME) if self.variant == "fid"
                          else ("torchvision's Inception3", TORCHVISION_WEIGHTS_NAME))
            raise ValueError(f"These weights are not {what}: "
                             f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}, "
                             f"wrong shapes {wrong[:5]}. Expected the file {file}.")
        self.assign(state)

    def assign(self, state: dict[str, np.ndarray]) -> None:
        """Copy checked torch arrays in: conv OIHW → HWIO, BN (γ, β, mean, var) as they are."""
        for unit, (conv, norm) in self.units.items():
            conv.kernel.assign(conv_kernel(state[f"{unit}.conv.weight"]))
            norm.set_weights([state[f"{unit}.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var")])
        if self.variant == "fid":
            self.model.get_layer("fc").kernel.assign(np.transpose(state["fc.weight"]))

    # inference ----------------------------------------------------------------------------------
    @staticmethod
    def preprocess(images):
        """[-1, 1] RGB (N, H, W, 3) → the network's input, as pytorch-fid: 2·resize(x) − 1 of x = (image + 1)/2
        in [0, 1], bilinear to 299 (half-pixel, no antialias); linear, so the resize of the image itself."""
        import tensorflow as tf

        unit = (tf.convert_to_tensor(images, tf.float32) + 1.0) / 2.0
        return 2.0 * tf.image.resize(unit, (299, 299), method="bilinear", antialias=False) - 1.0

    #: what the card prints; ``pipeline_id`` names it in cached statistics (a changed pipeline never reuses them)
    protocol_input = ("pytorch-fid: u8/255 in [0, 1] → bilinear resize to 299 (align_corners=False = half-pixel, "
                      "no antialias) → 2x − 1; RGB")
    pipeline_id = "pytorchfid"

    def _outputs(self, images):
        if self.variant != "fid":
            raise ValueError("The torchvision variant is the DAMSM backbone, not an FID extractor: use variant='fid'.")
        return self._call(self.preprocess(images))

    def __call__(self, images):
        return self._outputs(images)

    @property
    def _call(self):
        import tensorflow as tf

        if not hasattr(self, "_compiled"):
            self._compiled = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        return self._compiled

    def features(self, images) -> np.ndarray:
        return np.asarray(self._outputs(images)[0], np.float64)

    def logits(self, images) -> np.ndarray:
        return np.asarray(self._outputs(images)[1], np.float64)

    def describe(self) -> str:
        weights = (f"{os.path.basename(self.weights_path)} sha256 {self.weights_sha256[:16]}" if self.weights_path
                   else "RANDOM weights (tests only)")
        return f"pytorch-fid: FID Inception-v3 (family A, 2015-12-05 graph, pytorch-fid layout), pool3 2048-d, {weights}"


class KerasInception(FidInception):
    """``keras.applications.InceptionV3`` with ImageNet weights from a local file: pool (2048) and logits."""

    name = "keras-imagenet"
    family = "keras-imagenet: keras.applications' ImageNet Inception-v3 (no paper's)"
    has_logits = True
    protocol_input = "[-1, 1] → bilinear resize to 299 (half-pixel, no antialias); RGB (Keras' own x/127.5 − 1)"
    pipeline_id = "keras"

    def __init__(self, weights: str | None = None):
        import keras

        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(missing_weights_message("keras-imagenet", weights))
        base = keras.applications.InceptionV3(include_top=True, weights=None, classifier_activation=None)
        if weights is not None:
            base.load_weights(weights)
        pool = base.get_layer("avg_pool").output
        self.model = keras.Model(base.input, [pool, base.output])
        self.weights_path = weights
        self.weights_sha256 = sha256(weights) if weights else None

    @staticmethod
    def preprocess(images):
        import tensorflow as tf

        return tf.image.resize(tf.convert_to_tensor(images, tf.float32), (299, 299), method="bilinear", antialias=False)

    def describe(self) -> str:
        weights = (f"{os.path.basename(self.weights_path)} sha256 {self.weights_sha256[:16]}" if self.weights_path
                   else "RANDOM weights (tests only)")
        return f"keras-imagenet: keras.applications.InceptionV3 ImageNet (NOT the FID network: not comparable with papers), {weights}"


class TorchvisionFidInception(FidInception):
    """Family B: torchvision's ImageNet Inception3, average-pooled Mixed_7c (2048-d), with DM-GAN's and
    DF-GAN's input transform (module docstring). ``features(images)`` → (N, 2048); no logits (no IS)."""

    name = "torchvision"
    family = "B: torchvision's ImageNet Inception-v3 (avg-pooled Mixed_7c)"
    has_logits = False
    protocol_input = ("DF-GAN / DM-GAN (pytorch-fid 802da39): [-1, 1] → [0, 1] → bilinear resize to 299 (half-pixel, "
                      "no antialias) → x·(σ_c/0.5) + (μ_c − 0.5)/0.5, ImageNet μ = (0.485, 0.456, 0.406), "
                      "σ = (0.229, 0.224, 0.225); RGB")
    pipeline_id = "torchvision-dfgan"
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, weights: str | None = None):
        if weights is not None and not os.path.isfile(weights):
            raise FileNotFoundError(missing_weights_message("torchvision", weights))
        super().__init__(weights, variant="torchvision", input_size=299)

    @classmethod
    def preprocess(cls, images):
        import tensorflow as tf

        unit = (tf.convert_to_tensor(images, tf.float32) + 1.0) / 2.0
        unit = tf.image.resize(unit, (299, 299), method="bilinear", antialias=False)
        scale = tf.constant([s / 0.5 for s in cls.STD], tf.float32)
        shift = tf.constant([(m - 0.5) / 0.5 for m in cls.MEAN], tf.float32)
        return unit * scale + shift

    def _outputs(self, images):
        import tensorflow as tf

        _, mixed_7c = self._call(self.preprocess(images))
        return tf.reduce_mean(mixed_7c, axis=[1, 2]), None

    def logits(self, images) -> np.ndarray:
        raise ValueError("The torchvision FID protocol has no classifier: no Inception Score with it.")

    def describe(self) -> str:
        weights = (f"{os.path.basename(self.weights_path)} sha256 {self.weights_sha256[:16]}" if self.weights_path
                   else "RANDOM weights (tests only)")
        return f"torchvision: ImageNet Inception-v3 (family B, DM-GAN's and DF-GAN's FID), avg-pooled Mixed_7c 2048-d, {weights}"


#: The FID protocols by name (``--extractor`` of make eval, the ``fid_extractor`` setting of a run).
PROTOCOLS = {"pytorch-fid": FidInception, "torchvision": TorchvisionFidInception, "keras-imagenet": KerasInception}
FORMER_NAMES = {"tf-fid": "pytorch-fid"}  # config.json files of earlier runs say tf-fid


def protocol_name(name: str) -> str:
    """The protocol a name stands for (a former name is read as its protocol); unknown names refused."""
    name = FORMER_NAMES.get(name, name)
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown FID protocol {name!r}: choose {', '.join(PROTOCOLS)} (or oracle on shapes).")
    return name


def make_extractor(name: str, weights: str | None):
    return PROTOCOLS[protocol_name(name)](weights)


def _convert(argv):
    if len(argv) != 3 or argv[0] != "convert":
        raise SystemExit("usage: python -m t2igan.metrics.inception convert pt_inception-2015-12-05-6726825d.pth OUT.npz")
    state = read_state_dict(argv[1])
    FidInception().load(state)  # checks every key and shape before writing anything
    np.savez(argv[2], **state)
    print(f"Wrote {argv[2]} ({len(state)} arrays), sha256 {sha256(argv[2])}")


if __name__ == "__main__":
    import sys

    _convert(sys.argv[1:])
