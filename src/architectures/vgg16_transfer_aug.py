from src.architectures import blocks

PRETRAINED_WEIGHTS = ("imagenet",)  # the keras.applications weights it can start from (`weights`)


def vgg16_transfer_aug(x, num_classes, weights=None):
    """Seed 004, VGG16 transfer + augmentation (shift 0.1, horizontal flip: set in params.yaml)."""
    return blocks.vgg16(x, num_classes, weights, "vgg16_transfer_aug")
