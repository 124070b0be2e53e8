"""The package list in pyproject.toml must cover every package directory (it is explicit because
components/ and pipelines/ are mapped into kftune.*)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    found = {"kftune"}
    for init in (ROOT / "src" / "kftune").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "src")
        found.add(".".join(rel.parts))
    for top, name in (("components", "kftune.components"), ("pipelines", "kftune.pipelines")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join((name, *rel.parts)) if rel.parts else name)
    assert found == listed, f"add to / remove from [tool.setuptools] packages: {sorted(found ^ listed)}"
    assert conf["package-dir"] == {
        "": "src",
        "kftune.components": "components",
        "kftune.pipelines": "pipelines",
    }
