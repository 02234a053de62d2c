"""Sub-commands of this area (filled in by its issue)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """No sub-commands yet."""
