"""The stages' command lines, by argparse: `--help` prints the stage's docstring and runs nothing."""

import argparse

from src.core.config import DEFAULT_TABLE, TABLES, Table


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, except where that is None: the help says what happens then."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _parser(module: str, doc: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def no_arguments(argv: list[str], module: str, doc: str) -> None:
    """A stage that takes everything from params.yaml."""
    _parser(module, doc).parse_args(argv)


def net_arguments(argv: list[str], module: str, doc: str) -> tuple[str, Table]:
    """(recipe, table) of a per-net stage: ``NAME [--table seeds]``."""
    parser = _parser(module, doc)
    parser.add_argument("name", metavar="NAME", help="the recipe: a section of `train` (of `seeds.train` with "
                                                     "--table seeds) in params.yaml")
    parser.add_argument("--table", choices=list(TABLES), default=DEFAULT_TABLE.name,
                        help="default: dvc.yaml's nets (outputs at the root); seeds: a row of the seed table "
                             "(seeds/dvc.yaml, outputs under seeds/) (default: %(default)s)")
    args = parser.parse_args(argv)
    return args.name, TABLES[args.table]
