"""Stage `report`: reports/report.md and reports/figures/, the comparison reviewers read in PRs.

Params: architectures (which to compare), train (normalization), data and split (traceability). Reads
only the files dvc.yaml declares for it and writes nothing that varies between identical runs (the work
is in src/reporting/report.py). Deletes the results of architectures removed from `architectures`, so neither
git nor `dvc metrics show` keeps them.
"""

from src.core import config as paths
from src.core.cli import no_arguments
from src.core.errors import run_stage
from src.core.fileio import atomic_dir, atomic_path
from src.core.params import load_params
from src.reporting import report


def main(argv: list[str]) -> None:
    no_arguments(argv, "src.stages.report", __doc__)
    params = load_params()
    removed = report.remove_unlisted(params.architectures)
    if removed:
        print(f"report: removed {len(removed)} results of architectures no longer in `architectures`: "
              f"{', '.join(sorted({path.name.split('.')[0] for path in removed}))}")
    comparison = report.collect(params)
    with atomic_dir(paths.FIGURES_DIR) as folder:
        figures = report.write_figures(folder, comparison)
    with atomic_path(paths.REPORT_FILE) as tmp:
        tmp.write_text(report.render(comparison, figures))
    best = comparison.best
    print(f"report: {len(comparison.results)} architectures -> {paths.REPORT_FILE} "
          f"(chosen on validation: {best['name']}, test accuracy {best['test']['test_accuracy_tta']:.4f})")


if __name__ == "__main__":
    run_stage(main)
