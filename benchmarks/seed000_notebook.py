"""Seed 000's notebook (../shared/seeds/000_*), as written, for benchmark B1.

Two changes only: the data comes from the same archive the pipeline reads (through
src.cifar_format instead of tf.keras.datasets, which would download it), in the layout
keras.datasets returns; and a callback times each epoch, with and without its validation pass,
and prints one JSON line for the benchmark to parse. Everything else (float64 standardization,
to_categorical, the model, Adam, batch 250, validation on the test set) is the notebook's code.

Usage: python benchmarks/seed000_notebook.py ARCHIVE EPOCHS
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf

from src.cifar_format import decode_archive

archive, epochs = Path(sys.argv[1]), int(sys.argv[2])
cifar = decode_archive(archive, "cifar10")
(x_train_raw, y_train_raw) = cifar.train_images, cifar.train_labels.reshape(-1, 1)
(x_test_raw, y_test_raw) = cifar.test_images, cifar.test_labels.reshape(-1, 1)

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


class EpochTimer(tf.keras.callbacks.Callback):  # benchmark instrumentation, not in the notebook
    """Each epoch's seconds, and its seconds without the validation pass (10,000 test images here)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.validating = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self.validation_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validating += time.perf_counter() - self.validation_started

    def on_epoch_end(self, epoch, logs=None):
        seconds.append(time.perf_counter() - self.started)
        training_seconds.append(seconds[-1] - self.validating)


seconds: list[float] = []
training_seconds: list[float] = []
hist = model.fit(x=x_train, y=y_train, batch_size=250, epochs=epochs, validation_data=(x_test, y_test), verbose=2,
                 callbacks=[EpochTimer()])
loss, acc = model.evaluate(x_test, y_test, batch_size=250, verbose=0)
print(json.dumps({"epoch_seconds": seconds, "training_seconds": training_seconds, "test_accuracy": acc,
                  "train_images": len(x_train)}))
