"""``kftune katib submit FILE``: see :mod:`kftune.katib.client`."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from kftune.katib.client import submit_main

    return submit_main(argv)
