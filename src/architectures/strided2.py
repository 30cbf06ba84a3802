from keras import layers


def strided2(x, num_classes):
    """Seed 002, model_1: two 5x5 stride-2 convs, pooling, dense 512 (181,162 params)."""
    x = layers.Conv2D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 5, strides=2, activation="relu")(x)
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)
