"""Building blocks shared by several architectures (a change here reruns every net's stages)."""

import socket

import keras
from keras import layers

from src.core.errors import PipelineError


def conv(filters, kernel=3, **kwargs):
    return layers.Conv2D(filters, kernel, padding="same", **kwargs)


def vgg6(x, num_classes, top_filters=128, dropout=0.0, batch_norm=False):
    """Seed 004's VGG-style net: conv pairs 32/64/``top_filters``, dense 128/64."""
    # Seed 004 leaves the convs without activation: the blocks are linear up to the dense layers.
    for filters in (32, 64, top_filters):
        x = conv(filters)(conv(filters)(x))
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


VGG16_NOTOP = ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
               "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "6d6bbae143d832006294945121d1f1fc")
WEIGHTS_TIMEOUT_SECONDS = 30


def fetch_imagenet_weights(arch: str) -> str:
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


def vgg16(x, num_classes, weights, arch):
    """Seed 004's transfer net: the VGG16 base, global average pooling, dense 128/64, dropout 0.2."""
    weights_path = fetch_imagenet_weights(arch) if weights == "imagenet" else None
    base = keras.applications.VGG16(include_top=False, weights=weights_path, input_shape=(32, 32, 3))
    x = layers.GlobalAveragePooling2D()(base(x))
    x = layers.Dropout(0.2)(layers.Dense(128, activation="relu")(x))
    x = layers.Dropout(0.2)(layers.Dense(64, activation="relu")(x))
    return layers.Dense(num_classes)(x)
