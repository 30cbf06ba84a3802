from keras import layers

from src.architectures.blocks import conv


def conv4(x, num_classes):
    """Seed 003: four 3x3 ReLU convs 32/64/128/256 with pooling, dropout 0.5, dense 512
    (964,516 params with CIFAR-100's 100 classes)."""
    for filters in (32, 64, 128, 256):
        x = layers.MaxPooling2D(2)(conv(filters, activation="relu")(x))
    x = layers.Dense(512, activation="relu")(layers.Dropout(0.5)(layers.Flatten()(x)))
    return layers.Dense(num_classes)(x)
