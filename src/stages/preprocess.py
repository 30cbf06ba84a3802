"""Stage `preprocess`: decode the archive safely into uint8 arrays, one-hot labels and
normalization statistics from the training images (applied later, inside the model).

Params: data.dataset, data.label_mode, preprocess.normalization.
"""

from src import config as paths
from src.cifar_format import decode_archive
from src.data import normalization_stats, one_hot, save_arrays
from src.errors import run_stage
from src.fileio import atomic_dir, write_json
from src.params import DATASETS, load_params


def main(argv: list[str]) -> None:
    params = load_params()
    data, normalization = params["data"], params["preprocess"]["normalization"]
    cifar = decode_archive(paths.RAW_DIR / DATASETS[data["dataset"]]["archive"], data["dataset"], data["label_mode"])
    num_classes = len(cifar.class_names)
    with atomic_dir(paths.PROCESSED_DIR) as out:
        save_arrays(out, train_images=cifar.train_images, train_labels=one_hot(cifar.train_labels, num_classes),
                    test_images=cifar.test_images, test_labels=one_hot(cifar.test_labels, num_classes))
        write_json(out / "normalization.json", normalization_stats(cifar.train_images, normalization))
        write_json(out / "classes.json", {"dataset": data["dataset"], "label_mode": data["label_mode"],
                                          "class_names": cifar.class_names})
    print(f"preprocess: {len(cifar.train_images)} train + {len(cifar.test_images)} test images, "
          f"{num_classes} classes, normalization {normalization} -> {paths.PROCESSED_DIR}")


if __name__ == "__main__":
    run_stage(main)
