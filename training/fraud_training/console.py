"""A rich console that stays readable when output is piped (CI logs, `tee`)."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console() -> Console:
    """Console on stderr; 120 columns when not a terminal, so tables are not squeezed."""
    return Console(stderr=True, width=None if sys.stderr.isatty() else 120)
