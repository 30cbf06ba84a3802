from src.architectures import blocks


def vgg6(x, num_classes):
    """Seed 004, base: conv pairs 32/64/128 without activation, dense 128/64 (558,186 params)."""
    return blocks.vgg6(x, num_classes)
