from src.architectures import blocks


def vgg6_dropout(x, num_classes):
    """Seed 004, + dropout 0.2 after the first two blocks and the dense layers (top convs 256)."""
    return blocks.vgg6(x, num_classes, top_filters=256, dropout=0.2)
