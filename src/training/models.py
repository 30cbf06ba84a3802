"""What every net shares: :func:`build_model` wraps an architecture (src/architectures/NAME.py) in a uint8
input, the normalization statistics of its training images, the augmentation layers and a float32
softmax, so a saved model takes raw CIFAR images, returns probabilities and needs nothing else.
"""

import functools

import keras
import numpy as np
from keras import layers

from src import architectures
from src.core.errors import PipelineError
from src.training import device
from src.training.augmentation import augmentation_layers


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
