"""Chapter 1 — GAN-INT-CLS: Reed et al., "Generative Adversarial Text to Image Synthesis", ICML 2016.

Read top to bottom beside the paper and the README:

1. the text encoder φ(t): Reed's char-CNN-RNN (CVPR 2016), trained with the
   symmetric DS-SJE loss against an image encoder (§2.1 of the CVPR paper);
2. the generator G(z, φ(t)) and discriminator D(x, φ(t)) of ``main_cls_int.lua``;
3. the GAN-CLS loss (matching-aware D: real/right, real/wrong, fake/right) and
   GAN-INT (G also trained on interpolated text embeddings), Algorithm 1.

Official hyperparameters live in ``profiles.py`` (profile ``paper``).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from t2igan.layers import bce_with_logits, normal_init, torch_linear
from t2igan.training.gan import ConditionalGAN

LEAK = 0.2  # LeakyReLU slope in Reed's code (Keras' default is 0.3)


# ---------------------------------------------------------------------------
# 1. Text encoder: char-CNN-RNN ("HybridCNNLong" + GRU, the CUB encoder)
# ---------------------------------------------------------------------------
class CharCnnRnn(keras.Model):
    """Characters → 1024-d caption embedding φ(t).

    one-hot chars (L × 70) → Conv1D(k4)+ReLU → MaxPool(3) → Conv1D(k4)+ReLU →
    MaxPool(3) → Conv1D(k4)+ReLU → GRU over the remaining steps → mean of the
    hidden states → Linear → φ(t). At the paper widths (384, 512, 512; GRU 512;
    1024 out; L = 201 → 18 GRU steps) this has Reed's 4,045,184 parameters.
    Keras' GRU with ``reset_after=True`` has the same six matrices and six bias
    vectors as Reed's FixedGRU; it applies the reset gate after the recurrent
    product (the cuDNN form).
    """

    def __init__(self, alphabet_depth=70, conv_widths=(384, 512, 512), rnn_width=512, embedding_dim=1024, **kwargs):
        super().__init__(**kwargs)
        self.alphabet_depth = alphabet_depth
        self.convs = [layers.Conv1D(width, 4, activation="relu") for width in conv_widths]
        self.pools = [layers.MaxPooling1D(3, 3), layers.MaxPooling1D(3, 3)]
        self.rnn = layers.GRU(rnn_width, return_sequences=True, reset_after=True)
        self.project = layers.Dense(embedding_dim)

    def call(self, char_ids, training=False):
        # Id 0 (outside the alphabet, or padding) becomes an all-zero row, as in Reed's loader.
        x = tf.one_hot(char_ids, self.alphabet_depth + 1)[..., 1:]
        x = self.pools[0](self.convs[0](x))
        x = self.pools[1](self.convs[1](x))
        x = self.convs[2](x)
        hidden = self.rnn(x, training=training)
        return self.project(tf.reduce_mean(hidden, axis=1))


class ImageEncoder(keras.Model):
    """The image side of the joint embedding.

    Reed et al. used fixed 1024-d GoogLeNet features; with no ImageNet network
    to download, a small CNN is trained jointly with the text encoder instead
    (documented in the README). Its output lives in the same space as φ(t). The last
    feature map is flattened, not averaged, so the embedding keeps *where* things are
    (captions state positions).
    """

    def __init__(self, embedding_dim=1024, widths=(32, 64, 128, 256), **kwargs):
        super().__init__(**kwargs)
        self.blocks = [layers.Conv2D(width, 4, strides=2, padding="same") for width in widths]
        self.norms = [layers.GroupNormalization(groups=8) for _ in widths]
        self.flatten = layers.Flatten()
        self.project = layers.Dense(embedding_dim)

    def call(self, images, training=False):
        x = images
        for conv, norm in zip(self.blocks, self.norms):
            x = tf.nn.leaky_relu(norm(conv(x)), LEAK)
        return self.project(self.flatten(x))


def ds_sje_loss(image_features, text_features, class_ids, margin=1.0):
    """Symmetric structured joint embedding loss (DS-SJE, Reed et al. CVPR 2016).

    Compatibility F(v, t) = ⟨θ(v), φ(t)⟩. For each matching pair (i, i) and each
    other pair (i, j) of a *different class*, a hinge max(0, margin + F(v_i, t_j) − F(v_i, t_i)),
    in both directions (image → text and text → image), summed and divided by B²
    as in ``train_sje_hybrid.lua``. Returns one value per example (for replica-correct averaging).
    """
    scores = tf.matmul(image_features, text_features, transpose_b=True)  # (B_img, B_txt)
    matching = tf.linalg.diag_part(scores)
    different = tf.cast(tf.not_equal(class_ids[:, None], class_ids[None, :]), scores.dtype)
    image_to_text = tf.nn.relu(margin + scores - matching[:, None]) * different
    text_to_image = tf.nn.relu(margin + scores - matching[None, :]) * different
    batch = tf.cast(tf.shape(scores)[0], scores.dtype)
    return (tf.reduce_sum(image_to_text, axis=1) + tf.reduce_sum(text_to_image, axis=0)) / batch


class JointEmbedding(keras.Model):
    """Pretraining model for φ(t): text and image encoders trained with DS-SJE (``chapter1-pretrain``)."""

    def __init__(self, text_encoder, image_encoder, **kwargs):
        super().__init__(**kwargs)
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.loss_tracker = keras.metrics.Mean(name="sje_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="retrieval_top1")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _scores(self, batch, training):
        image_features = self.image_encoder(batch["image"], training=training)
        text_features = self.text_encoder(batch["caption_ids"], training=training)
        return image_features, text_features

    @staticmethod
    def retrieval_accuracy(image_features, text_features, class_ids):
        """Caption → image top-1 within the batch; an image of the caption's class counts as a hit."""
        best = tf.argmax(tf.matmul(text_features, image_features, transpose_b=True), axis=1, output_type=tf.int32)
        return tf.cast(tf.equal(tf.gather(class_ids, best), class_ids), tf.float32)

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            image_features, text_features = self._scores(batch, training=True)
            per_example = ds_sje_loss(image_features, text_features, batch["class_id"])
            loss = ConditionalGAN.average(per_example)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(per_example)
        self.accuracy_tracker.update_state(self.retrieval_accuracy(image_features, text_features, batch["class_id"]))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, batch):
        image_features, text_features = self._scores(batch, training=False)
        self.loss_tracker.update_state(ds_sje_loss(image_features, text_features, batch["class_id"]))
        self.accuracy_tracker.update_state(self.retrieval_accuracy(image_features, text_features, batch["class_id"]))
        return {m.name: m.result() for m in self.metrics}


# ---------------------------------------------------------------------------
# 2. Generator and discriminator (main_cls_int.lua)
# ---------------------------------------------------------------------------
def batch_norm(**kwargs):
    # PyTorch/Torch momentum 0.1 ≙ Keras 0.9; eps 1e-5; γ ~ N(1, 0.02) as in Reed's init.
    # synchronized=True: statistics over the global batch under tf.distribute.
    return layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=True,
        gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02), **kwargs
    )


class Bottleneck(layers.Layer):
    """x + [1×1 → BN → act → 3×3 → BN → act → 3×3 → BN]  (Reed's residual block; act applied after the sum by the caller)."""

    def __init__(self, width, inner, activation, use_bias, **kwargs):
        super().__init__(**kwargs)
        conv = dict(kernel_initializer=normal_init(), use_bias=use_bias)
        self.convs = [layers.Conv2D(inner, 1, **conv), layers.Conv2D(inner, 3, padding="same", **conv),
                      layers.Conv2D(width, 3, padding="same", **conv)]
        self.norms = [batch_norm(), batch_norm(), batch_norm()]
        self.activation = activation

    def call(self, x, training=False):
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = norm(conv(h), training=training)
            if i < 2:
                h = self.activation(h)
        return x + h


def _levels(image_size):
    if image_size not in (32, 64):
        raise ValueError(f"GAN-INT-CLS builds 32 or 64 px images, not {image_size}; set image_size to 32 or 64.")
    return 4 if image_size == 64 else 3  # number of 2× up/down-samplings between 4×4 and the image


class Generator(keras.Model):
    """G(z, φ(t)): φ(t) → Linear(128) + LeakyReLU(0.2); concat [z, t] → 4×4 → … → 64×64 tanh."""

    def __init__(self, text_dim=1024, noise_dim=100, projection_dim=128, base_width=128, image_size=64, conv_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim = noise_dim
        levels = _levels(image_size)
        widths = [base_width * 8 // 2**i for i in range(levels)]  # 1024, 512, 256, 128 at ngf 128
        conv = dict(kernel_initializer=normal_init(), use_bias=conv_bias)
        self.project_text = torch_linear(projection_dim, fan_in=text_dim)
        self.start = layers.Conv2DTranspose(widths[0], 4, padding="valid", **conv)  # 1×1 → 4×4
        self.start_norm = batch_norm()
        relu = tf.nn.relu
        self.residual_4 = Bottleneck(widths[0], widths[0] // 4, relu, conv_bias)
        self.up_8 = layers.Conv2DTranspose(widths[1], 4, strides=2, padding="same", **conv)
        self.up_8_norm = batch_norm()
        self.residual_8 = Bottleneck(widths[1], widths[1] // 4, relu, conv_bias)
        self.ups = [layers.Conv2DTranspose(w, 4, strides=2, padding="same", **conv) for w in widths[2:]]
        self.up_norms = [batch_norm() for _ in widths[2:]]
        self.to_image = layers.Conv2DTranspose(3, 4, strides=2, padding="same", **conv)

    def call(self, inputs, training=False):
        noise, text_embedding = inputs
        text = tf.nn.leaky_relu(self.project_text(text_embedding), LEAK)
        x = tf.concat([noise, tf.cast(text, noise.dtype)], axis=-1)[:, None, None, :]  # [z, t], noise first
        x = self.start_norm(self.start(x), training=training)  # BN, no ReLU before the residual block
        x = tf.nn.relu(self.residual_4(x, training=training))
        x = self.up_8_norm(self.up_8(x), training=training)
        x = tf.nn.relu(self.residual_8(x, training=training))
        for up, norm in zip(self.ups, self.up_norms):
            x = tf.nn.relu(norm(up(x), training=training))
        return tf.cast(tf.tanh(self.to_image(x)), tf.float32)


class Discriminator(keras.Model):
    """D(x, φ(t)): strided convs to 4×4×512, residual block, tiled projected text, 1×1 conv, 4×4 logit.

    As in the CUB/Flowers code, conv3 and conv4 have no LeakyReLU
    (``missing_activations=True``; the COCO script has them — set False to add them).
    """

    def __init__(self, text_dim=1024, projection_dim=128, base_width=64, image_size=64, conv_bias=False,
                 missing_activations=True, **kwargs):
        super().__init__(**kwargs)
        levels = _levels(image_size)
        widths = [base_width * 8 // 2 ** (levels - 1 - i) for i in range(levels)]  # 64, 128, 256, 512
        conv = dict(kernel_initializer=normal_init(), use_bias=conv_bias)
        self.pad = layers.ZeroPadding2D(1)  # PyTorch's symmetric pad 1 for 4×4 stride-2 convs
        self.downs = [layers.Conv2D(w, 4, strides=2, padding="valid", **conv) for w in widths]
        self.down_norms = [None] + [batch_norm() for _ in widths[1:]]
        # Which downsampling layers are followed by LeakyReLU (the last two are not, in the official code).
        self.down_activated = [True] * levels
        if missing_activations:
            self.down_activated[-2:] = [False, False]
        leaky = lambda h: tf.nn.leaky_relu(h, LEAK)
        self.residual = Bottleneck(widths[-1], widths[-1] // 4, leaky, conv_bias)
        self.project_text = torch_linear(projection_dim, fan_in=text_dim)
        self.text_norm = batch_norm()
        self.joint = layers.Conv2D(widths[-1], 1, **conv)
        self.joint_norm = batch_norm()
        self.logit = layers.Conv2D(1, 4, padding="valid", **conv)

    def call(self, inputs, training=False):
        images, text_embedding = inputs
        x = images
        for conv, norm, activated in zip(self.downs, self.down_norms, self.down_activated):
            x = conv(self.pad(x))
            if norm is not None:
                x = norm(x, training=training)
            if activated:
                x = tf.nn.leaky_relu(x, LEAK)
        x = tf.nn.leaky_relu(self.residual(x, training=training), LEAK)
        text = tf.nn.leaky_relu(self.text_norm(self.project_text(text_embedding), training=training), LEAK)
        text = tf.tile(tf.cast(text, x.dtype)[:, None, None, :], [1, 4, 4, 1])  # replicate 4×4
        x = tf.concat([x, text], axis=-1)  # [image, text], image first
        x = tf.nn.leaky_relu(self.joint_norm(self.joint(x), training=training), LEAK)
        return tf.cast(tf.reshape(self.logit(x), [-1]), tf.float32)


# ---------------------------------------------------------------------------
# 3. GAN-CLS + GAN-INT (Algorithm 1 of the paper, as coded in main_cls_int.lua)
# ---------------------------------------------------------------------------
class GanIntCls(ConditionalGAN):
    """One D step then one G step per batch.

    D:  L_D = BCE(D(x, t), 1) + w_cls · BCE(D(x̂, t), 0) + (1 − w_cls) · BCE(D(G(z, t), t), 0)
        (x̂ = an image of another class — the "wrong" image; w_cls = 0.5)
    G:  L_G = BCE(D(G(z, t), t), 1) on the batch's captions, plus, with GAN-INT,
        BCE(D(G(z', t_int), t_int), 1) with t_int = β·t1 + (1 − β)·t2, β = 0.5.

    Reed builds G's batch as 64 real-text rows + 32 interpolated rows and
    averages over the 96. Here *every* example gets an interpolation partner
    (the pipeline's ``wrong_text_embedding``) at half weight, which has the same
    expected loss and keeps every replica's rows independent of how the batch
    is split (so 1 and N replicas train identically). The two kinds of rows go
    through the networks as separate batches (see the G step).
    """

    metric_tags = {
        **ConditionalGAN.metric_tags,
        "d_real": "score/real_right", "d_wrong": "score/real_wrong", "d_fake": "score/fake_right",
    }

    def __init__(self, generator, discriminator, matching_aware=True, interpolation=True,
                 cls_weight=0.5, interp_beta=0.5, interp_weight=1.0, ema_decay=0.0, **kwargs):
        super().__init__(ema_decay=ema_decay, **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.matching_aware = matching_aware
        self.interpolation = interpolation
        self.cls_weight = cls_weight if matching_aware else 0.0
        self.interp_beta = interp_beta
        self.interp_weight = interp_weight
        self.track("d_loss", "g_loss", "d_real", "d_wrong", "d_fake")

    def train_step(self, batch):
        real, text = batch["image"], batch["text_embedding"]
        noise = batch["noise"]  # (B, 3, Z): one draw for the D step, two for the G step
        # ---- discriminator step
        fake = self.generator([noise[:, 0], text], training=True)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator([real, text], training=True)
            fake_logits = self.discriminator([tf.stop_gradient(fake), text], training=True)
            d_per_example = bce_with_logits(real_logits, 1.0) + (1.0 - self.cls_weight) * bce_with_logits(fake_logits, 0.0)
            if self.matching_aware:  # GAN-CLS: a real image with the wrong caption is "fake" too
                wrong_logits = self.discriminator([batch["wrong_image"], text], training=True)
                d_per_example += self.cls_weight * bce_with_logits(wrong_logits, 0.0)
            else:
                wrong_logits = real_logits
            d_loss = self.average(d_per_example)
        self.apply(self.discriminator_optimizer, tape, d_loss, self.discriminator.trainable_variables)

        # ---- generator step (fresh noise). Real-text rows and interpolated rows go through G and D
        # as two separate batches of B, like the D step's passes: one mixed 2B batch lets G exploit
        # BatchNorm statistics that D never sees in its own step (observed: D(fake) → 0 in the D step
        # while → 1 in the G step, and the samples collapse).
        with tf.GradientTape() as tape:
            generated = self.generator([noise[:, 1], text], training=True)
            g_per_example = bce_with_logits(self.discriminator([generated, text], training=True), 1.0)
            if self.interpolation:  # GAN-INT: also fool D on captions between two training captions
                interpolated = self.interp_beta * text + (1.0 - self.interp_beta) * batch["wrong_text_embedding"]
                generated_interpolated = self.generator([noise[:, 2], interpolated], training=True)
                interpolated_logits = self.discriminator([generated_interpolated, interpolated], training=True)
                weight = 0.5 * self.interp_weight  # Reed: 32 interpolated rows per 64 real ones
                g_per_example = (g_per_example + weight * bce_with_logits(interpolated_logits, 1.0)) / (1.0 + weight)
            g_loss = self.average(g_per_example)
        self.apply(self.generator_optimizer, tape, g_loss, self.generator.trainable_variables)
        self.update_ema()
        return self.record(  # metrics: plain means over this replica's rows; Keras averages replicas
            d_loss=tf.reduce_mean(d_per_example), g_loss=tf.reduce_mean(g_per_example),
            d_real=tf.sigmoid(real_logits), d_wrong=tf.sigmoid(wrong_logits), d_fake=tf.sigmoid(fake_logits),
        )

    def generate(self, noise, text_embedding):
        return self.sampling_generator([noise, text_embedding], training=False)
