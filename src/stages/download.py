"""Stage `download`: fetch the data set archive into data/raw/, md5-verified.

Params: data.dataset, data.source (URL or local path; null = official URL), data.md5.
"""

from src.core import config as paths
from src.core.cli import no_arguments
from src.core.config import DATASETS, dataset_source
from src.core.errors import run_stage
from src.core.params import load_params
from src.data.fetch import clear_folder, fetch_archive


def main(argv: list[str]) -> None:
    no_arguments(argv, "src.stages.download", __doc__)
    data = load_params().data
    source, md5 = dataset_source(data)
    clear_folder(paths.RAW_DIR)
    archive = fetch_archive(source, md5, paths.RAW_DIR / DATASETS[data.dataset]["archive"])
    print(f"download: {source} -> {archive} (md5 {md5} verified)")


if __name__ == "__main__":
    run_stage(main)
