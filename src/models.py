"""What every net shares: :func:`build_model` wraps an architecture (src/architectures/NAME.py) in a uint8
input, the normalization statistics of its training images, the augmentation layers and a float32
softmax, so a saved model takes raw CIFAR images, returns probabilities and needs nothing else.
"""

import functools

import keras
import numpy as np
from keras import layers

from src import architectures, device
from src.errors import PipelineError


def augmentation_layers(config: dict, seed: int) -> list:
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
        # center-crop at inference, RandomTranslation is the identity there. Borders reflected
        # including the edge pixel (Keras' "reflect" is numpy's "symmetric"); Page's ResNet and
        # airbench reflect without it, one pixel apart, a fill RandomTranslation does not offer.
        # A shift drawn within +-(padding + 0.5) pixels and
        # rounded is each of the 2 * padding + 1 crops equally often, as pad-and-crop; within
        # +-padding, the outermost crops came half as often.
        shift = (augmentation["crop_padding"] + 0.5) / 32
        steps.append(functools.partial(layers.RandomTranslation, shift, shift, fill_mode="reflect",
                                       interpolation="nearest"))
    # A seed per layer: layers seeded alike draw the same numbers, and every image shifted up
    # was then flipped, none shifted down was.
    # In float32, as the normalization before them: a reduced-precision policy would round the images again.
    return [make(seed=seed + offset, dtype="float32") for offset, make in enumerate(steps)]


def build_model(name: str, num_classes: int, normalization: dict, config: dict | None = None,
                train_images: np.ndarray | None = None) -> keras.Model:
    """Input (uint8) -> normalization -> augmentation (training only) -> architecture ``name`` ->
    softmax in float32. ``train_images`` set data-dependent layers (airbench's whitening)."""
    if name not in architectures.names():
        raise PipelineError(f"unknown architecture {name!r} in `architectures`; choose from "
                            f"{', '.join(architectures.names())}")
    config = config or {}
    architecture = architectures.get(name)
    if config.get("weights"):
        architecture = functools.partial(architecture, weights=config["weights"])
    # Global in Keras: set for every model built, so one model's policy never leaks into the next.
    keras.config.set_dtype_policy(device.precision_policy(config.get("precision", "float32"), name))
    inputs = keras.Input((32, 32, 3), dtype="uint8", name="image")
    variance = [s**2 for s in normalization["std"]]
    # Normalized in float32: bfloat16's 8-bit mantissa cannot tell neighbouring pixel values apart.
    x = layers.Normalization(mean=normalization["mean"], variance=variance, name="normalization",
                             dtype="float32")(inputs)
    for step in augmentation_layers(config, config.get("seed", 0)):
        x = step(x)
    logits = architecture(x, num_classes)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=name)
    initialize = architectures.data_initializer(name)
    if train_images is not None and initialize is not None:
        initialize(model, train_images)
    return model


def _weighted_layers(model: keras.Model) -> list:
    # Augmentation layers hold only their random generators' state: not part of what was learned.
    return [layer for layer in model.layers if layer.weights
            and not isinstance(layer, layers.RandomFlip | layers.RandomTranslation)]


def load_parent(path, parent: str) -> keras.Model:
    try:
        return keras.models.load_model(path)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise PipelineError(f"`init_from: {parent}`: its model {path} cannot be loaded ({error}); train "
                            f"{parent} first (`dvc repro seeds/dvc.yaml`)") from None


def continue_from(model: keras.Model, parent: keras.Model, parent_name: str) -> None:
    """Start ``model`` from ``parent``'s trained weights, normalization included, layer by layer in order
    (`init_from`): as seed 004 builds cifar_cnn_4 on cifar_cnn_3's trained layers."""
    ours, theirs = _weighted_layers(model), _weighted_layers(parent)
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in ours]
    if shapes != [[tuple(w.shape) for w in layer.weights] for layer in theirs]:
        raise PipelineError(f"`init_from: {parent_name}`: {model.name} is not the same net as {parent_name} "
                            f"(their layers' weights differ in shape); continue from a model of the same "
                            "architecture")
    for layer, source in zip(ours, theirs, strict=True):
        layer.set_weights(source.get_weights())
