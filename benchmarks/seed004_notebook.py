"""Seed 004's notebook (../shared/seeds/004_*), its base net, as written, for the seed table (issue 26 item 4).

The base net is the notebook's first model, ``cifar_cnn`` (section 16.3): six 3x3 convs in three pooled blocks,
Dense 128 and 64, 558,186 parameters, Adam (the 'adam' defaults), batch 128, 10 epochs, no validation; the notebook
evaluates it on the test set: 73.00 %. (It then continues training the same model with ``validation_split=0.2``;
that continuation, the dropout/batch-norm/augmentation nets and VGG16 are not this script.)

Changes to the notebook's code, each one needed to run it here, none to what it trains:

- Data: ``keras.datasets.cifar10.load_data()`` becomes ``load_cifar10(ARCHIVE)`` (benchmarks/notebook_common.py):
  the same arrays, uint8 images and (N, 1) uint8 labels, decoded from the local archive instead of downloaded.
- No Keras API change was needed: the notebook ran TF 2.13, whose 'adam' has Keras 3's defaults
  (lr 1e-3, betas 0.9 / 0.999, epsilon 1e-7).
- ``keras.utils.set_random_seed(0)`` before the model is built: the notebook sets no seed.
- Dropped: matplotlib and the cells that only print, plot or show images and predictions; the predict +
  sklearn ``accuracy_score`` cell, which prints the same 73.00 % as the ``evaluate`` cell kept here.
- Instrumentation: ``EpochTimer`` in ``fit``'s callbacks and one JSON line at the end (epoch_seconds,
  training_seconds, test_accuracy, train_images, model). test_accuracy is the ``evaluate`` cell's
  ``evals_test[1]``. ``fit`` does not validate, so training_seconds equals epoch_seconds.

Kept as written, though unusual: the six Conv2D layers have no activation (linear convs; only the two hidden Dense
layers are ReLU); the images are divided by 255 as float64 (``/ 255`` on uint8); no validation during ``fit``;
``evaluate`` with its default batch 32; fit's default verbosity (a progress bar).

Usage: python benchmarks/seed004_notebook.py ARCHIVE [EPOCHS]   (EPOCHS defaults to the notebook's 10)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.notebook_common import EpochTimer, load_cifar10, print_result

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("archive", type=Path)
parser.add_argument("epochs", type=int, nargs="?", default=10)
args = parser.parse_args()
timer = EpochTimer()  # benchmark instrumentation, not in the notebook

# --- from here on, the notebook ---
# import required libraries
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

keras.utils.set_random_seed(0)  # not in the notebook, which sets no seed

# Print the version of tf
print("TensorFlow version:{}".format(tf.__version__))  # noqa: UP032

# Load the train and test images and labels
(train_data, train_label), (test_data, test_label) = load_cifar10(args.archive)

print('Training images', train_data.shape)
print('Training labels', train_label.shape)
print('Testing images', test_data.shape)
print('Testing labels', test_label.shape)

# Normalize the images
train_data = train_data / 255
test_data = test_data / 255

# Display the range of images (to make sure they are in the [0, 1] range)
print('Max pixel value', np.max(train_data))
print('Min pixel value', np.min(train_data))
print('Average pixel value', np.mean(train_data))
print('Data type', train_data[0].dtype)

# Convert the labels to one-hot encoding format
train_label_onehot = keras.utils.to_categorical(train_label, 10)
test_label_onehot = keras.utils.to_categorical(test_label, 10)

print('Labels train shape: {}'.format(train_label_onehot.shape))  # noqa: UP032

# import the layers and the model
from keras.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D  # noqa: E402
from keras.models import Model  # noqa: E402

# Define the layers in the model
inputs = Input(shape=(32, 32, 3))
conv1a = Conv2D(filters=32, kernel_size=3, padding='same')(inputs)
conv1b = Conv2D(filters=32, kernel_size=3, padding='same')(conv1a)
pool1 = MaxPooling2D()(conv1b)
conv2a = Conv2D(filters=64, kernel_size=3, padding='same')(pool1)
conv2b = Conv2D(filters=64, kernel_size=3, padding='same')(conv2a)
pool2 = MaxPooling2D()(conv2b)
conv3a = Conv2D(filters=128, kernel_size=3, padding='same')(pool2)
conv3b = Conv2D(filters=128, kernel_size=3, padding='same')(conv3a)
pool3 = MaxPooling2D()(conv3b)
flat = Flatten()(pool3)
dense1 = Dense(128, activation='relu')(flat)
dense2 = Dense(64, activation='relu')(dense1)
outputs = Dense(10, activation='softmax')(dense2)

# Define the model with inputs and outputs
cifar_cnn = Model(inputs, outputs)

# Model summary
cifar_cnn.summary()

cifar_cnn.compile(optimizer='adam',
                  loss='categorical_crossentropy',
                  metrics=['accuracy'])

cifar_cnn.fit(train_data, train_label_onehot, epochs=args.epochs, batch_size=128, callbacks=[timer])

# Evaluate on test dataset
evals_test = cifar_cnn.evaluate(test_data, test_label_onehot)
print("Classification Accuracy: ", evals_test[1])

# --- the notebook ends here ---
print_result(timer, evals_test[1], len(train_data), model="cifar_cnn")
