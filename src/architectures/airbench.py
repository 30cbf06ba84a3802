import keras
import numpy as np
import tensorflow as tf
from keras import layers

# PyTorch's default init, which airbench keeps for the filters and the head: uniform within
# 1/sqrt(fan_in). Keras' Glorot default is up to 1.7x larger, and behind BatchNorm a larger
# kernel trains more slowly (the update moves its direction by lr / |w|^2).
TORCH_DEFAULT_INIT = keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")


def _dirac_conv(x, filters):
    # Airbench's Dirac init: the first filters start as the identity of the input channels, so
    # every block begins close to passing its input through.
    conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=TORCH_DEFAULT_INIT)
    x = conv(x)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    channels = kernel.shape[2]
    kernel[:, :, :, :channels] = 0
    kernel[1, 1, range(channels), range(channels)] = 1
    conv.kernel.assign(kernel)
    return x


# Airbench trains BatchNorm shifts at 64x the learning rate of the weights, and Keras has no
# per-variable rate: the scale is frozen at 1/8 and the output multiplied by 8, so the shift's
# gradient is 8x larger and each of its steps moves the output 8x further (64x in all).
BIAS_RATE_SCALE = 8.0


def _bn_gelu(x):
    # Frozen scale, only the shift trains, and fast-moving statistics: airbench's momentum 0.6 keeps
    # 0.6 of the running statistics each step (PyTorch's `momentum=0.4`), as Keras' momentum 0.6 does.
    norm = layers.BatchNormalization(momentum=0.6, epsilon=1e-12,
                                     gamma_initializer=keras.initializers.Constant(1 / BIAS_RATE_SCALE))
    x = norm(x)
    norm.gamma.trainable = False  # a saved model does not keep this: reload, and the scale would train
    return layers.Activation("gelu")(layers.Rescaling(BIAS_RATE_SCALE)(x))


def airbench(x, num_classes, widths=(64, 256, 256)):
    """Ours: airbench94 (Keller Jordan, 2024: 94 % CIFAR-10 in 9.9 epochs, github.com/KellerJordan/
    cifar10-airbench, legacy/airbench94.py) ported to Keras. A frozen 2x2 patch-whitening conv
    set from the training images (:func:`init_from_data`), three conv-pool-BN-GELU blocks
    of 64/256/256 channels with Dirac-initialized convs, BatchNorm with frozen scales and shifts
    that learn 64x faster, global max pooling and a bias-free linear head scaled by 1/9
    (1,975,096 params with the frozen ones).

    Trained with Nesterov SGD (warm-up then decay), Lookahead, label smoothing 0.2, batch 1024,
    flip and 2-pixel translation, in bfloat16 (params.yaml). Left out: training the whitening
    bias for the first epochs (it is set from the data and frozen); the flip alternates by epoch
    in airbench, randomly here."""
    # In float32: bfloat16 would round away the faint high-frequency components it amplifies.
    x = layers.Conv2D(24, 2, trainable=False, name=WHITENING_LAYER, dtype="float32")(x)
    x = layers.Activation("gelu", dtype="float32")(x)
    for width in widths:
        x = _bn_gelu(layers.MaxPooling2D()(_dirac_conv(x, width)))
        x = _bn_gelu(_dirac_conv(x, width))
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=TORCH_DEFAULT_INIT)(layers.GlobalMaxPooling2D()(x))
    return layers.Rescaling(1 / 9)(x)


WHITENING_LAYER = "patch_whitening"
WHITENING_IMAGES = 5000


def init_from_data(model: keras.Model, images: np.ndarray, epsilon: float = 5e-4) -> None:
    """Set airbench's frozen first layer from the data: the eigenvectors of the covariance of the
    training images' 2x2 patches, scaled by 1/sqrt(eigenvalue), and their negatives. Airbench
    computes them on images standardized per channel; the standardization is folded into the
    kernel and bias here, so the layer whitens whatever `train.NAME.normalization` feeds it."""
    layer = model.get_layer(WHITENING_LAYER)
    x = keras.ops.convert_to_numpy(model.get_layer("normalization")(images[:WHITENING_IMAGES].astype("float32")))
    mean, std = x.mean(axis=(0, 1, 2), dtype="float64"), x.std(axis=(0, 1, 2), dtype="float64")
    patches = tf.image.extract_patches((x - mean) / std, sizes=[1, 2, 2, 1], strides=[1, 1, 1, 1],
                                       rates=[1, 1, 1, 1], padding="VALID")  # (row, column, channel) order, as a kernel
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(keras.ops.convert_to_numpy(patches).reshape(-1, 12),
                                                      rowvar=False))
    filters = eigenvectors[:, ::-1] / np.sqrt(eigenvalues[::-1] + epsilon)  # largest first
    kernel = np.concatenate([filters, -filters], axis=1) / np.tile(std, 4)[:, None]
    layer.kernel.assign(kernel.reshape(2, 2, 3, 24))
    layer.bias.assign(-np.tile(mean, 4) @ kernel)
