"""``kftune katib best NAME``: see :mod:`kftune.katib.client`."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from kftune.katib.client import best_main

    return best_main(argv)
