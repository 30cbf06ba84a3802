"""The architecture zoo: one short Keras function per net, registered by name.

Each function maps the normalized (and, in training, augmented) image tensor to class logits.
:func:`build_model` adds what every net shares: a uint8 input, the normalization statistics
from the preprocess stage, the augmentation layers and a float32 softmax, so a saved model
takes raw CIFAR images, returns probabilities and needs nothing else.
"""

import functools
import socket
import sys
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from keras.constraints import MaxNorm

from src import cpu
from src.errors import PipelineError

ARCHITECTURES: dict[str, Callable] = {}


def register(function: Callable) -> Callable:
    ARCHITECTURES[function.__name__] = function
    return function


def _conv(filters, kernel=3, **kwargs):
    return layers.Conv2D(filters, kernel, padding="same", **kwargs)


@register
def elu3(x, num_classes):
    """Seed 000: three 3x3 ELU convs (16/32/64) with pooling, dense 512, dropout 0.2 (553,514 params)."""
    for filters in (16, 32, 64):
        x = _conv(filters, activation="elu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dropout(0.2)(layers.Dense(512, activation="elu")(x))
    return layers.Dense(num_classes)(x)


@register
def relu4(x, num_classes):
    """Seed 001, 4-layer net: conv 32/32, 64/64 (second of each pair unpadded), dense 512.

    The seed's SGD learning rate 0.1 diverges (loss stays at ln 10 from the first epoch), so
    params.yaml uses 0.01, the closest power of ten that trains; momentum 0.9, Nesterov and
    the Keras 2 ``decay=1e-6`` are kept.
    """
    for filters in (32, 64):
        x = _conv(filters, activation="relu")(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)


@register
def relu6(x, num_classes):
    """Seed 001, 6-layer net: conv pairs 32/64/128 with dropout 0.2, dense 1024 with max-norm 3.

    Learning rate 0.01 instead of the seed's diverging 0.1, as for relu4.
    """
    for filters in (32, 64, 128):
        x = layers.Dropout(0.2)(_conv(filters, activation="relu")(x))
        x = layers.MaxPooling2D(2)(_conv(filters, activation="relu")(x))
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dense(1024, activation="relu", kernel_constraint=MaxNorm(3))(x)
    return layers.Dense(num_classes)(layers.Dropout(0.2)(x))


@register
def strided2(x, num_classes):
    """Seed 002, model_1: two 5x5 stride-2 convs, pooling, dense 512 (181,162 params)."""
    x = layers.Conv2D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 5, strides=2, activation="relu")(x)
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)


@register
def strided4(x, num_classes):
    """Seed 002, model_2: conv 5x5 32/32, pool, conv 3x3 32/16, pool, dense 512 (252,378 params)."""
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 5, activation="relu")(x)
    x = layers.Dropout(0.5)(layers.MaxPooling2D(2)(x))
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.Dropout(0.5)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)


@register
def conv4(x, num_classes):
    """Seed 003: four 3x3 ReLU convs 32/64/128/256 with pooling, dropout 0.5, dense 512
    (964,516 params with CIFAR-100's 100 classes)."""
    for filters in (32, 64, 128, 256):
        x = layers.MaxPooling2D(2)(_conv(filters, activation="relu")(x))
    x = layers.Dense(512, activation="relu")(layers.Dropout(0.5)(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)


def _vgg6(x, num_classes, top_filters=128, dropout=0.0, batch_norm=False):
    # Seed 004 leaves the convs without activation: the blocks are linear up to the dense layers.
    for filters in (32, 64, top_filters):
        x = _conv(filters)(_conv(filters)(x))
        if batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D()(x)
        if dropout and filters != top_filters:
            x = layers.Dropout(dropout)(x)
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    if dropout:
        x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes)(x)


@register
def vgg6(x, num_classes):
    """Seed 004, base: conv pairs 32/64/128 without activation, dense 128/64 (558,186 params)."""
    return _vgg6(x, num_classes)


@register
def vgg6_dropout(x, num_classes):
    """Seed 004, + dropout 0.2 after the first two blocks and the dense layers (top convs 256)."""
    return _vgg6(x, num_classes, top_filters=256, dropout=0.2)


@register
def vgg6_bn(x, num_classes):
    """Seed 004, + batch-norm after each conv pair (otherwise as vgg6_dropout)."""
    return _vgg6(x, num_classes, top_filters=256, dropout=0.2, batch_norm=True)


@register
def vgg6_bn_aug(x, num_classes):
    """Seed 004, + augmentation (shift 0.1, horizontal flip: set in params.yaml), net as vgg6_bn."""
    return _vgg6(x, num_classes, top_filters=256, dropout=0.2, batch_norm=True)


VGG16_NOTOP = ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
               "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "6d6bbae143d832006294945121d1f1fc")
WEIGHTS_TIMEOUT_SECONDS = 30


def _fetch_imagenet_weights(arch: str) -> str:
    """Path of the cached VGG16 ImageNet weights, fetched once with a timeout so it never hangs."""
    name, url, md5 = VGG16_NOTOP
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(WEIGHTS_TIMEOUT_SECONDS)
    try:
        return keras.utils.get_file(name, url, file_hash=md5, cache_subdir="models")
    except Exception as error:  # urllib, socket and hash errors all mean "no weights"
        raise PipelineError(f"cannot fetch the ImageNet weights for {arch} ({' '.join(str(error).split())}); "
                            f"set `train.{arch}.weights: null` in params.yaml to train from scratch "
                            f"offline, or put {name} in ~/.keras/models/") from None
    finally:
        socket.setdefaulttimeout(previous)


def _vgg16(x, num_classes, weights=None, arch="vgg16_transfer"):
    weights_path = _fetch_imagenet_weights(arch) if weights == "imagenet" else None
    base = keras.applications.VGG16(include_top=False, weights=weights_path, input_shape=(32, 32, 3))
    x = layers.GlobalAveragePooling2D()(base(x))
    x = layers.Dropout(0.2)(layers.Dense(128, activation="relu")(x))
    x = layers.Dropout(0.2)(layers.Dense(64, activation="relu")(x))
    return layers.Dense(num_classes)(x)


@register
def vgg16_transfer(x, num_classes, weights=None):
    """Seed 004, VGG16 base (ImageNet weights), global average pooling, dense 128/64, dropout 0.2."""
    return _vgg16(x, num_classes, weights, "vgg16_transfer")


@register
def vgg16_transfer_aug(x, num_classes, weights=None):
    """Seed 004, VGG16 transfer + augmentation (shift 0.1, horizontal flip: set in params.yaml)."""
    return _vgg16(x, num_classes, weights, "vgg16_transfer_aug")


def _conv_bn(x, filters):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    # Momentum 0.9 (Keras' default is 0.99): the moving statistics must settle within a few epochs.
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


@register
def resnet_fast(x, num_classes, width=16):
    """Ours: the ResNet-9 of Page's DAWNBench entry at a quarter of its width (16-32-64-128
    channels, 24 M multiply-adds per image): prep conv, three pooled stages, residual blocks
    after the first and the last, global max pooling. Half width trained 3.5x slower per epoch
    in a side-by-side sweep on 2 cores, too slow for the 25-minute budget. Trained with
    one-cycle Nesterov SGD, label smoothing and flip + pad-crop augmentation (params.yaml)."""
    x = _conv_bn(x, width)
    for stage, filters in enumerate((2 * width, 4 * width, 8 * width)):
        x = layers.MaxPooling2D()(_conv_bn(x, filters))
        if stage != 1:
            x = layers.Add()([x, _conv_bn(_conv_bn(x, filters), filters)])
    x = layers.Dense(num_classes)(layers.GlobalMaxPooling2D()(x))
    # Max-pooled features are large; Page scales the logits by 1/8 to keep early training stable.
    return layers.Rescaling(0.125)(x)


# PyTorch's default init, which airbench keeps for the filters and the head: uniform within
# 1/sqrt(fan_in). Keras' Glorot default is up to 1.7x larger, and behind BatchNorm a larger
# kernel trains more slowly (the update moves its direction by lr / |w|^2).
TORCH_DEFAULT_INIT = keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")


def _dirac_conv(x, filters):
    # Airbench's Dirac init: the first filters start as the identity of the input channels, so
    # every block begins close to passing its input through.
    conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=TORCH_DEFAULT_INIT)
    x = conv(x)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    channels = kernel.shape[2]
    kernel[:, :, :, :channels] = 0
    kernel[1, 1, range(channels), range(channels)] = 1
    conv.kernel.assign(kernel)
    return x


# Airbench trains BatchNorm shifts at 64x the learning rate of the weights, and Keras has no
# per-variable rate: the scale is frozen at 1/8 and the output multiplied by 8, so the shift's
# gradient is 8x larger and each of its steps moves the output 8x further (64x in all).
BIAS_RATE_SCALE = 8.0


def _bn_gelu(x):
    # Frozen scale, only the shift trains, and fast-moving statistics: airbench's momentum 0.6 keeps
    # 0.6 of the running statistics each step (PyTorch's `momentum=0.4`), as Keras' momentum 0.6 does.
    norm = layers.BatchNormalization(momentum=0.6, epsilon=1e-12,
                                     gamma_initializer=keras.initializers.Constant(1 / BIAS_RATE_SCALE))
    x = norm(x)
    norm.gamma.trainable = False  # a saved model does not keep this: reload, and the scale would train
    return layers.Activation("gelu")(layers.Rescaling(BIAS_RATE_SCALE)(x))


@register
def airbench(x, num_classes, widths=(64, 256, 256)):
    """Ours: airbench94 (Keller Jordan, 2024: 94 % CIFAR-10 in 9.9 epochs, github.com/KellerJordan/
    cifar10-airbench, legacy/airbench94.py) ported to Keras. A frozen 2x2 patch-whitening conv
    set from the training images (:func:`init_patch_whitening`), three conv-pool-BN-GELU blocks
    of 64/256/256 channels with Dirac-initialized convs, BatchNorm with frozen scales and shifts
    that learn 64x faster, global max pooling and a bias-free linear head scaled by 1/9
    (1,975,096 params with the frozen ones).

    Trained with Nesterov SGD (warm-up then decay), Lookahead, label smoothing 0.2, batch 1024,
    flip and 2-pixel translation, in bfloat16 (params.yaml). Left out: training the whitening
    bias for the first epochs (it is set from the data and frozen); the flip alternates by epoch
    in airbench, randomly here."""
    # In float32: bfloat16 would round away the faint high-frequency components it amplifies.
    x = layers.Conv2D(24, 2, trainable=False, name=WHITENING_LAYER, dtype="float32")(x)
    x = layers.Activation("gelu", dtype="float32")(x)
    for width in widths:
        x = _bn_gelu(layers.MaxPooling2D()(_dirac_conv(x, width)))
        x = _bn_gelu(_dirac_conv(x, width))
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=TORCH_DEFAULT_INIT)(layers.GlobalMaxPooling2D()(x))
    return layers.Rescaling(1 / 9)(x)


WHITENING_LAYER = "patch_whitening"
WHITENING_IMAGES = 5000


def init_patch_whitening(model: keras.Model, images: np.ndarray, epsilon: float = 5e-4) -> None:
    """Set airbench's frozen first layer from the data: the eigenvectors of the covariance of the
    training images' 2x2 patches, scaled by 1/sqrt(eigenvalue), and their negatives. Airbench
    computes them on images standardized per channel; the standardization is folded into the
    kernel and bias here, so the layer whitens whatever `preprocess.normalization` feeds it."""
    layer = model.get_layer(WHITENING_LAYER)
    x = keras.ops.convert_to_numpy(model.get_layer("normalization")(images[:WHITENING_IMAGES].astype("float32")))
    mean, std = x.mean(axis=(0, 1, 2), dtype="float64"), x.std(axis=(0, 1, 2), dtype="float64")
    patches = tf.image.extract_patches((x - mean) / std, sizes=[1, 2, 2, 1], strides=[1, 1, 1, 1],
                                       rates=[1, 1, 1, 1], padding="VALID")  # (row, column, channel) order, as a kernel
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(keras.ops.convert_to_numpy(patches).reshape(-1, 12),
                                                      rowvar=False))
    filters = eigenvectors[:, ::-1] / np.sqrt(eigenvalues[::-1] + epsilon)  # largest first
    kernel = np.concatenate([filters, -filters], axis=1) / np.tile(std, 4)[:, None]
    layer.kernel.assign(kernel.reshape(2, 2, 3, 24))
    layer.bias.assign(-np.tile(mean, 4) @ kernel)


def _augmentation(config: dict, seed: int) -> list:
    augmentation = config.get("augmentation") or {}
    steps = []
    if augmentation.get("horizontal_flip"):
        steps.append(functools.partial(layers.RandomFlip, "horizontal"))
    if augmentation.get("shift"):
        shift = augmentation["shift"]
        # ImageDataGenerator's default fill mode, as in seed 004
        steps.append(functools.partial(layers.RandomTranslation, shift, shift, fill_mode="nearest"))
    if augmentation.get("crop_padding"):
        # Pad-and-random-crop is a random integer shift; RandomCrop would resize instead of
        # center-crop at inference, RandomTranslation is the identity there. Borders reflected,
        # as Page's ResNet and airbench pad. A shift drawn within +-(padding + 0.5) pixels and
        # rounded is each of the 2 * padding + 1 crops equally often, as pad-and-crop; within
        # +-padding, the outermost crops came half as often.
        shift = (augmentation["crop_padding"] + 0.5) / 32
        steps.append(functools.partial(layers.RandomTranslation, shift, shift, fill_mode="reflect",
                                       interpolation="nearest"))
    # A seed per layer: layers seeded alike draw the same numbers, and every image shifted up
    # was then flipped, none shifted down was.
    # In float32, as the normalization before them: a bfloat16 policy would round the images again.
    return [make(seed=seed + offset, dtype="float32") for offset, make in enumerate(steps)]


def precision_policy(precision: str, name: str) -> str:
    """Keras' dtype policy for `train.NAME.precision`: bfloat16 computes in bfloat16 and keeps the
    weights (and build_model's softmax, hence the loss) in float32. Without a CPU that has bfloat16
    instructions oneDNN emulates them many times slower, so it falls back to float32 there."""
    if precision != "bfloat16":
        return "float32"
    if not (cpu.has_bfloat16() or tf.config.list_physical_devices("GPU")):
        print(f"warning: train.{name}.precision is bfloat16 but this CPU ({cpu.model_name()}) has none of "
              f"{', '.join(cpu.BFLOAT16_FLAGS)}; training {name} in float32", file=sys.stderr)
        return "float32"
    return "mixed_bfloat16"


def with_tta(model: keras.Model, tta: str) -> keras.Model:
    """``model`` behind test-time augmentation (`evaluate.tta`): `flip` averages its logits for each image
    and its mirror image; `flip_shift` gives that half the weight and the same for the image shifted one
    pixel up-left and one down-right (borders reflected), a quarter each: airbench's level 2, 6 views.

    Built from keras.ops in a functional model around ``model``'s logits (the input of its softmax
    layer), so the result saves, loads and serves as any Keras model, without custom objects."""
    if tta == "none":
        return model
    if tta not in ("flip", "flip_shift"):
        raise ValueError(f"unknown test-time augmentation {tta!r}: none, flip or flip_shift")
    logits = keras.Model(model.inputs, model.get_layer("probabilities").input, name=f"{model.name}_logits")
    images = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="image")

    def mirrored(x):
        return (logits(x) + logits(keras.ops.flip(x, axis=2))) / 2

    averaged = mirrored(images)
    if tta == "flip_shift":
        padded = keras.ops.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
        averaged = averaged / 2 + (mirrored(padded[:, :-2, :-2]) + mirrored(padded[:, 2:, 2:])) / 4
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(averaged)
    return keras.Model(images, outputs, name=model.name)


def build_model(name: str, num_classes: int, normalization: dict, config: dict | None = None,
                train_images: np.ndarray | None = None) -> keras.Model:
    """Input (uint8) -> normalization -> augmentation (training only) -> architecture ``name`` ->
    softmax in float32. ``train_images`` set data-dependent layers (airbench's whitening)."""
    if name not in ARCHITECTURES:
        raise PipelineError(f"unknown architecture {name!r} in `architectures`; choose from "
                            f"{', '.join(sorted(ARCHITECTURES))}")
    config = config or {}
    architecture = ARCHITECTURES[name]
    if name.startswith("vgg16"):
        architecture = functools.partial(architecture, weights=config.get("weights"))
    # Global in Keras: set for every model built, so one model's policy never leaks into the next.
    keras.config.set_dtype_policy(precision_policy(config.get("precision", "float32"), name))
    inputs = keras.Input((32, 32, 3), dtype="uint8", name="image")
    variance = [s**2 for s in normalization["std"]]
    # Normalized in float32: bfloat16's 8-bit mantissa cannot tell neighbouring pixel values apart.
    x = layers.Normalization(mean=normalization["mean"], variance=variance, name="normalization",
                             dtype="float32")(inputs)
    for step in _augmentation(config, config.get("seed", 0)):
        x = step(x)
    logits = architecture(x, num_classes)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=name)
    if train_images is not None and WHITENING_LAYER in {layer.name for layer in model.layers}:
        init_patch_whitening(model, train_images)
    return model
