"""Score a trained model on the untouched test set with scikit-learn's metrics."""

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
    top_k_accuracy_score,
)

from src.core.errors import PipelineError
from src.core.fileio import read_model


@dataclass
class Evaluation:
    metrics: dict
    per_class: pd.DataFrame  # precision / recall / f1 / support, one row per class
    confusion: pd.DataFrame  # counts: rows actual, columns predicted
    predictions: pd.DataFrame  # actual, predicted, confidence, one row per test image


def load_model(path) -> keras.Model:
    return read_model(path, "the trained model", "run its train stage (`dvc repro`)")


def accuracy_by_view(split: str, views: dict[str, keras.Model], images: np.ndarray, one_hot: np.ndarray,
                     batch_size: int) -> dict:
    """`{split}_accuracy_{view}` of each net in ``views``: the validation images scored as the test images
    are, so that test-time augmentation (like everything else) is chosen on validation (`val_accuracy_tta`
    against `val_accuracy_single_view`); the training images in inference mode, the overfitting gap
    (`train_accuracy_single_view` against the test's)."""
    actual = one_hot.argmax(axis=1)
    return {f"{split}_accuracy_{view}": round(float(accuracy_score(actual, net.predict(images, batch_size=batch_size,
                                                                                      verbose=0).argmax(axis=1))), 6)
            for view, net in views.items()}


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"


def evaluate(model: keras.Model, images: np.ndarray, one_hot: np.ndarray, class_names: list[str],
             batch_size: int, single_view: keras.Model | None = None) -> Evaluation:
    """`*_tta` metrics, per-class scores, the confusion matrix and the predictions score ``model``: in the
    pipeline the trained net behind `evaluate.tta`'s test-time augmentation (:func:`src.evaluation.tta.with_tta`), the
    model promote registers and predict uses. `*_single_view` metrics score ``single_view``, the net alone,
    where given (else ``model`` again): one prediction per image, as the seed notebooks score theirs."""
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if probabilities.shape != one_hot.shape:
        raise PipelineError(f"model {model.name} predicts {probabilities.shape[1]} classes but the test set "
                            f"has {one_hot.shape[1]}; retrain it on this data set (`dvc repro`)")
    single = probabilities if single_view is None else single_view.predict(images, batch_size=batch_size, verbose=0)
    labels = list(range(len(class_names)))
    actual, predicted = one_hot.argmax(axis=1), probabilities.argmax(axis=1)
    # Each key says what it scores and keeps that meaning, so `dvc metrics diff` compares like with like.
    metrics = {
        "test_accuracy_single_view": round(float(accuracy_score(actual, single.argmax(axis=1))), 6),
        "test_loss_single_view": round(float(log_loss(actual, single, labels=labels)), 6),
        "test_accuracy_tta": round(float(accuracy_score(actual, predicted)), 6),
        "test_loss_tta": round(float(log_loss(actual, probabilities, labels=labels)), 6),
        "test_images": len(actual),
    }
    if len(class_names) > 10:
        metrics["test_top5_accuracy_tta"] = round(float(top_k_accuracy_score(actual, probabilities, k=5,
                                                                              labels=labels)), 6)
    report = classification_report(actual, predicted, labels=labels, target_names=class_names,
                                   output_dict=True, zero_division=0)
    metrics["test_macro_f1_tta"] = round(float(report["macro avg"]["f1-score"]), 6)
    per_class = pd.DataFrame({name: report[name] for name in class_names}).T.rename_axis("class")
    counts = confusion_matrix(actual, predicted, labels=labels)
    confusion = pd.DataFrame(counts, index=pd.Index(class_names, name="actual"),
                             columns=pd.Index(class_names, name="predicted"))
    names = np.asarray(class_names)
    predictions = pd.DataFrame({"actual": names[actual], "predicted": names[predicted],
                                "confidence": probabilities.max(axis=1).round(4)})
    return Evaluation(metrics, per_class, confusion, predictions)
