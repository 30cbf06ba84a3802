"""The augmentation layers a recipe asks for (`augmentation`): inside the model, active in training only."""

import functools

from keras import layers

from src.training.recipe import Augmentation


def augmentation_layers(augmentation: Augmentation | None, seed: int) -> list:
    """The recipe's `augmentation` as Keras layers, each seeded from the recipe's `seed`."""
    if augmentation is None:
        return []
    steps = []
    if augmentation.horizontal_flip:
        steps.append(functools.partial(layers.RandomFlip, "horizontal"))
    if augmentation.shift:
        shift = augmentation.shift
        # ImageDataGenerator's default fill mode, as in seed 004
        steps.append(functools.partial(layers.RandomTranslation, shift, shift, fill_mode="nearest"))
    if augmentation.crop_padding:
        # Pad-and-random-crop is a random integer shift; RandomCrop would resize instead of
        # center-crop at inference, RandomTranslation is the identity there. Borders reflected
        # including the edge pixel (Keras' "reflect" is numpy's "symmetric"); Page's ResNet and
        # airbench reflect without it, one pixel apart, a fill RandomTranslation does not offer.
        # A shift drawn within +-(padding + 0.5) pixels and
        # rounded is each of the 2 * padding + 1 crops equally often, as pad-and-crop; within
        # +-padding, the outermost crops came half as often.
        shift = (augmentation.crop_padding + 0.5) / 32
        steps.append(functools.partial(layers.RandomTranslation, shift, shift, fill_mode="reflect",
                                       interpolation="nearest"))
    # A seed per layer: layers seeded alike draw the same numbers, and every image shifted up
    # was then flipped, none shifted down was.
    # In float32, as the normalization before them: a reduced-precision policy would round the images again.
    return [make(seed=seed + offset, dtype="float32") for offset, make in enumerate(steps)]
