"""Stage `split`: stratified train/validation split of the training set (test set untouched).

Params: split.val_fraction, split.seed.
"""

from src.core import config as paths
from src.core.arrays import load_array, load_classes
from src.core.cli import no_arguments
from src.core.errors import run_stage
from src.core.fileio import atomic_dir
from src.core.params import load_params
from src.data.dataset import save_arrays, stratified_split, write_class_counts


def main(argv: list[str]) -> None:
    no_arguments(argv, "src.stages.split", __doc__)
    split = load_params().split
    fix = "run `dvc repro preprocess`"
    images, labels = (load_array(paths.PROCESSED_DIR, name, fix) for name in ("train_images", "train_labels"))
    class_names = load_classes(paths.PROCESSED_DIR)["class_names"]
    train_idx, val_idx = stratified_split(labels.argmax(axis=1), split.val_fraction, split.seed)
    with atomic_dir(paths.SPLIT_DIR) as out:
        save_arrays(out, train_images=images[train_idx], train_labels=labels[train_idx],
                    val_images=images[val_idx], val_labels=labels[val_idx])
        write_class_counts(out / "class_counts.json", class_names, train=labels[train_idx],
                           val=labels[val_idx], test=load_array(paths.PROCESSED_DIR, "test_labels", fix))
    print(f"split: {len(train_idx)} train / {len(val_idx)} validation images -> {paths.SPLIT_DIR}")


if __name__ == "__main__":
    run_stage(main)
