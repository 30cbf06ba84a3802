"""Seed 000's notebook (../shared/seeds/000_*), as written, for benchmark B1.

Two changes only, both from benchmarks/notebook_common.py: the data comes from the same archive the
pipeline reads (through src.cifar_format instead of tf.keras.datasets, which would download it), in the
layout keras.datasets returns; and a callback times each epoch, with and without its validation pass,
and one JSON line is printed for the benchmark to parse. Everything else (float64 standardization,
to_categorical, the model, Adam, batch 250, validation on the test set) is the notebook's code. No
random seed is set: the notebook sets none, and B1 compares medians over several pairs.

Usage: python benchmarks/seed000_notebook.py ARCHIVE EPOCHS
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf

from benchmarks.notebook_common import EpochTimer, load_cifar10, print_result

archive, epochs = Path(sys.argv[1]), int(sys.argv[2])
(x_train_raw, y_train_raw), (x_test_raw, y_test_raw) = load_cifar10(archive)

# --- from here on, the notebook ---
x_train = (x_train_raw - x_train_raw.mean()) / x_train_raw.std()
x_test = (x_test_raw - x_train_raw.mean()) / x_train_raw.std()
y_train = tf.keras.utils.to_categorical(y_train_raw, num_classes=10)
y_test = tf.keras.utils.to_categorical(y_test_raw, num_classes=10)

from tensorflow.keras.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D  # noqa: E402

X_input = Input(shape=[32, 32, 3])
X = Conv2D(filters=16, kernel_size=3, padding="same", activation="elu")(X_input)
X = MaxPooling2D(pool_size=[2, 2], strides=[2, 2], padding="same")(X)
X = Conv2D(filters=32, kernel_size=3, padding="same", activation="elu")(X)
X = MaxPooling2D(pool_size=[2, 2], strides=[2, 2], padding="same")(X)
X = Conv2D(filters=64, kernel_size=3, padding="same", activation="elu")(X)
X = MaxPooling2D(pool_size=[2, 2], strides=[2, 2], padding="same")(X)
X = Flatten()(X)
X = Dropout(0.2)(X)
X = Dense(512, activation="elu")(X)
X = Dropout(0.2)(X)
X = Dense(10, activation="softmax")(X)
model = tf.keras.Model(inputs=X_input, outputs=X)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

timer = EpochTimer()  # benchmark instrumentation, not in the notebook
hist = model.fit(x=x_train, y=y_train, batch_size=250, epochs=epochs, validation_data=(x_test, y_test), verbose=2,
                 callbacks=[timer])
loss, acc = model.evaluate(x_test, y_test, batch_size=250, verbose=0)
print_result(timer, acc, len(x_train))
