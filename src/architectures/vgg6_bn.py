from src.architectures import blocks


def vgg6_bn(x, num_classes):
    """Seed 004, + batch-norm after each conv pair (otherwise as vgg6_dropout)."""
    return blocks.vgg6(x, num_classes, top_filters=256, dropout=0.2, batch_norm=True)
