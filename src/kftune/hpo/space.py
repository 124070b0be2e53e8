"""Search spaces with Katib's parameter types, and values that travel as strings.

A Katib experiment declares each parameter as ``{name, parameterType, feasibleSpace: {min, max,
step, list, distribution}}`` with every number written as a string; trials receive their values
as strings too (``"0.0001"``, ``"32"``, ``"adamw"``). :class:`Parameter` keeps the parsed numbers
and converts both ways:

- :func:`format_value` / :func:`parse_value`: value <-> the string a trial receives. Doubles are
  written in positional notation with at most 12 significant digits (``0.00002326071``, like
  Katib's Go services: ``strconv.FormatFloat(v, 'f', -1, 64)``), integers as integers, list
  values exactly as listed.
- ``Parameter.sample(rng)`` / ``Parameter.from_quantile(q)``: draw from the parameter's prior
  (uniform, logUniform, or a normal/logNormal truncated to ``[min, max]`` with
  ``mu = (min + max) / 2``, ``sigma = (max - min) / 6`` like Katib's hyperopt service; hyperopt
  itself does not truncate, kftune does so that every value stays feasible).
- ``Parameter.encode(value)`` / ``Parameter.decode(u)``: the ``[0, 1]`` coordinates that the
  model-based samplers (KDE/TPE, CMA-ES, GP) work in: linear, or logarithmic for
  ``logUniform``/``logNormal``; integers and stepped doubles map their grid points to the
  centres of equal bins. Categorical and discrete parameters are choices, encoded by index.

Katib rules kept: an int parameter without ``step`` has step 1; ``discrete`` lists hold numbers,
``categorical`` lists hold any strings; ``distribution`` may be unset. Rules added (Katib accepts
these and then fails or misbehaves at sampling time): ``min <= max``, ``step > 0``, logarithmic
distributions need ``min > 0``, lists must be non-empty and without duplicates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from kftune.errors import UserError

PARAMETER_TYPES = ("double", "int", "discrete", "categorical")
DISTRIBUTIONS = (None, "uniform", "logUniform", "normal", "logNormal")

# Katib's proto enum names (api.proto ``Distribution``) and the CRD spellings both map here.
_DISTRIBUTION_ALIASES = {
    "": None,
    "distribution_unspecified": None,
    "uniform": "uniform",
    "loguniform": "logUniform",
    "log_uniform": "logUniform",
    "normal": "normal",
    "lognormal": "logNormal",
    "log_normal": "logNormal",
}
_TYPE_ALIASES = {"double": "double", "int": "int", "discrete": "discrete", "categorical": "categorical"}

_STD_NORMAL = NormalDist()
_TRUNC = 3.0  # normal priors are truncated at mu +- 3 sigma == [min, max]
_PHI_LO = _STD_NORMAL.cdf(-_TRUNC)
_PHI_HI = _STD_NORMAL.cdf(_TRUNC)
_EPS = 1e-9


def _to_number(text: Any, what: str) -> float:
    if isinstance(text, bool):
        raise ValueError(f"{what} must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    return value


def _to_int(text: Any, what: str) -> int:
    value = _to_number(text, what)
    if value != int(value):
        raise ValueError(f"{what} must be an integer, got {text!r}")
    return int(value)


def format_float(value: float) -> str:
    """Positional notation, at most 12 significant digits, no trailing zeros: ``0.00002326071``."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot format non-finite value {value!r}")
    if value == 0:
        return "0"
    rounded = float(f"{value:.12g}")
    return np.format_float_positional(rounded, trim="-")


@dataclass(frozen=True)
class Parameter:
    """One search-space parameter.

    ``min``/``max``/``step`` are numbers (int for ``int`` parameters, float for ``double``;
    strings are parsed); ``values`` is the list of a ``discrete``/``categorical`` parameter,
    kept as strings.
    """

    name: str
    type: str
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    values: tuple[str, ...] = ()
    distribution: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"parameter name must be a non-empty string, got {self.name!r}")
        if self.type not in PARAMETER_TYPES:
            raise ValueError(
                f"parameter {self.name!r}: type must be one of {', '.join(PARAMETER_TYPES)}, got {self.type!r}"
            )
        object.__setattr__(self, "_cache", {})  # trial string -> canonical value (canonical())
        object.__setattr__(self, "_enc_cache", {})  # trial string -> model coordinate (encode_text())
        dist = self.distribution
        if isinstance(dist, str):
            dist = _DISTRIBUTION_ALIASES.get(dist.strip().lower(), dist)
        if dist not in DISTRIBUTIONS:
            raise ValueError(
                f"parameter {self.name!r}: distribution must be one of uniform, logUniform, normal, logNormal, "
                f"got {self.distribution!r}"
            )
        object.__setattr__(self, "distribution", dist)
        if self.type in ("double", "int"):
            self._init_numeric()
        else:
            self._init_list()

    def _init_numeric(self) -> None:
        n = self.name
        if self.min is None or self.min == "" or self.max is None or self.max == "":
            raise ValueError(f"parameter {n!r}: {self.type} parameters need feasibleSpace min and max")
        if self.type == "int":
            lo, hi = _to_int(self.min, f"parameter {n!r} min"), _to_int(self.max, f"parameter {n!r} max")
            step = 1 if self.step in (None, "") else _to_int(self.step, f"parameter {n!r} step")
        else:
            lo, hi = (
                _to_number(self.min, f"parameter {n!r} min"),
                _to_number(self.max, f"parameter {n!r} max"),
            )
            step = None if self.step in (None, "") else _to_number(self.step, f"parameter {n!r} step")
        if lo > hi:
            raise ValueError(f"parameter {n!r}: min {lo} is greater than max {hi}")
        if step is not None and step <= 0:
            raise ValueError(f"parameter {n!r}: step must be > 0, got {step}")
        if self.distribution in ("logUniform", "logNormal") and lo <= 0:
            raise ValueError(f"parameter {n!r}: {self.distribution} needs min > 0, got {lo}")
        if self.values:
            raise ValueError(f"parameter {n!r}: a {self.type} parameter takes min/max, not a list")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)
        object.__setattr__(self, "step", step)
        tol = 1e-9 * max(1.0, abs(lo), abs(hi))
        object.__setattr__(self, "_bounds", (lo - tol, hi + tol, tol))

    def _init_list(self) -> None:
        n = self.name
        values = self.values
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"parameter {n!r}: list must be a list of values, got {values!r}")
        values = tuple(str(v) if not isinstance(v, float) else format_float(v) for v in values)
        if not values:
            raise ValueError(f"parameter {n!r}: a {self.type} parameter needs a non-empty feasibleSpace list")
        if len(set(values)) != len(values):
            dups = sorted({v for v in values if values.count(v) > 1})
            raise ValueError(f"parameter {n!r}: duplicate values in list: {', '.join(dups)}")
        if self.type == "discrete":
            for v in values:
                _to_number(v, f"parameter {n!r} discrete value")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "min", None)
        object.__setattr__(self, "max", None)
        object.__setattr__(self, "step", None)

    # ----------------------------------------------------------------- basic facts
    @property
    def is_numeric(self) -> bool:
        """double or int (a range); discrete/categorical are choices."""
        return self.type in ("double", "int")

    @property
    def is_log(self) -> bool:
        return self.distribution in ("logUniform", "logNormal")

    @property
    def n_choices(self) -> int:
        return len(self.values)

    def grid_size(self) -> int | None:
        """Number of feasible values, or None for a continuous double (no step)."""
        if not self.is_numeric:
            return len(self.values)
        if self.step is None:
            return None
        return int(math.floor((self.max - self.min) / self.step + _EPS)) + 1

    def grid(self) -> list[str]:
        """All feasible values in order (Katib's grid semantics); a double needs a step."""
        if not self.is_numeric:
            return list(self.values)
        if self.step is None:
            raise ValueError(
                f"parameter {self.name!r}: a double needs feasibleSpace.step to be enumerated by grid"
            )
        return [format_value(self, self.min + i * self.step) for i in range(self.grid_size())]

    # ----------------------------------------------------------------- snapping
    def _snap(self, x: float) -> float | int:
        """Clip into [min, max] and round to the step grid / integers."""
        lo, hi = self.min, self.max
        x = min(max(float(x), lo), hi)
        if self.step is not None:
            k = round((x - lo) / self.step)
            k = max(0, min(k, self.grid_size() - 1))
            x = lo + k * self.step
        if self.type == "int":
            return int(round(x))
        return float(x)

    # ----------------------------------------------------------------- priors
    def _bounds_internal(self) -> tuple[float, float]:
        """Continuous range that decode() spreads over [0, 1] (ints widened by half a unit)."""
        lo, hi = float(self.min), float(self.max)
        if self.type == "int" and self.step in (None, 1):
            lo, hi = lo - 0.5, hi + 0.5
            if self.is_log:
                lo = max(lo, float(self.min) * 0.5)
        return lo, hi

    def from_quantile(self, q: float) -> float | int | str:
        """The value at quantile ``q`` in [0, 1) of the prior (for quasi-random sampling)."""
        q = min(max(float(q), 0.0), 1.0 - 1e-12)
        if not self.is_numeric:
            return self.values[min(int(q * len(self.values)), len(self.values) - 1)]
        if self.distribution in ("normal", "logNormal"):
            z = _STD_NORMAL.inv_cdf(_PHI_LO + q * (_PHI_HI - _PHI_LO))  # in [-3, 3]
            u = (z + _TRUNC) / (2 * _TRUNC)
            return self.decode(u)
        return self.decode(q)

    def sample(self, rng: np.random.Generator) -> float | int | str:
        """One draw from the prior."""
        return self.from_quantile(float(rng.random()))

    # ----------------------------------------------------------------- model coordinates
    def encode(self, value: float | int | str) -> float:
        """Value -> model coordinate: [0, 1] for numbers, the list index for choices."""
        if not self.is_numeric:
            return float(self.index_of(value))
        x = float(value)
        m = self.grid_size()
        if m is not None and not (self.type == "int" and self.step == 1):
            if m == 1:
                return 0.5
            k = round((x - self.min) / self.step)
            return (min(max(k, 0), m - 1) + 0.5) / m
        lo, hi = self._bounds_internal()
        if hi == lo:
            return 0.5
        if self.is_log:
            return (math.log(max(x, lo)) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (x - lo) / (hi - lo)

    def decode(self, u: float) -> float | int | str:
        """Model coordinate -> feasible value (clipped, rounded to int/step)."""
        if not self.is_numeric:
            i = int(round(u))
            return self.values[min(max(i, 0), len(self.values) - 1)]
        u = min(max(float(u), 0.0), 1.0)
        m = self.grid_size()
        if m is not None and not (self.type == "int" and self.step == 1):
            k = min(int(u * m), m - 1)
            return self._snap(self.min + k * self.step)
        lo, hi = self._bounds_internal()
        x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if self.is_log else lo + u * (hi - lo)
        return self._snap(x)

    def index_of(self, value: float | int | str) -> int:
        """Index of a list value (discrete values compare as numbers)."""
        s = str(value)
        if s in self.values:
            return self.values.index(s)
        if self.type == "discrete":
            try:
                x = float(s)
            except ValueError:
                pass
            else:
                for i, v in enumerate(self.values):
                    if math.isclose(float(v), x, rel_tol=1e-12, abs_tol=1e-15):
                        return i
        raise ValueError(f"parameter {self.name!r}: {value!r} is not one of {', '.join(self.values)}")

    def contains(self, text: str) -> bool:
        """Is the string ``text`` a feasible value of this parameter?"""
        try:
            parse_value(self, text)
        except ValueError:
            return False
        return True

    @staticmethod
    def from_katib(spec: Mapping[str, Any], where: str = "parameter") -> Parameter:
        """Build from a Katib ``spec.parameters[i]`` dict; raises UserError naming ``where``."""
        if not isinstance(spec, Mapping):
            raise UserError(f"{where}: must be a mapping with name, parameterType and feasibleSpace")
        name = spec.get("name")
        ptype = spec.get("parameterType", spec.get("parameter_type"))
        fs = spec.get("feasibleSpace", spec.get("feasible_space")) or {}
        if not name:
            raise UserError(f"{where}.name: missing; give every parameter a name")
        if not isinstance(ptype, str) or ptype.strip().lower() not in _TYPE_ALIASES:
            raise UserError(
                f"{where}.parameterType: must be one of double, int, discrete, categorical, got {ptype!r}"
            )
        if not isinstance(fs, Mapping):
            raise UserError(f"{where}.feasibleSpace: must be a mapping with min/max/step or list")
        try:
            return Parameter(
                name=str(name),
                type=_TYPE_ALIASES[ptype.strip().lower()],
                min=fs.get("min"),
                max=fs.get("max"),
                step=fs.get("step"),
                values=tuple(fs.get("list") or ()),
                distribution=fs.get("distribution"),
            )
        except ValueError as exc:
            raise UserError(f"{where}.feasibleSpace: {exc}") from None


def format_value(param: Parameter, value: float | int | str) -> str:
    """The string a trial receives for ``value`` of ``param``."""
    if not param.is_numeric:
        return param.values[param.index_of(value)]
    if param.type == "int":
        x = float(value)
        if abs(x - round(x)) > 1e-6:
            raise ValueError(f"parameter {param.name!r}: {value!r} is not an integer")
        return str(int(round(x)))
    return format_float(float(value))


def parse_value(param: Parameter, text: str) -> float | int | str:
    """Parse and check a trial's value: float for double, int for int, the listed string for
    discrete/categorical. Raises ValueError if it is not feasible."""
    ptype = param.type
    if ptype == "categorical" or ptype == "discrete":
        return param.values[param.index_of(text)]
    try:
        x = float(text)
    except (TypeError, ValueError):
        kind = "an integer" if ptype == "int" else "a number"
        raise ValueError(f"parameter {param.name!r}: {text!r} is not {kind}") from None
    if x != x or x in (math.inf, -math.inf):
        raise ValueError(f"parameter {param.name!r}: {text!r} is not a finite number")
    value: float | int = x
    if ptype == "int":
        if x != int(x):
            raise ValueError(f"parameter {param.name!r}: {text!r} is not an integer")
        value = int(x)
    lo, hi, tol = param._bounds  # type: ignore[attr-defined]
    if x < lo or x > hi:
        raise ValueError(f"parameter {param.name!r}: {text} is outside [{param.min}, {param.max}]")
    step = param.step
    if step is not None:
        k = (x - param.min) / step
        if abs(k - round(k)) > 1e-6:
            raise ValueError(f"parameter {param.name!r}: {text} is not min + k * step (step {step})")
    return value


_CACHE_LIMIT = 200_000


def remember(cache: dict, key: Any, value: Any, limit: int = _CACHE_LIMIT) -> Any:
    """Store ``value`` under ``key`` in a bounded memo (emptied once it holds ``limit`` entries)
    and return it: how every memo of the suggestion path grows (values, coordinates, keys, the
    service's trial records). A memo changes no result; it only spares the recomputation."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def canonical(param: Parameter, text: str) -> float | int | str:
    """The parsed value as compared for duplicates (doubles rounded to 12 significant digits);
    raises ValueError if infeasible.

    Memoised per parameter (a long-lived suggestion service sees the same trial strings on every
    request; the cache changes no result and is cleared past 200,000 entries)."""
    cache = param._cache  # type: ignore[attr-defined]
    try:
        return cache[text]
    except (KeyError, TypeError):
        pass
    v = parse_value(param, text)
    if param.type == "double":
        v = float(f"{v:.12g}")
    return remember(cache, text, v) if isinstance(text, str) else v


def encode_text(param: Parameter, text: str) -> float:
    """``param.encode(text)`` memoised per parameter, like :func:`canonical` (the TPE/KDE models
    encode the same trials' values on every request)."""
    cache = param._enc_cache  # type: ignore[attr-defined]
    try:
        return cache[text]
    except (KeyError, TypeError):
        pass
    u = param.encode(text)
    return remember(cache, text, u) if isinstance(text, str) else u


def clear_caches(space: SearchSpace) -> None:
    """Forget memoised values (for cold-start benchmarks)."""
    for p in space:
        p._cache.clear()  # type: ignore[attr-defined]
        p._enc_cache.clear()  # type: ignore[attr-defined]
    space._key_cache.clear()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SearchSpace:
    """An ordered list of parameters with unique names."""

    parameters: tuple[Parameter, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        params = tuple(self.parameters)
        object.__setattr__(self, "parameters", params)
        names = [p.name for p in params]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate parameter names: {', '.join(dups)}")
        object.__setattr__(self, "_index", {p.name: p for p in params})
        object.__setattr__(self, "_key_cache", {})  # (exclude, assignment items) -> parse_key()

    def __iter__(self):
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    def __getitem__(self, name: str) -> Parameter:
        return self._index[name]  # type: ignore[attr-defined]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def without(self, *names: str) -> SearchSpace:
        """The same space minus some parameters (e.g. the resource of ASHA/BOHB)."""
        return SearchSpace(tuple(p for p in self.parameters if p.name not in names))

    def check(self, assignments: Mapping[str, str]) -> list[str]:
        """Problems with an assignment dict: missing/unknown names, infeasible values."""
        errors = [
            f"missing value for parameter {p.name!r}" for p in self.parameters if p.name not in assignments
        ]
        errors += [f"unknown parameter {k!r}" for k in assignments if k not in self]
        for p in self.parameters:
            if p.name in assignments:
                try:
                    parse_value(p, assignments[p.name])
                except ValueError as exc:
                    errors.append(str(exc))
        return errors

    def key(self, assignments: Mapping[str, str], exclude: Sequence[str] = ()) -> tuple[Any, ...]:
        """A hashable identity of an assignment, in space order: numbers rounded to the 12
        significant digits that :func:`format_value` writes, choices as listed; a missing or
        infeasible value keeps its raw string, so it never equals a feasible one."""
        out: list[Any] = []
        for p in self.parameters:
            if p.name in exclude:
                continue
            raw = assignments.get(p.name)
            if raw is None:
                out.append(("missing",))
                continue
            try:
                out.append(canonical(p, raw))
            except ValueError:
                out.append(("raw", str(raw)))
        return tuple(out)

    def parse_key(
        self, assignments: Mapping[str, str], exclude: Sequence[str] = ()
    ) -> tuple[Any, ...] | None:
        """:meth:`key` if every (non-excluded) value is present and feasible, else None.

        Memoised on the assignment's items (the service parses the same 1,000 trials on every
        request); like :func:`canonical`'s memo it changes no result and is cleared when full."""
        memo = self._key_cache  # type: ignore[attr-defined]
        try:
            token = (tuple(exclude), tuple(assignments.items()))
            return memo[token]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: no memo
            return self._parse_key(assignments, exclude)
        key = self._parse_key(assignments, exclude)
        if all(type(v) is str for _, v in token[1]):  # a hit is then never 1 for "1" or True for 1
            remember(memo, token, key)
        return key

    def _parse_key(self, assignments: Mapping[str, str], exclude: Sequence[str]) -> tuple[Any, ...] | None:
        out: list[Any] = []
        for p in self.parameters:
            if p.name in exclude:
                continue
            raw = assignments.get(p.name)
            if raw is None:
                return None
            try:
                v = p._cache[raw]  # type: ignore[attr-defined]  # canonical()'s memo, read inline (hot path)
            except (KeyError, TypeError):
                try:
                    v = canonical(p, raw)
                except ValueError:
                    return None
            out.append(v)
        return tuple(out)

    def total_combinations(self) -> int | None:
        """Number of distinct assignments, None if some parameter is continuous."""
        total = 1
        for p in self.parameters:
            m = p.grid_size()
            if m is None:
                return None
            total *= m
        return total

    @staticmethod
    def from_katib(parameters: Sequence[Mapping[str, Any]], where: str = "spec.parameters") -> SearchSpace:
        """Build from Katib's ``spec.parameters`` list; UserError names the YAML path."""
        if not isinstance(parameters, Sequence) or isinstance(parameters, (str, bytes)):
            raise UserError(f"{where}: must be a list of parameters")
        params = [Parameter.from_katib(p, f"{where}[{i}]") for i, p in enumerate(parameters)]
        seen: dict[str, int] = {}
        for i, p in enumerate(params):
            if p.name in seen:
                raise UserError(
                    f"{where}[{i}].name: duplicate parameter name {p.name!r} (also {where}[{seen[p.name]}]); "
                    "rename one of them"
                )
            seen[p.name] = i
        if not params:
            raise UserError(f"{where}: empty; declare at least one parameter")
        return SearchSpace(tuple(params))
