from src.architectures import blocks


def vgg6_bn_aug(x, num_classes):
    """Seed 004, + augmentation (shift 0.1, horizontal flip: set in params.yaml), net as vgg6_bn, so it
    can continue vgg6_bn's trained model (`init_from: vgg6_bn`) as the seed's cifar_cnn_4 does."""
    return blocks.vgg6(x, num_classes, top_filters=256, dropout=0.2, batch_norm=True)
