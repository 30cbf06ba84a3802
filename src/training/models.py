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
from src.training import device, fit
from src.training.augmentation import augmentation_layers
from src.training.normalization import normalization_stats
from src.training.recipe import Train


def build_model(name: str, num_classes: int, normalization: dict, config: Train,
                train_images: np.ndarray | None = None) -> keras.Model:
    """Input (uint8) -> normalization -> augmentation (training only) -> the recipe's net -> softmax in
    float32, named as the recipe ``name``. ``train_images`` set data-dependent layers (airbench's whitening)."""
    net = config.net or name
    if net not in architectures.names():
        raise PipelineError(f"unknown architecture {net!r}; choose from {', '.join(architectures.names())}")
    architecture = architectures.get(net)
    if config.weights:
        architecture = functools.partial(architecture, weights=config.weights)
    # Global in Keras: set for every model built, so one model's policy never leaks into the next.
    keras.config.set_dtype_policy(device.precision_policy(config.precision, name))
    inputs = keras.Input((32, 32, 3), dtype="uint8", name="image")
    variance = [s**2 for s in normalization["std"]]
    # Normalized in float32: bfloat16's 8-bit mantissa cannot tell neighbouring pixel values apart.
    x = layers.Normalization(mean=normalization["mean"], variance=variance, name="normalization",
                             dtype="float32")(inputs)
    for step in augmentation_layers(config.augmentation, config.seed):
        x = step(x)
    logits = architecture(x, num_classes)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=name)
    initialize = architectures.data_initializer(net)
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


def initial_model(name: str, config: Train, train_images: np.ndarray, num_classes: int,
                  parent: keras.Model | None = None) -> tuple[keras.Model, dict]:
    """The model the recipe ``name`` starts training from, and its normalization statistics: its net around
    the `normalization` of ``train_images``, initialized from the recipe's `seed`, or with ``parent``'s
    trained weights where the recipe continues it (`init_from`)."""
    normalization = normalization_stats(train_images, config.normalization)
    fit.make_deterministic(config.seed)
    model = build_model(name, num_classes, normalization, config, train_images=train_images)
    if config.init_from:
        if parent is None:
            raise PipelineError(f"`init_from: {config.init_from}`: {name} continues a trained model; load it first")
        continue_from(model, parent, config.init_from)
    return model, normalization
