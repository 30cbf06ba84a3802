from keras import layers


def strided4(x, num_classes):
    """Seed 002, model_2: conv 5x5 32/32, pool, conv 3x3 32/16, pool, dense 512 (252,378 params)."""
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 5, activation="relu")(x)
    x = layers.Dropout(0.5)(layers.MaxPooling2D(2)(x))
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.Dropout(0.5)(layers.MaxPooling2D(2)(x))
    x = layers.Dropout(0.5)(layers.Dense(512, activation="relu")(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)
