"""Stage `download`: fetch the data set archive into data/raw/, md5-verified.

Params: data.dataset, data.source (URL or local path; null = official URL), data.md5.
"""

from src import config as paths
from src.errors import run_stage
from src.fetch import clear_folder, fetch_archive
from src.params import DATASETS, dataset_source, load_params


def main(argv: list[str]) -> None:
    data = load_params()["data"]
    source, md5 = dataset_source(data)
    clear_folder(paths.RAW_DIR)
    archive = fetch_archive(source, md5, paths.RAW_DIR / DATASETS[data["dataset"]]["archive"])
    print(f"download: {source} -> {archive} (md5 {md5} verified)")


if __name__ == "__main__":
    run_stage(main)
