"""One search dimension, one small type: its Tune domain, its Optuna distribution, whether a
value lies inside, whether it is log-scaled and how to print a value of it.

In an experiment file (and in experiment.json) a dimension is written `{kind: [values]}`:
`{loguniform: [low, high]}`, `{uniform: [low, high]}`, `{randint: [low, high]}` (both bounds
included) or `{choice: [values]}`. A bound may be the string "max_epochs" (the budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from ray import tune

from mnist.config import check_value
from mnist.errors import UserError

KINDS = ("loguniform", "uniform", "randint", "choice")
BUDGET = "max_epochs"


def _number(value: Any, where: str) -> float:
    """YAML reads 1e-5 (no dot) as a string: accept it, refuse anything else (true and false included: YAML's
    booleans are not the numbers 1 and 0 here)."""
    if isinstance(value, bool):
        raise UserError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{where}: {value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class Dimension:
    kind: str
    values: tuple  # (low, high) for the ranges, the choices for "choice"

    @classmethod
    def from_spec(cls, spec: dict[str, list]) -> "Dimension":
        """A resolved `{kind: [values]}` (as resolve_experiment leaves it) as a Dimension."""
        (kind, values), = spec.items()
        return cls(kind, tuple(values))

    @classmethod
    def parse(cls, key: str, spec: Any, max_epochs: int, where: str) -> "Dimension":
        """Check one `{kind: [values]}` of an experiment file; every corner and choice must be a
        value training accepts, so a bad space fails here, not inside Ray."""
        where = f"{where}: search_space.{key}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise UserError(f"{where} must be one of {{{' | '.join(KINDS)}: [...]}}")
        (kind, raw), = spec.items()
        if not isinstance(raw, list) or not raw:
            raise UserError(f"{where}.{kind} must be a non-empty list")
        values = [max_epochs if value == BUDGET else value for value in raw]
        if kind != "choice":
            if len(values) != 2:
                raise UserError(f"{where}.{kind} takes [low, high]")
            low, high = (_number(value, where) for value in values)
            if kind == "randint":
                if not all(number.is_integer() for number in (low, high)):
                    raise UserError(f"{where}.randint takes whole-number bounds, got {raw}")
                low, high = int(low), int(high)
            if low == high and BUDGET in raw and kind == "randint":
                kind, values = "choice", [low]  # a range the budget shrank to one value is that value
            elif not low < high or (kind == "loguniform" and low <= 0):
                raise UserError(f"{where}.{kind} needs 0 < low < high, got {values}")
            else:
                values = [low, high]
        for value in values:
            try:
                check_value(key, float(value) if kind in ("uniform", "loguniform") else value)
            except UserError as error:
                raise UserError(f"{where}.{kind} {values}: {error}") from None
        return cls(kind, tuple(values))

    def spec(self) -> dict[str, list]:
        """The plain `{kind: [values]}` that experiment.json keeps."""
        return {self.kind: list(self.values)}

    @property
    def log_scale(self) -> bool:
        return self.kind == "loguniform"

    def domain(self) -> Any:
        """Tune's sampling domain."""
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "randint":
            return tune.randint(self.values[0], self.values[1] + 1)  # Tune's upper bound is exclusive
        return tune.choice(list(self.values))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """Optuna's distribution (fANOVA importance reads the trials through it)."""
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.values))
        if self.kind == "randint":
            return optuna.distributions.IntDistribution(*self.values)
        return optuna.distributions.FloatDistribution(*self.values, log=self.log_scale)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return self.values[0] <= value <= self.values[1]

    def format(self, value: Any) -> str:
        """A value as tables and run names print it: 2.0e-04 on a log scale, 3 significant digits else."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if self.log_scale:
            return f"{value:.1e}"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    def position(self, value: Any) -> float:
        """Where `value` lies on the dimension's own axis, 0 (low / first choice) to 1 (high / last)."""
        if self.kind == "choice":
            return self.values.index(value) / max(1, len(self.values) - 1) if value in self.values else 0.0
        low, high = self.values
        if self.log_scale:
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (value - low) / (high - low)


def dimensions(space: dict[str, dict[str, list]]) -> dict[str, Dimension]:
    """A resolved search space as Dimensions, key by key."""
    return {key: Dimension.from_spec(spec) for key, spec in space.items()}
