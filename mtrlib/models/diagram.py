"""The network diagram as plain geometry: boxes, arrows and notes on a small canvas.

Each architecture draws its own middle part (what lies between the embeddings and the
towers) with `Canvas.box` / `Canvas.arrow`; `mtrlib.viz.charts.network` adds the embeddings, the
towers and the task heads, and renders it with Plotly. No plotting library here, so an
architecture file needs nothing but this to describe itself.

Coordinates: x from 0 to `width`, y from 0 (inputs) to 5 (task heads). The middle part lives
between y = 0.5 (top of the embeddings box) and y = 2.9 (bottom of the towers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

INPUT_TOP = 0.5
TOWER_BOTTOM = 2.9
COLOURS = {"input": "#d9e8f5", "shared": "#fde2c8", "specific": "#e6d5f0", "gate": "#fff3b0",
           "tower": "#d7f0d2", "head": "#ffffff", "extra": "#dff5f3", "history": "#f9d5e5"}


@dataclass
class Canvas:
    width: float
    tasks: list[str]
    boxes: list[tuple] = field(default_factory=list)  # (x0, y0, x1, y1, label, colour)
    arrows: list[tuple] = field(default_factory=list)  # ((x, y), (x, y))
    notes: list[tuple] = field(default_factory=list)  # (x, y, text, size)

    @property
    def task_x(self) -> list[float]:
        """The x position of each task's tower."""
        T = len(self.tasks)
        return [(k + 0.5) * self.width / T for k in range(T)]

    def box(self, x, y, w, h, label, colour="shared"):
        """A box centred at (x, y); returns its (bottom centre, top centre) anchor points."""
        c = COLOURS.get(colour, colour)
        self.boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2, label, c))
        return (x, y - h / 2), (x, y + h / 2)

    def arrow(self, start, end) -> None:
        self.arrows.append((tuple(start), tuple(end)))

    def note(self, x, y, text, size: int = 10) -> None:
        self.notes.append((x, y, text, size))

    def from_input(self, x) -> tuple:
        return (x, INPUT_TOP)

    def to_tower(self, x) -> tuple:
        return (x, TOWER_BOTTOM)


def sizes(s) -> str:
    return "[" + ",".join(str(int(x)) for x in s) + "]"


def specific_and_shared(c: Canvas, opts) -> list[tuple[str, str]]:
    """The expert row of a PLE-style layout (`opts`: specific_experts, shared_experts): each
    task's specific experts, then the shared ones."""
    experts = [(f"{t[:6]}{k + 1}", "specific") for t in c.tasks for k in range(opts.specific_experts)]
    return experts + [(f"S{k + 1}", "shared") for k in range(opts.shared_experts)]


def specific_and_shared_width(opts, tasks) -> int:
    """The diagram width that row needs (at least one column per task, and three)."""
    return max(len(tasks), len(tasks) * opts.specific_experts + opts.shared_experts, 3)


def specific_and_shared_names(opts, tasks: list[str]) -> list[str]:
    """The dashboard's names of those experts: 'click 1', ..., 'shared 1', ..."""
    return ([f"{t} {k + 1}" for t in tasks for k in range(opts.specific_experts)]
            + [f"shared {k + 1}" for k in range(opts.shared_experts)])


def experts_and_gates(c: Canvas, experts: list[tuple[str, str]], caption: str,
                      feeds=lambda task, expert_label: True) -> None:
    """A row of experts, a gate per task mixing the experts it `feeds` on, into its tower."""
    n = len(experts)
    ex_x = [(k + 0.5) * c.width / n for k in range(n)]
    for x, (lab, col) in zip(ex_x, experts):
        bottom, _ = c.box(x, 1.3, c.width / n * 0.8, 0.5, lab, col)
        c.arrow(c.from_input(x), bottom)
    T = len(c.tasks)
    for x, t in zip(c.task_x, c.tasks):
        c.box(x, 2.3, c.width / T * 0.5, 0.35, f"gate {t[:8]}", "gate")
        for ex, (lab, _) in zip(ex_x, experts):
            if feeds(t, lab):
                c.arrow((ex, 1.55), (x, 2.12))
        c.arrow((x, 2.48), c.to_tower(x))
    c.note(c.width / 2, 1.75, caption)


def per_task_mlps(c: Canvas, label: str) -> None:
    """One MLP per task, from the inputs to that task's tower (Single-task, ESMM)."""
    T = len(c.tasks)
    for x in c.task_x:
        bottom, top = c.box(x, 1.4, c.width / T * 0.8, 0.6, label)
        c.arrow(c.from_input(x), bottom)
        c.arrow(top, c.to_tower(x))
