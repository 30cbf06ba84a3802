from keras import layers

from src.architectures.blocks import conv


def elu3(x, num_classes):
    """Seed 000: three 3x3 ELU convs (16/32/64) with pooling, dense 512, dropout 0.2 (553,514 params)."""
    for filters in (16, 32, 64):
        x = conv(filters, activation="elu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Dropout(0.2)(layers.Flatten()(x))
    x = layers.Dropout(0.2)(layers.Dense(512, activation="elu")(x))
    return layers.Dense(num_classes)(x)
