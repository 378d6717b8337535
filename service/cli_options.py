"""What every `fathom` command's parser shares: the --config option and the argument types.

service/cli.py and the indexer's commands (indexers/cli.py, indexers/eval_cli.py) build on these, so
neither imports the other's module for them.
"""

from __future__ import annotations

import argparse

from service.auth.scopes import parse_collections, parse_scopes
from service.errors import FathomError
from service.search.collections import checked_collection_name

CONFIG_HELP = "TOML file laid over the packaged defaults (default: $FATHOM_CONFIG, if set)"


def config_option() -> argparse.ArgumentParser:
    """A parent parser holding --config, for `fathom` itself and each of its commands
    (`add_parser(name, parents=[...])`), so it may come before or after the command's name.

    Left unset rather than None when absent: a command's parser would otherwise overwrite with None
    a --config given before the command's name.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", help=CONFIG_HELP, metavar="PATH", default=argparse.SUPPRESS)
    return parent


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def collection_name(text: str) -> str:
    try:
        return checked_collection_name(text)
    except FathomError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def scope_names(text: str) -> str:
    try:
        parse_scopes([text])
    except FathomError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def collection_names(text: str) -> str:
    try:
        parse_collections([text])
    except FathomError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
