"""Pipelines tests: import ``kftune.components`` / ``kftune.pipelines`` from *this* checkout.

They are mapped into the package by setuptools ``package-dir``; an editable install of another
checkout maps them to that checkout, so put this one's first (src/ already is, by PYTHONPATH).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPED = {"kftune.components": ROOT / "components", "kftune.pipelines": ROOT / "pipelines"}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MAPPED:
            init = MAPPED[fullname] / "__init__.py"
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[str(MAPPED[fullname])]
            )
        return None


def _install() -> None:
    import importlib.util  # noqa: F401

    if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder())
    for name in MAPPED:
        mod = sys.modules.get(name)
        if mod is not None and Path(getattr(mod, "__file__", "") or "").parent != MAPPED[name]:
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]


_install()
