from keras import layers
from keras.constraints import MaxNorm

from src.architectures.blocks import conv


def relu6(x, num_classes):
    """Seed 001, 6-layer net: conv pairs 32/64/128 with dropout 0.2, dense 1024 with max-norm 3.

    Learning rate 0.01 instead of the seed's diverging 0.1, as for relu4.
    """
    for filters in (32, 64, 128):
        x = layers.Dropout(0.2)(conv(filters, activation="relu")(x))
        x = layers.MaxPooling2D(2)(conv(filters, activation="relu")(x))
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dense(1024, activation="relu", kernel_constraint=MaxNorm(3))(x)
    return layers.Dense(num_classes)(layers.Dropout(0.2)(x))
