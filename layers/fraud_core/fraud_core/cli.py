"""The one way our command-line tools build their parser: module docstring as the help text."""

from __future__ import annotations

import argparse


def cli_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser named ``python -m <module>`` whose description keeps the docstring's layout."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
