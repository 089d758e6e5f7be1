"""Action spaces as plain values (what a distribution and a network head are chosen from)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Discrete:
    """Actions ``0 .. n-1``."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


@dataclass(frozen=True)
class Box:
    """Real-valued actions of ``shape`` in ``[low, high]`` (elementwise; bounds may be infinite)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", np.shape(self.low))

    @property
    def bounded(self) -> bool:
        return bool(np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)))


ActionSpace = Discrete | Box
