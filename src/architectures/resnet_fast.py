from keras import layers


def conv_bn(x, filters):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    # Momentum 0.9 (Keras' default is 0.99): the moving statistics must settle within a few epochs.
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


def resnet_fast(x, num_classes, width=16):
    """Ours: the ResNet-9 of Page's DAWNBench entry at a quarter of its width (16-32-64-128
    channels, 24 M multiply-adds per image): prep conv, three pooled stages, residual blocks
    after the first and the last, global max pooling. Half width trained 3.5x slower per epoch
    in a side-by-side sweep on 2 cores, too slow for the 25-minute budget. Trained with
    one-cycle Nesterov SGD, label smoothing and flip + pad-crop augmentation (params.yaml)."""
    x = conv_bn(x, width)
    for stage, filters in enumerate((2 * width, 4 * width, 8 * width)):
        x = layers.MaxPooling2D()(conv_bn(x, filters))
        if stage != 1:
            x = layers.Add()([x, conv_bn(conv_bn(x, filters), filters)])
    x = layers.Dense(num_classes)(layers.GlobalMaxPooling2D()(x))
    # Max-pooled features are large; Page scales the logits by 1/8 to keep early training stable.
    return layers.Rescaling(0.125)(x)
