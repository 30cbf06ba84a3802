from src.architectures import blocks

PRETRAINED_WEIGHTS = ("imagenet",)  # the keras.applications weights it can start from (`weights`)


def vgg16_transfer(x, num_classes, weights=None):
    """Seed 004, VGG16 base (ImageNet weights), global average pooling, dense 128/64, dropout 0.2."""
    return blocks.vgg16(x, num_classes, weights, "vgg16_transfer")
