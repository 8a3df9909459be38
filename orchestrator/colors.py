"""The one colour ramp of ttc: dark for the smallest value, light for the largest (budgets in every plot,
child runs in MLflow), so a colour says how large a budget is wherever it appears.

Viridis, sampled at nine stops and interpolated between them, without its last yellow (faint on white).
Pure Python: the tracker uses it without importing matplotlib.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

STOPS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b")


def ramp_color(position: float) -> str:
    """The ramp's colour at `position` in [0, 1] (0: darkest), as #rrggbb."""
    x = min(max(position, 0.0), 1.0) * (len(STOPS) - 1)
    i = min(int(x), len(STOPS) - 2)
    low, high = (tuple(int(stop[k:k + 2], 16) for k in (1, 3, 5)) for stop in STOPS[i:i + 2])
    return "#" + "".join(f"{round(a + (b - a) * (x - i)):02x}" for a, b in zip(low, high))


def ramp(values: Iterable[Hashable]) -> dict:
    """One colour per distinct value, dark (smallest) to light (largest); a single value gets the middle."""
    ordered = sorted(set(values))
    if len(ordered) == 1:
        return {ordered[0]: ramp_color(0.5)}
    return {v: ramp_color(i / (len(ordered) - 1)) for i, v in enumerate(ordered)}
