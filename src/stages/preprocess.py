"""Stage `preprocess`: decode the archive safely into uint8 arrays and one-hot labels (normalization is
a train section's: its statistics come from the split's training images, applied inside the model).

Params: data.dataset, data.label_mode.
"""

from src.core import config as paths
from src.core.cli import no_arguments
from src.core.config import DATASETS
from src.core.errors import run_stage
from src.core.fileio import atomic_dir, write_json
from src.core.params import load_params
from src.data.cifar_format import decode_archive
from src.data.dataset import one_hot, save_arrays


def main(argv: list[str]) -> None:
    no_arguments(argv, "src.stages.preprocess", __doc__)
    data = load_params().data
    cifar = decode_archive(paths.RAW_DIR / DATASETS[data.dataset]["archive"], data.dataset, data.label_mode)
    num_classes = len(cifar.class_names)
    with atomic_dir(paths.PROCESSED_DIR) as out:
        save_arrays(out, train_images=cifar.train_images, train_labels=one_hot(cifar.train_labels, num_classes),
                    test_images=cifar.test_images, test_labels=one_hot(cifar.test_labels, num_classes))
        write_json(out / "classes.json", {"dataset": data.dataset, "label_mode": data.label_mode,
                                          "class_names": cifar.class_names})
    print(f"preprocess: {len(cifar.train_images)} train + {len(cifar.test_images)} test images, "
          f"{num_classes} classes -> {paths.PROCESSED_DIR}")


if __name__ == "__main__":
    run_stage(main)
