"""Train one architecture: tf.data input, optimizer and schedule from params, Keras callbacks."""

import contextlib
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from src.core.errors import PipelineError
from src.core.fileio import atomic_dir
from src.training.recipe import Train

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]


def make_deterministic(seed: int) -> None:
    """Same params on the same machine give the same weights and metrics, epoch by epoch."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None,
                 drop_remainder: bool = False):
    """Batches of (uint8 images, float one-hot labels), gathered by index so shuffling moves
    indices rather than images and no per-image Python or per-element tf.data work is done."""
    images, labels = tf.constant(images), tf.constant(labels)
    indices = tf.data.Dataset.range(len(images))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)

    def gather(batch):
        return tf.gather(images, batch), tf.cast(tf.gather(labels, batch), tf.float32)

    batches = indices.batch(batch_size, drop_remainder=drop_remainder)
    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _inverse_time(config: Train, total_steps: int):  # Keras 2's `decay` argument: lr / (1 + decay * iterations)
    return keras.optimizers.schedules.InverseTimeDecay(config.learning_rate, decay_steps=1, decay_rate=config.decay)


def _one_cycle(config: Train, total_steps: int):  # linear warm-up over the first quarter, then cosine down to zero
    warmup = max(1, total_steps // 4)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate / 10, decay_steps=max(1, total_steps - warmup),
                                                  warmup_target=config.learning_rate, warmup_steps=warmup)


# One entry per choice of the recipe's `schedule` and `optimizer` (src/training/recipe.py).
SCHEDULES = {
    "constant": lambda config, total_steps: config.learning_rate,
    "inverse_time": _inverse_time,
    "cosine": lambda config, total_steps: keras.optimizers.schedules.CosineDecay(config.learning_rate,
                                                                                 decay_steps=total_steps),
    "onecycle": _one_cycle,
}
OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
              "rmsprop": keras.optimizers.RMSprop}


def learning_rate(config: Train, steps_per_epoch: int):
    """A float or a Keras schedule, as the recipe's `schedule` says."""
    return SCHEDULES[config.schedule](config, config.epochs * steps_per_epoch)


def make_optimizer(config: Train, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    # A field left null keeps the Keras optimizer's own default (AdamW's weight decay 0.004, SGD without momentum).
    options = {key: getattr(config, key) for key in ("weight_decay", "momentum", "nesterov")
               if getattr(config, key) is not None}
    return OPTIMIZERS[config.optimizer](learning_rate(config, steps_per_epoch), **options)


def compile_model(model: keras.Model, config: Train, steps_per_epoch: int) -> None:
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  # XLA: Keras turns it off under TensorFlow's op determinism (make_deterministic) anyway.
                  metrics=["accuracy"], jit_compile=False)


class EpochLog(keras.callbacks.Callback):
    """Adds `epoch_seconds`, `validation_seconds` (fit's per-epoch evaluation calls on_test_begin/end) and
    `learning_rate` to each epoch's logs, and prints one line per epoch."""

    def __init__(self, name: str, epochs: int):
        super().__init__()
        self.name, self.epochs = name, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.validation_seconds = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self.validation_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation_seconds += time.perf_counter() - self.validation_started

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started
        logs["validation_seconds"] = self.validation_seconds
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        print(f"{self.name} epoch {epoch + 1}/{self.epochs}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
              f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f} "
              f"lr {logs['learning_rate']:.2e} {logs['epoch_seconds']:.1f}s", file=sys.stdout, flush=True)


class Lookahead(keras.callbacks.Callback):
    """Airbench's Lookahead (Zhang et al., 2019): every ``every`` steps the weights, BatchNorm
    statistics included, move to a point between themselves and slow weights, which then take
    that value; the slow weights' share grows as 0.95**5 * (step / total_steps)**3, from none at
    the start to 0.77, and training ends on them. Averaging the last steps' weights smooths the
    noise of a large batch-norm net trained at a high learning rate."""

    def __init__(self, total_steps: int, every: int = 5):
        super().__init__()
        self.total_steps, self.every = total_steps, every

    def on_train_begin(self, logs=None):
        self.step = 0
        self.tracked = [v for v in self.model.weights if "float" in v.dtype]
        self.slow = [tf.Variable(v.value, trainable=False) for v in self.tracked]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self._pull(0.95**5 * (self.step / self.total_steps) ** 3)

    def on_train_end(self, logs=None):
        self._pull(1.0)

    def _pull(self, slow_share: float) -> None:
        for slow, weight in zip(self.slow, self.tracked, strict=True):
            slow.assign(slow_share * slow + (1 - slow_share) * weight.value)
            weight.assign(slow)


class EpochBackup(keras.callbacks.Callback):
    """Lets a fit that was killed resume at its last finished epoch, where DVC reruns the stage.

    After every epoch, the whole training state goes to one folder, replaced atomically: every model
    variable (the random layers' seed-generator states included: Keras' BackupAndRestore saves weights
    and optimizer only, so a resumed fit would replay the first epoch's flips, shifts and dropout masks,
    keras-team/keras#19796), the optimizer's variables, the finished epochs' history and seconds, and
    the MLflow run that trained them (``run_id``, set by the stage). :func:`train` restores it, skips
    the finished epochs' batches so the data order goes on where it stopped, and fits the remaining
    epochs: the result is the uninterrupted fit's. A backup made with other params, data or code
    (``fingerprint``), or unreadable, is ignored.
    """

    STATE, PROGRESS = "variables.npz", "progress.json"

    def __init__(self, folder: Path | str, fingerprint: str):
        super().__init__()
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.progress = {"epochs": [], "train_seconds": 0.0, "run_id": None}
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((self.folder / self.PROGRESS).read_text())
            if saved.get("fingerprint") == fingerprint:
                self.progress = saved

    @property
    def epochs_done(self) -> int:
        return len(self.progress["epochs"])

    @property
    def run_id(self) -> str | None:
        return self.progress["run_id"]

    @run_id.setter
    def run_id(self, run_id: str) -> None:
        self.progress["run_id"] = run_id

    def _state(self) -> list:
        return list(self.model.variables) + list(self.model.optimizer.variables)

    def restore(self, model: keras.Model) -> None:
        """Load the saved variables into ``model``, compiled and built as when they were saved."""
        model.optimizer.build(model.trainable_variables)
        self.set_model(model)
        with np.load(self.folder / self.STATE) as saved:
            values = [saved[f"v{index}"] for index in range(len(saved.files))]
        state = self._state()
        if [tuple(v.shape) for v in state] != [value.shape for value in values]:
            raise PipelineError(f"the training backup in {self.folder} does not fit the model; delete the folder")
        for variable, value in zip(state, values, strict=True):
            variable.assign(value)

    def on_train_begin(self, logs=None):
        self.started, self.carried = time.perf_counter(), self.progress["train_seconds"]

    def on_epoch_end(self, epoch, logs=None):
        self.progress["epochs"].append({key: float(value) for key, value in (logs or {}).items()})
        self.progress["train_seconds"] = self.carried + time.perf_counter() - self.started
        with atomic_dir(self.folder) as tmp:
            np.savez(tmp / self.STATE, **{f"v{index}": keras.ops.convert_to_numpy(variable)
                                          for index, variable in enumerate(self._state())})
            (tmp / self.PROGRESS).write_text(json.dumps({**self.progress, "fingerprint": self.fingerprint}))

    def remove(self) -> None:
        """Once the trained model is saved, the backup has served."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the backups' folder, once no training has one
            self.folder.parent.rmdir()


def training_code(net: str) -> list[Path]:
    """The modules a train stage runs, as dvc.yaml lists them for `train@NET`: src/__init__.py, the stage,
    src/training/, and the net's module with the registry and the shared blocks. Not src/core/."""
    src = Path(__file__).resolve().parents[1]
    return [src / "__init__.py", src / "stages" / "train.py", *sorted((src / "training").rglob("*.py")),
            *(src / "architectures" / f"{module}.py" for module in ("__init__", "blocks", net))]


def fingerprint(net: str, *parts) -> str:
    """What a backup must have been made with to be resumed: the net, ``parts`` (params, data), as JSON, and
    the code that trains it (:func:`training_code`): a change elsewhere, which stales no training, leaves
    the backup usable too."""
    digest = hashlib.sha256(json.dumps([net, *parts], sort_keys=True, default=str).encode())
    for module in training_code(net):
        digest.update(module.read_bytes())
    return digest.hexdigest()


@dataclass
class TrainingResult:
    history: pd.DataFrame
    train_seconds: float  # the whole fit, validation included
    validation_seconds: float
    best_epoch: int  # by the monitored metric
    evaluated_epoch: int  # the epoch whose weights are saved: the last, or the best if restored
    train_images: int  # per epoch: fewer than the split holds where the remainder is dropped
    saved_model_validation: dict  # loss and accuracy of the model as saved, validated after training

    def summary(self, monitor: str) -> dict:
        """`val_*` score the saved model, the one the evaluate stage scores, on the validation images;
        `best_*` the best epoch during training."""
        best = self.history.iloc[self.best_epoch - 1]
        return {
            "epochs_run": len(self.history),
            "evaluated_epoch": self.evaluated_epoch,
            "val_accuracy": round(float(self.saved_model_validation["accuracy"]), 6),
            "val_loss": round(float(self.saved_model_validation["loss"]), 6),
            "monitor": monitor,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": round(float(best["val_accuracy"]), 6),
            "train_seconds": round(self.train_seconds, 2),
            "validation_seconds": round(self.validation_seconds, 2),
            "seconds_per_epoch": round(float(self.history["epoch_seconds"].median()), 3),
            # Training images per second of training alone: validation time is not counted.
            "images_per_second": round(self.train_images * len(self.history)
                                       / (self.train_seconds - self.validation_seconds), 1),
        }


def steps_per_epoch(name: str, config: Train, images: int) -> int:
    """Batches per epoch of ``images`` training images. A last batch of a few images at a large
    learning rate kicks the weights and, through BatchNorm's batch statistics, the running
    statistics too: `drop_remainder` leaves it out, but must leave at least one batch."""
    if not config.drop_remainder:
        return math.ceil(images / config.batch_size)
    if images < config.batch_size:
        raise PipelineError(f"`train.{name}.drop_remainder` leaves no batch: {images} training images, "
                            f"batch_size {config.batch_size}; lower batch_size or set drop_remainder: false")
    return images // config.batch_size


def monitor_of(config: Train) -> str:
    return config.early_stopping.monitor if config.early_stopping else "val_accuracy"


def resumable(config: Train) -> bool:
    """Lookahead's slow weights and EarlyStopping's patience live in callbacks no backup holds: a fit
    using either starts over when interrupted."""
    return not (config.lookahead or config.early_stopping)


def recipe_callbacks(config: Train, steps_per_epoch: int) -> list[keras.callbacks.Callback]:
    """The callbacks the recipe asks for: `lookahead`, `early_stopping`."""
    callbacks = []
    if config.lookahead:
        callbacks.append(Lookahead(total_steps=config.epochs * steps_per_epoch))
    stopping = config.early_stopping
    if stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=stopping.monitor, patience=stopping.patience,
                                                       restore_best_weights=stopping.restore_best_weights))
    return callbacks


def training_batches(config: Train, images: np.ndarray, labels: np.ndarray, skip_steps: int = 0):
    """The whole fit's batches, shuffled by the recipe's `seed`, as one repeated dataset: given a finite
    dataset, Keras builds a fresh iterator every epoch, and tearing down the previous one blocked ~0.6 ms per
    training image (py-spy: ~IteratorResource waiting on tf.data's thread pool), 25 % of an epoch here.
    ``skip_steps``: where a resumed fit goes on in the same order."""
    batches = make_dataset(images, labels, config.batch_size, shuffle_seed=config.seed,
                           drop_remainder=config.drop_remainder).repeat()
    return batches.skip(skip_steps) if skip_steps else batches


def train(model: keras.Model, config: Train, train_data: tuple, val_data: tuple,
          extra_callbacks: list | None = None, backup: EpochBackup | None = None) -> TrainingResult:
    """Compile and fit ``model`` as the recipe ``config`` says; return its per-epoch history.
    With ``backup`` (where :func:`resumable`), an interrupted fit resumes from it.

    Call :func:`make_deterministic` before building ``model``: its initial weights come from the seed.
    """
    images = len(train_data[0])
    steps = steps_per_epoch(model.name, config, images)
    compile_model(model, config, steps)
    done = backup.epochs_done if backup else 0
    if done:
        backup.restore(model)
        print(f"{model.name}: resuming after epoch {done}/{config.epochs} from {backup.folder}", flush=True)
    callbacks = [EpochLog(model.name, config.epochs), *recipe_callbacks(config, steps)]
    train_batches = training_batches(config, *train_data, skip_steps=done * steps)
    val_batches = make_dataset(*val_data, max(config.batch_size, 500))
    started = time.perf_counter()
    # The backup comes last: an epoch it holds has been through every other callback (MLflow's too).
    fit = model.fit(train_batches, steps_per_epoch=steps, validation_data=val_batches, initial_epoch=done,
                    epochs=config.epochs, verbose=0, shuffle=False,  # training_batches already shuffles
                    callbacks=callbacks + (extra_callbacks or []) + ([backup] if backup else []))
    train_seconds = time.perf_counter() - started
    # What callbacks do at the end of training (Lookahead's final average, EarlyStopping's restore) comes
    # after the last validation: score the weights that are saved, not the last epoch's.
    saved = model.evaluate(val_batches, return_dict=True, verbose=0)
    # The backup holds every epoch, those of a killed fit it resumed too.
    history = pd.DataFrame(backup.progress["epochs"] if backup else fit.history)
    train_seconds += backup.carried if done else 0.0
    validation_seconds = float(history["validation_seconds"].sum())
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    history = history[HISTORY_COLUMNS]
    monitor = monitor_of(config)
    best = int(history[monitor].idxmin() if monitor.endswith("loss") else history[monitor].idxmax()) + 1
    # Keras restores the best weights at the end of training only when told to.
    evaluated = best if config.early_stopping and config.early_stopping.restore_best_weights else len(history)
    return TrainingResult(history, train_seconds, validation_seconds, best, evaluated,
                          min(images, steps * config.batch_size), saved)
