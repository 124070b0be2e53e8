"""Editing a ``kftune train`` argv: the best trial's command becomes the retrain command."""

from __future__ import annotations


def _matches(arg: str, flag: str) -> bool:
    return arg == flag or arg.startswith(flag + "=")


def _takes_value(argv: list[str], i: int) -> bool:
    """``argv[i]`` is a bare ``--flag`` followed by its value (not another ``--option``)."""
    return "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("--")


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1] if _takes_value(argv, i) else ""
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def drop_flag(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if _matches(a, flag):
            i += 2 if _takes_value(argv, i) else 1
            continue
        out.append(a)
        i += 1
    return out


def set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """Replace every occurrence of ``flag`` by ``flag value`` at the first one's place (or append)."""
    out: list[str] = []
    placed = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if _matches(a, flag):
            if not placed:
                out += [flag, str(value)]
                placed = True
            i += 2 if _takes_value(argv, i) else 1
            continue
        out.append(a)
        i += 1
    if not placed:
        out += [flag, str(value)]
    return out


def train_args(argv: list[str]) -> list[str]:
    """The arguments after ``train`` of a ``kftune train ...`` / ``python -m kftune train ...`` /
    ``torchrun ... -m kftune train ...`` command; ValueError when it is not one."""
    for i, a in enumerate(argv):
        if a == "train" and i > 0 and argv[i - 1].rsplit("/", 1)[-1] == "kftune":
            return list(argv[i + 1 :])
    raise ValueError(f"not a kftune train command: {' '.join(argv[:6])} ...")
