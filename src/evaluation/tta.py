"""Test-time augmentation (`evaluate.tta`): a trained net wrapped so that each prediction averages
several views of the image. Used by evaluate, promote and predict, never by training."""

from typing import get_args

import keras
from keras import layers

from src.evaluation.schema import TtaMode

TTA_MODES = get_args(TtaMode)


def with_tta(model: keras.Model, tta: str) -> keras.Model:
    """``model`` behind test-time augmentation (`evaluate.tta`): `flip` averages its logits for each image
    and its mirror image; `flip_shift` gives that half the weight and the same for the image shifted one
    pixel up-left and one down-right (borders reflected), a quarter each: airbench's level 2, 6 views.

    Built from keras.ops in a functional model around ``model``'s logits (the input of its softmax
    layer), so the result saves, loads and serves as any Keras model, without custom objects."""
    if tta == "none":
        return model
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose from {', '.join(TTA_MODES)}")
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
