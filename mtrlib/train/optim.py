"""The training optimiser, and lazy (row-wise) updates for big embedding tables.

Dense Adam with weight decay updates every row of every embedding table at every step: each
row's gradient is at least `weight_decay * row`, so the moments and the weights of all rows
are read and written, and the backward pass first fills a gradient as big as the table. An
epoch then costs rows x table size; with ml-25m's 162k users the step costs about twice what
it does on a small table (bench/embedding_optim.py). The usual cure, measured there:

- the id tables (`nn.Embedding` of users and items) give sparse gradients, holding only the
  rows of the batch;
- those rows are updated by PyTorch's `SparseAdam` (Kingma & Ba's Adam, applied to the rows
  present in the batch only: TensorFlow's LazyAdam);
- weight decay is lazy too: applied to the rows of the batch when they are updated (coupled L2
  for `adam`, decoupled for `adamw`; Loshchilov & Hutter, ICLR 2019), instead of to every
  row at every step.

Every other parameter keeps the chosen optimiser (`make_optimizer`). `TrainConfig.
embedding_updates` chooses: "dense" (every row, every step: the behaviour before), "lazy", or
"auto" (the default): lazy for an id table of at least `LAZY_MIN_ROWS` rows on the CPU, where
the saving was measured; dense on a small table, where sparse gradients cost more than they
save, and on an accelerator, where a dense update of the whole table is cheap.

Lazy updates need gradients that flow through plain backpropagation of one loss: a weighting
method that computes per-task gradients itself (it overrides `Weighting.backward`, or sets
`needs_task_gradients`) keeps dense tables ("auto"), or is refused by name ("lazy").
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import EMBEDDING_UPDATES
from ..errors import TrainingError
from ..models.blocks import SideEmbedding
from ..weighting.base import Weighting

LAZY_OPTIMIZERS = ("adam", "adamw")  # the optimisers with a lazy (sparse) form here
# "auto": a table this big updates lazily. Chosen on quality, measured on validation
# (bench/embedding_optim.py, 5 seeds, paired): on a 20,000-user world lazy updates beat dense Adam
# with weight decay by +0.018 +- 0.010 click / +0.049 +- 0.027 like AUC (dense Adam's decay moves
# every row not in the batch towards 0 at a step of about the learning rate, so a user seen
# rarely loses its vector); at 1,500 users within noise; on ml-latest-small (9,742 items) lazy was
# worse on liked (-0.006 +- 0.005, test). Lazy costs 0.61-0.77x the dense step time below ~100k
# rows and is 1.46x faster at ml-25m's 162k users; the quality gain outweighs that cost.
LAZY_MIN_ROWS = 20_000


def id_tables(model: nn.Module) -> list[nn.Embedding]:
    """The user and item id embedding tables (one per entity kind and input layer)."""
    return [m.id for m in model.modules() if isinstance(m, SideEmbedding)]


def dense_gradients_needed(weighting) -> bool:
    """Whether a weighting method reads or writes per-task gradients itself (then the embedding
    tables must give ordinary dense gradients)."""
    return bool(getattr(weighting, "needs_task_gradients", False)) or type(weighting).backward is not Weighting.backward


def lazy_tables(cfg, model: nn.Module, weighting, device: torch.device) -> list[nn.Embedding]:
    """The id tables to update lazily for this run (see the module docstring); refuses an
    explicit "lazy" that cannot be honoured, naming why."""
    mode = getattr(cfg, "embedding_updates", "auto")
    if mode == "dense":
        return []
    if cfg.optimizer not in LAZY_OPTIMIZERS:
        if mode == "lazy":
            raise TrainingError(f"Lazy embedding updates need Adam or AdamW, not '{cfg.optimizer}'.",
                                fix="use --optimizer adam, or --embedding-updates dense")
        return []
    if dense_gradients_needed(weighting):
        if mode == "lazy":
            raise TrainingError(f"The weighting method '{weighting.name}' works on per-task gradients, which lazy "
                                "embedding updates do not give.", fix="use --embedding-updates dense (or auto)")
        return []
    tables = id_tables(model)
    if mode == "auto":
        if device.type != "cpu":
            return []
        tables = [t for t in tables if t.num_embeddings >= LAZY_MIN_ROWS]
    return tables


class LazyAdam(torch.optim.SparseAdam):
    """PyTorch's SparseAdam (the moments and weights of the batch's rows only), plus weight
    decay on those rows: coupled L2 (`decoupled=False`, as torch.optim.Adam's weight_decay) or
    decoupled (AdamW's). SparseAdam itself has no weight decay."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr=lr)
        self.weight_decay, self.decoupled = float(weight_decay), decoupled

    @torch.no_grad()
    def step(self, closure=None):
        if self.weight_decay:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.coalesce()
                    rows = g.indices()[0]
                    if self.decoupled:  # AdamW: shrink the rows being updated
                        p.index_copy_(0, rows, p.index_select(0, rows) * (1 - group["lr"] * self.weight_decay))
                        p.grad = g
                    else:  # Adam's L2: the rows' gradient gains weight_decay * row
                        vals = g.values() + self.weight_decay * p.index_select(0, rows)
                        p.grad = torch.sparse_coo_tensor(g.indices(), vals, g.shape, is_coalesced=True,
                                                         check_invariants=False)
        return super().step(closure)


class Optimizers:
    """Several optimisers stepping as one (the chosen one over the dense parameters, LazyAdam
    over the lazy tables); `state` and `param_groups` are theirs together."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    @property
    def state(self) -> dict:
        return {k: v for o in self.optimizers for k, v in o.state.items()}

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]


def make_optimizer(name: str, params, lr: float, weight_decay: float, extra=(),
                   device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimiser over the model's parameters (+ a weighting's own, without weight decay).

    Uses PyTorch's fused single-kernel implementation where it exists for the device: on CPU
    the default per-parameter loop costs as much as a third of a small model's step.
    """
    groups = [{"params": list(params)}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0})
    cls, kw = {"adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {}),
               "sgd": (torch.optim.SGD, {"momentum": 0.9}), "adagrad": (torch.optim.Adagrad, {})}[name]
    if device is not None and device.type in ("cpu", "cuda"):
        try:
            return cls(groups, lr=lr, weight_decay=weight_decay, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass  # no fused kernel for this optimiser/device in this PyTorch
    return cls(groups, lr=lr, weight_decay=weight_decay, **kw)


def training_optimizer(cfg, model: nn.Module, weighting, device: torch.device):
    """The optimiser of one run: `make_optimizer` over every parameter (and the weighting's own,
    without weight decay), except the id tables `lazy_tables` picks, which LazyAdam updates."""
    lazy = lazy_tables(cfg, model, weighting, device)
    chosen = {id(t) for t in lazy}
    for t in id_tables(model):
        t.sparse = id(t) in chosen  # read by nn.Embedding at each forward: sparse gradients or dense
    lazy_params = {id(t.weight) for t in lazy}
    dense = [p for p in model.parameters() if id(p) not in lazy_params]
    opt = make_optimizer(cfg.optimizer, dense, cfg.lr, cfg.weight_decay, weighting.extra_parameters(), device)
    if not lazy:
        return opt
    return Optimizers([opt, LazyAdam([t.weight for t in lazy], cfg.lr, cfg.weight_decay,
                                     decoupled=cfg.optimizer == "adamw")])


def uses_lazy_updates(model: nn.Module) -> bool:
    """Whether a model's id tables now give sparse gradients (for code that reads gradients:
    `torch.Tensor.to_dense()` them first)."""
    return any(t.sparse for t in id_tables(model))


__all__ = ["EMBEDDING_UPDATES", "LAZY_MIN_ROWS", "LazyAdam", "Optimizers", "id_tables", "lazy_tables",
           "training_optimizer", "uses_lazy_updates", "dense_gradients_needed"]
