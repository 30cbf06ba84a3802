"""Seed 002's notebook (../shared/seeds/002_*), as written, for the seed table's notebook column (issue 26 item 4).

The notebook trains two models on the same data: ``model_1`` (two strided 5x5 convs, 181,162 parameters, RMSprop
lr 5e-4, 15 epochs, 64.50 % in the notebook) and ``model_2`` (the exercise's deeper net, four stride-1 convs,
252,378 parameters, RMSprop lr 1e-4, 5 epochs, 50.64 % in the notebook). This script runs one of them.

Changes to the notebook's code, each one needed to run it here, none to what it trains:

- Data: ``cifar10.load_data()`` becomes ``load_cifar10(ARCHIVE)`` (benchmarks/notebook_common.py): the same arrays,
  uint8 images and (N, 1) uint8 labels, decoded from the local archive instead of downloaded.
- Keras 2.2 -> Keras 3 (TF 2.21): ``keras.optimizers.rmsprop(lr=..., decay=1e-6)`` becomes
  ``keras.optimizers.RMSprop(learning_rate=InverseTimeDecay(lr, decay_steps=1, decay_rate=1e-6))``: the lower-case
  alias, ``lr=`` and ``decay=`` are gone, and the schedule is exactly Keras 2's decay, lr / (1 + decay * iterations).
  rho (0.9) and epsilon (1e-7) are the defaults in both; Keras 2.2 divided by sqrt(v) + eps, Keras 3 divides by
  sqrt(v + eps), a difference only while v is near 1e-7. The notebook's standalone ``keras.preprocessing.image``
  import comes from ``tensorflow.keras.preprocessing.image`` (Keras 3 keeps ImageDataGenerator only there).
- ``keras.utils.set_random_seed(0)`` before the models are built: the notebook sets no seed.
- Dropped: ``from __future__ import print_function``, matplotlib and the cells that only show an image.
- Instrumentation: ``EpochTimer`` in ``fit``'s callbacks, ``fit``'s History kept as ``hist`` and one JSON line at
  the end (epoch_seconds, training_seconds, test_accuracy, train_images, model). The notebook's figure is the last
  epoch's ``val_acc`` (it validates on the test set every epoch), so test_accuracy is ``hist``'s last
  ``val_accuracy`` (Keras 3's name for it): the test set, final weights, no extra pass.

Kept as written, though unusual: ImageDataGenerator is imported and never used (no augmentation); ``fit`` validates
on the test set each epoch (training_seconds leaves that pass out); the second conv of model_1 and the last three of
model_2 have no padding; batch 32; ``input_shape=`` on the first Conv2D of a Sequential model (Keras 3 warns, and
builds the same model); fit's default verbosity (a progress bar).

Usage: python benchmarks/seed002_notebook.py ARCHIVE {model_1,model_2} [EPOCHS]
(EPOCHS defaults to the notebook's: 15 for model_1, 5 for model_2.)
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras

from benchmarks.notebook_common import EpochTimer, load_cifar10, print_result

NOTEBOOK_EPOCHS = {"model_1": 15, "model_2": 5}
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("archive", type=Path)
parser.add_argument("model", choices=sorted(NOTEBOOK_EPOCHS))
parser.add_argument("epochs", type=int, nargs="?")
parser.add_argument("--seed", type=int, default=0, help="the random seed (another one measures run-to-run spread)")
args = parser.parse_args()
epochs = args.epochs or NOTEBOOK_EPOCHS[args.model]
keras.utils.set_random_seed(args.seed)  # not in the notebook, which sets no seed
timer = EpochTimer()  # benchmark instrumentation, not in the notebook

# --- from here on, the notebook ---
from keras.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D  # noqa: E402
from keras.models import Sequential  # noqa: E402
from tensorflow.keras.preprocessing.image import ImageDataGenerator  # noqa: E402, F401  (imported, never used)

# The data, shuffled and split between train and test sets:
(x_train, y_train), (x_test, y_test) = load_cifar10(args.archive)
print('x_train shape:', x_train.shape)
print(x_train.shape[0], 'train samples')
print(x_test.shape[0], 'test samples')

num_classes = 10

y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

# As before, let's make everything float and scale
x_train = x_train.astype('float32')
x_test = x_test.astype('float32')
x_train /= 255
x_test /= 255

if args.model == "model_1":
    # Let's build a CNN using Keras' Sequential capabilities

    model_1 = Sequential()

    ## 5x5 convolution with 2x2 stride and 32 filters
    model_1.add(Conv2D(32, (5, 5), strides = (2,2), padding='same',
                      input_shape=x_train.shape[1:]))
    model_1.add(Activation('relu'))

    ## Another 5x5 convolution with 2x2 stride and 32 filters
    model_1.add(Conv2D(32, (5, 5), strides = (2,2)))
    model_1.add(Activation('relu'))

    ## 2x2 max pooling reduces to 3 x 3 x 32
    model_1.add(MaxPooling2D(pool_size=(2, 2)))
    model_1.add(Dropout(0.25))

    ## Flatten turns 3x3x32 into 288x1
    model_1.add(Flatten())
    model_1.add(Dense(512))
    model_1.add(Activation('relu'))
    model_1.add(Dropout(0.5))
    model_1.add(Dense(num_classes))
    model_1.add(Activation('softmax'))

    model_1.summary()

    batch_size = 32

    # initiate RMSprop optimizer
    opt = keras.optimizers.RMSprop(
        learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.0005, decay_steps=1, decay_rate=1e-6))

    # Let's train the model using RMSprop
    model_1.compile(loss='categorical_crossentropy',
                     optimizer=opt,
                     metrics=['accuracy'])

    hist = model_1.fit(x_train, y_train,
                batch_size=batch_size,
                epochs=epochs,
                validation_data=(x_test, y_test),
                shuffle=True, callbacks=[timer])
else:
    # Create model_2 as mentioned in the exercise
    model_2 = Sequential()

    ## Conv -> Conv -> MaxPool -> Conv -> Conv -> MaxPool -> (Flatten) -> Dense -> Final Classification
    model_2.add(Conv2D(32, (5,5), strides = (1,1), padding='same', input_shape=x_train.shape[1:]))
    model_2.add(Activation('relu'))
    model_2.add(Conv2D(32, (5,5), strides = (1,1)))
    model_2.add(Activation('relu'))

    model_2.add(MaxPooling2D(pool_size=(2, 2)))
    model_2.add(Dropout(0.5))

    model_2.add(Conv2D(32, (3,3), strides = (1,1)))
    model_2.add(Activation('relu'))
    model_2.add(Conv2D(16, (3,3), strides = (1,1)))
    model_2.add(Activation('relu'))

    model_2.add(MaxPooling2D(pool_size=(2, 2)))
    model_2.add(Dropout(0.5))

    ## Flatten turns 3x3x32 into 288x1
    model_2.add(Flatten())
    model_2.add(Dense(512))
    model_2.add(Activation('relu'))
    model_2.add(Dropout(0.5))
    model_2.add(Dense(num_classes))
    model_2.add(Activation('softmax'))

    model_2.summary()

    batch_size = 32

    # initiate RMSprop optimizer
    opt = keras.optimizers.RMSprop(
        learning_rate=keras.optimizers.schedules.InverseTimeDecay(0.0001, decay_steps=1, decay_rate=1e-6))

    # Training the model using RMSProp and for 5 epochs
    model_2.compile(loss='categorical_crossentropy',
                     optimizer=opt,
                     metrics=['accuracy'])

    hist = model_2.fit(x_train, y_train,
               batch_size=batch_size,
               epochs=epochs,
               validation_data=(x_test, y_test),
               shuffle=True, callbacks=[timer])

# --- the notebook ends here ---
print_result(timer, hist.history['val_accuracy'][-1], len(x_train), model=args.model)
