"""Where per-task gradients are taken, for any architecture: the parameters more than one task
uses (the default), or the shared representation (LibMTL's `rep_grad`, an option).

**Which parameters are shared** is measured, not declared: once, before training, on a probe
batch (every label treated as observed, eval mode so nothing random happens), a parameter is
shared when the losses of two or more tasks have a non-zero gradient on it. So shared
embeddings, shared experts, a shared bottom, a shared gate and a tower another task's loss is
chained through (ESMM) are all found without any code that knows the architecture, and a new
architecture file needs nothing here. Shared parameters are grouped by the modules that hold
them (`group_of`): embeddings (in an nn.Embedding or the input layer), then by module name
(gates, experts, bottom, towers, else the top-level module's name).

**The last shared layer** (GradNorm's W, Chen et al. ICML 2018, section 3.2) comes from the same
probe: walking back through the autograd graph from each task's tower input, the first Linear
layers met (outside the embeddings) are that task's layers just below its tower; W is those
every tower task meets, and where no such layer is shared (Single-task, ESMM), each task's own.
A task without a tower (retrieval) walks back from its loss, so its own last layers join W.

**The shared representation** is the output of each largest module whose parameters are all
shared (the input layer, each expert, the bottom MLP, ...). With `grad_space="rep"` a gradient
method detaches those outputs during training (`RepCapture`), takes each task's gradient on them
(a backward pass through the task-specific part only), aggregates there, and pushes the result
back through the shared modules once, in reverse order of their forward calls (`TaskGradients`).

Cost per training step, in backward passes B (T tasks), measured in BENCHMARKS.md:
- a loss-weighting method (fixed, uncertainty, ...): 1 B; gradient telemetry adds (T-1) B every
  `log_every` steps (the last task's gradient is the step's own gradient minus the others');
- a gradient method on the shared parameters: T B (task-specific gradients come with them);
- a gradient method on the shared representation: T passes through the task-specific part
  plus one through the shared part.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.context import context_of
from ..data.history import history_of
from ..models.blocks import InputLayer, SideEmbedding
from .steps import forward

# (word in a module path, group): the first word found anywhere in a parameter's module path wins
GROUP_WORDS = (("gate", "gates"), ("expert", "experts"), ("specific", "experts"), ("shared", "experts"),
               ("bottom", "bottom"), ("tower", "towers"))
GROUP_ORDER = ("embeddings", "bottom", "experts", "gates", "towers")
EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag, InputLayer, SideEmbedding)
PROBE_ROWS = 512


def group_of(model: nn.Module, name: str) -> str:
    """The parameter group of parameter `name` (e.g. 'experts.0.2.weight' -> 'experts')."""
    path = name.split(".")[:-1]
    mods = [model.get_submodule(".".join(path[:k + 1])) for k in range(len(path))]
    if any(isinstance(m, EMBEDDING_MODULES) for m in mods):
        return "embeddings"
    words = [p.lower() for p in path if not p.isdigit()]
    for word, group in GROUP_WORDS:
        if any(word in w for w in words):
            return group
    return words[0] if words else "other"


def _ordered(groups: dict[str, list[int]]) -> dict[str, list[int]]:
    rank = {g: k for k, g in enumerate(GROUP_ORDER)}
    return dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


@dataclass
class SharedParameters:
    """The parameters more than one task uses, their groups, and the shared modules."""
    names: list[str]
    params: list[nn.Parameter]
    users: list[tuple[int, ...]]  # the tasks whose losses reach each shared parameter
    groups: dict[str, list[int]]  # group -> indices into params, in display order
    other: list[nn.Parameter]  # every other trainable parameter (one task's own)
    rep_modules: list[tuple[str, nn.Module]] = field(default_factory=list)  # largest all-shared modules
    # GradNorm's W: the last layer all tower tasks share (else each task's own last layer), and its names
    last_layer: list[nn.Parameter] = field(default_factory=list)
    last_layer_names: list[str] = field(default_factory=list)

    @classmethod
    def none(cls) -> SharedParameters:
        return cls([], [], [], {}, [])

    @classmethod
    def find(cls, model: nn.Module, data, rows: int = PROBE_ROWS) -> SharedParameters:
        """Probe a MultiTaskModel on the first `rows` examples of `data` (EncodedExamples)."""
        u, i, y, h = data.user[:rows], data.item[:rows], data.labels[:rows], history_of(data, slice(0, rows))
        c = context_of(data, slice(0, rows))
        towers = dict(zip(model.task_names, model.towers))  # the ranking tasks' heads; none for retrieval
        heads = [towers.get(t.name) for t in model.output_tasks]
        return cls.from_losses(model, lambda: model.task_losses(forward(model, u, i, h, c), y, torch.ones_like(y)), heads)

    @classmethod
    def from_losses(cls, model: nn.Module, losses_fn, heads: list[nn.Module | None] | None = None) -> SharedParameters:
        """Probe any module: `losses_fn()` returns its per-task losses [T]. `heads`: per task, the
        module whose input is that task's own representation (its tower), None where it has none."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        fired: set[int] = set()
        hooks = [m.register_forward_hook(lambda mod, args, out: fired.add(id(mod)) if torch.is_tensor(out) else None)
                 for m in model.modules()]
        graph = _LayerGraph(model, heads)
        was = model.training
        model.eval()
        try:
            with torch.enable_grad():
                losses = losses_fn()
                reach = []
                for k in range(len(losses)):
                    if not losses[k].requires_grad:
                        reach.append([False] * len(named))
                        continue
                    g = torch.autograd.grad(losses[k], [p for _, p in named], retain_graph=True, allow_unused=True)
                    reach.append([x is not None and bool(x.abs().sum() > 0) for x in g])
                near = graph.nearest(losses)
        finally:
            model.train(was)
            graph.close()
            for h in hooks:
                h.remove()
        users = [tuple(k for k in range(len(reach)) if reach[k][j]) for j in range(len(named))]
        idx = [j for j in range(len(named)) if len(users[j]) > 1]
        groups: dict[str, list[int]] = {}
        for pos, j in enumerate(idx):
            groups.setdefault(group_of(model, named[j][0]), []).append(pos)
        shared_ids = {id(named[j][1]) for j in idx}
        last = _last_layer(near, [h is not None for h in graph.heads], [n for n, _ in named], reach)
        return cls(names=[named[j][0] for j in idx], params=[named[j][1] for j in idx], users=[users[j] for j in idx],
                   groups=_ordered(groups), other=[p for n, p in named if id(p) not in shared_ids],
                   rep_modules=_largest_shared(model, shared_ids, fired),
                   last_layer=[p for n, p in named if n in last], last_layer_names=[n for n, _ in named if n in last])

    def __bool__(self) -> bool:
        return bool(self.params)


class _LayerGraph:
    """Records, during the probe, which autograd node each Linear layer's output is (outside the
    embedding modules) and each head's input, to find the layers nearest below each task."""

    def __init__(self, model: nn.Module, heads: list[nn.Module | None] | None):
        self.heads = list(heads) if heads is not None else []
        self.layer_at: dict = {}  # autograd node -> the name of the Linear whose output it is
        self.head_in: dict[int, object] = {}  # task -> autograd node of its head's input
        inside = [n for n, m in model.named_modules() if isinstance(m, EMBEDDING_MODULES)]
        self.hooks = [m.register_forward_hook(self._layer_hook(n)) for n, m in model.named_modules()
                      if isinstance(m, nn.Linear) and not any(n.startswith(e + ".") for e in inside)]
        self.hooks += [h.register_forward_pre_hook(self._head_hook(k)) for k, h in enumerate(self.heads) if h is not None]

    def _layer_hook(self, name: str):
        def hook(mod, args, out):
            if torch.is_tensor(out) and out.grad_fn is not None:
                self.layer_at[out.grad_fn] = name
        return hook

    def _head_hook(self, k: int):
        def hook(mod, args):
            self.head_in[k] = args[0].grad_fn
        return hook

    def nearest(self, losses: torch.Tensor) -> list[set[str]]:
        """Per task, the Linear layers first met walking back from its head's input (its loss
        when it has no head): nothing but that task's own head lies above them."""
        out = []
        for k in range(len(losses)):
            start = self.head_in.get(k) if k < len(self.heads) and self.heads[k] is not None else losses[k].grad_fn
            found, seen, todo = set(), set(), [start]
            while todo:
                fn = todo.pop()
                if fn is None or fn in seen:
                    continue
                seen.add(fn)
                if fn in self.layer_at:
                    found.add(self.layer_at[fn])
                    continue
                todo.extend(nxt for nxt, _ in fn.next_functions)
            out.append(found)
        return out

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def _last_layer(near: list[set[str]], has_head: list[bool], names: list[str], reach: list[list[bool]]) -> set[str]:
    """The parameter names of GradNorm's W: the layers below every tower task's head that all of
    them reach (plus the towerless tasks' own last layers); with none such, each task's own."""
    def reached(k: int, layer: str) -> bool:
        return any(reach[k][j] for j, n in enumerate(names) if n.rsplit(".", 1)[0] == layer)

    own = [{layer for layer in near[k] if reached(k, layer)} for k in range(len(near))]
    towered = [k for k in range(len(own)) if k < len(has_head) and has_head[k]]
    common = set.intersection(*(own[k] for k in towered)) if len(towered) >= 2 else set()
    layers = common.union(*(own[k] for k in range(len(own)) if k not in towered)) if common else set().union(*own)
    return {n for n in names if n.rsplit(".", 1)[0] in layers}


def _largest_shared(model: nn.Module, shared: set[int], fired: set[int]) -> list[tuple[str, nn.Module]]:
    """The largest modules whose parameters are all shared and whose forward returned a tensor."""
    out = []

    def visit(name: str, m: nn.Module) -> None:
        ps = list(m.parameters())
        if ps and all(id(p) in shared for p in ps) and id(m) in fired:
            out.append((name, m))
            return
        for child_name, child in m.named_children():
            visit(f"{name}.{child_name}" if name else child_name, child)

    visit("", model)
    return out


class RepCapture:
    """During training, detaches the output of each shared module (`rep_modules`) so that a
    gradient method can take every task's gradient on it; inert in eval mode and without grad."""

    def __init__(self, shared: SharedParameters, on: bool):
        self.on = bool(on and shared.rep_modules)
        self.reps: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []  # (module, output, detached leaf)
        self.handles = [m.register_forward_hook(self._hook) for _, m in shared.rep_modules] if self.on else []

    def _hook(self, mod, args, out):
        if not (mod.training and torch.is_grad_enabled() and torch.is_tensor(out) and out.requires_grad):
            return None
        leaf = out.detach().requires_grad_()
        self.reps.append((mod, out, leaf))
        return leaf

    def take(self) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]] | None:
        """The representations captured since the last call (None when capture is off)."""
        if not self.on:
            return None
        reps, self.reps = self.reps, []
        return reps

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.on = [], False


class TaskGradients:
    """The per-task gradients of one step, computed on first use and kept for the step, so a
    gradient method and the gradient telemetry share one computation.

    `jacobian()` is [T, n] on the method's space (the shared parameters, flattened, or the
    captured representations); `apply(d, user)` writes `.grad`: `d` on that space, and
    sum_i user_i * grad L_i on every other parameter."""

    def __init__(self, shared: SharedParameters, losses: torch.Tensor, reps=None, mean=None):
        self.shared, self.losses, self.reps = shared, losses, reps
        # several training processes (mtrlib.train.distributed): each task's gradient on the shared
        # parameters is averaged over them before a method aggregates it, so every process
        # aggregates the whole batch's gradients and takes the same step
        self.mean = mean
        self._jac: torch.Tensor | None = None
        self._rows: list[list[torch.Tensor | None]] | None = None  # per task: grads on (space + plain params)
        self._on_shared: list[list[torch.Tensor | None]] | None = None

    @property
    def rep_mode(self) -> bool:
        return self.reps is not None

    def _space(self) -> list[torch.Tensor]:
        return [leaf for _, _, leaf in self.reps] if self.rep_mode else list(self.shared.params)

    def _plain(self) -> list[nn.Parameter]:
        """Parameters that get the plain gradient: not in the space (nor in a detached module)."""
        if not self.rep_mode:
            return list(self.shared.other)
        inside = {id(p) for _, m in self.shared.rep_modules for p in m.parameters()}
        return [p for p in self.shared.params + self.shared.other if id(p) not in inside]

    def rows(self) -> list[list[torch.Tensor | None]]:
        """Per task, its gradient on the space then on the plain parameters (None: not reached)."""
        if self._rows is None:
            inputs = self._space() + self._plain()
            self._rows = [list(torch.autograd.grad(self.losses[k], inputs, retain_graph=True, allow_unused=True))
                          if self.losses[k].requires_grad else [None] * len(inputs) for k in range(len(self.losses))]
        return self._rows

    def jacobian(self) -> torch.Tensor:
        """[T, n]: each task's gradient on the space, flattened (zeros where it does not reach);
        averaged over the training processes when there are several."""
        if self._jac is None:
            self._jac = self._jacobian()
            if self.mean is not None:
                self._jac = self.mean(self._jac)
        return self._jac

    def _jacobian(self) -> torch.Tensor:
        space, rows = self._space(), self.rows()
        cols = []
        for j, s in enumerate(space):
            if all(r[j] is None for r in rows):
                continue
            cols.append(torch.stack([(r[j] if r[j] is not None else torch.zeros_like(s)).reshape(-1) for r in rows]))
        if not cols:
            return self.losses.new_zeros(len(rows), 0)
        return torch.cat(cols, 1)

    def _split(self, d: torch.Tensor) -> list[torch.Tensor | None]:
        """A vector on the space (as laid out by `jacobian`) back into one tensor per element."""
        out, at, rows = [], 0, self.rows()
        for j, s in enumerate(self._space()):
            if all(r[j] is None for r in rows):
                out.append(None)
                continue
            out.append(d[at:at + s.numel()].view_as(s))
            at += s.numel()
        return out

    def apply(self, d: torch.Tensor | None, user: torch.Tensor) -> None:
        """Write `.grad`: the aggregated `d` [n] on the space (None: sum_i user_i g_i there too),
        and sum_i user_i g_i on the plain parameters."""
        rows, space, plain = self.rows(), self._space(), self._plain()
        if d is None:
            d = (user.to(self.losses.dtype)[:, None] * self.jacobian()).sum(0)
        parts = self._split(d)
        if self.rep_mode:
            for p, g in self._chain(parts).items():
                _set_grad(p, g)
        else:
            for p, g in zip(space, parts):
                _set_grad(p, g)
        for j, p in enumerate(plain):
            gs = [user[k] * r[len(space) + j] for k, r in enumerate(rows) if r[len(space) + j] is not None]
            if gs:
                _set_grad(p, torch.stack(gs).sum(0))

    def _chain(self, top: list[torch.Tensor | None]) -> dict[nn.Parameter, torch.Tensor]:
        """Push gradients arriving at the detached representations back through the shared
        modules, the last-produced first (a module's gradient reaches the leaves it read)."""
        acc, out = list(top), {}
        for j in reversed(range(len(self.reps))):
            if acc[j] is None:
                continue
            mod, rep, _ = self.reps[j]
            params = [p for p in mod.parameters() if p.requires_grad]
            earlier = [leaf for _, _, leaf in self.reps[:j]]
            gs = torch.autograd.grad(rep, params + earlier, grad_outputs=acc[j], retain_graph=True, allow_unused=True)
            for p, g in zip(params, gs):
                if g is not None:
                    out[p] = out[p] + g if p in out else g
            for k, g in enumerate(gs[len(params):]):
                if g is not None:
                    acc[k] = g if acc[k] is None else acc[k] + g
        return out

    def on_shared(self) -> list[list[torch.Tensor | None]]:
        """Per task, its gradient on each shared parameter (`shared.params` order): what the
        gradient telemetry measures, whatever the space."""
        if self._on_shared is None:
            rows, n = self.rows(), len(self._space())
            if not self.rep_mode:
                self._on_shared = [r[:n] for r in rows]
            else:
                plain = self._plain()
                pos = {id(p): j for j, p in enumerate(plain)}
                self._on_shared = []
                for r in rows:
                    chained = self._chain(list(r[:n]))
                    self._on_shared.append([chained.get(p, r[n + pos[id(p)]] if id(p) in pos else None)
                                            for p in self.shared.params])
        return self._on_shared


def _set_grad(p: torch.Tensor, g: torch.Tensor | None) -> None:
    if g is None:
        return
    p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()


__all__ = ["SharedParameters", "TaskGradients", "RepCapture", "group_of", "GROUP_ORDER"]
