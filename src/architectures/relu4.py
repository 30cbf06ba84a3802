from keras import layers

from src.architectures.blocks import conv


def relu4(x, num_classes):
    """Seed 001, 4-layer net: conv 32/32, 64/64 (second of each pair unpadded), dense 512.

    The seed's SGD learning rate 0.1 diverges (loss stays at ln 10 from the first epoch), so
    params.yaml uses 0.01, the closest power of ten that trains; momentum 0.9, Nesterov and
    the Keras 2 ``decay=1e-6`` are kept.
    """
    for filters in (32, 64):
        x = conv(filters, activation="relu")(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)
