"""The retrieval task: a user tower and an item tower on the model's input layer, trained with an
in-batch sampled softmax, corrected for popularity (logQ), with a temperature.

Yi, Yang, Hong, Cheng, Heldt, Kumthekar, Zhao, Wei, Chi, "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations", RecSys 2019. With L2-normalised tower outputs
u(x), v(y) and temperature tau, s(x, y) = <u(x), v(y)> / tau. In a batch of B positive pairs the
other items of the batch are each pair's negatives; since an item enters a batch in proportion
to its frequency p_j, each logit is corrected by it:

    s_c(x_i, y_j) = s(x_i, y_j) - log p_j,     L = -1/B sum_i log softmax_j s_c(x_i, y_j) [j = i]

p_j is estimated from the stream of training batches, as in the paper's section 4 (here with
exact counts, since the catalogue is small enough to count). A batch item equal to the
positive of another row ("accidental hit") is not that row's negative.

Any architecture gets the task with no edit of its own: `with_retrieval(cls)` puts
`WithRetrieval` before the architecture in the method order, the architecture is built on the
ranking tasks only (it never sees the retrieval task), and the model's outputs (forward,
`task_losses`, `predict`) are the ranking tasks' columns with each retrieval task's score placed
at its position in the task list. The towers read the shared input layer (embeddings and side
features) when the architecture has one (`shared_input_layer()`: `self.input`, STEM's shared row); one that shares nothing (Single-task)
gives them their own. Retrieving the top N of the catalogue is then one matrix product of
user vectors with item vectors (mtrlib.serve.scoring / mtrlib.serve.cascade).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.context import context_of
from ..registry import knob
from .blocks import InputLayer, mlp, mlp_out_dim


@dataclass
class RetrievalOptions:
    """The retrieval towers' settings (ModelConfig fields; used only when a task is a retrieval task)."""
    retrieval_dim: int = knob(32, "Retrieval dimension", noun="retrieval output dimension", lo=2, hi=256,
                              flag="--retrieval-dim", url="rdim", valid=lambda v: 1 <= v <= 512,
                              message="The retrieval output dimension must be 1..512 (got {v}).", fix="e.g. 32",
                              help="width of the user and item vectors whose dot product retrieves")
    retrieval_layers: list[int] = knob([64], "Retrieval tower", noun="retrieval tower layer", widget="sizes",
                                       flag="--retrieval-layers", url="rlayers",
                                       help="hidden layers of the user and the item tower (none: one linear map)")
    retrieval_temperature: float = knob(0.05, "Retrieval temperature", noun="retrieval temperature", lo=0.01,
                                        hi=1.0, step=0.01, flag="--retrieval-temperature", url="rtemp",
                                        valid=lambda v: 0.001 <= v <= 10, fix="e.g. 0.05",
                                        message="The retrieval temperature must be between 0.001 and 10 (got {v}).",
                                        help="tau of the softmax over cosine scores: lower = sharper")


class Retrieval:
    """What `mtrlib.config.knob_owners` names as the owner of the retrieval knobs."""
    label = "retrieval task"
    paper = "Yi et al., RecSys 2019"
    Options = RetrievalOptions


def user_row(inp: InputLayer, rows: torch.Tensor, context=None) -> torch.Tensor:
    """The user's part of the input layer: id vector + side features [len(rows), d_u], and the
    request's context (device, hour; never the slot, which describes a placed item) when the
    data has context features."""
    parts = [inp.user_vectors(rows), *inp.user.features(rows)]
    if inp.context is not None:
        parts.append(inp.context.request(context, len(rows), rows.device))
    return torch.cat(parts, -1)


def item_row(inp: InputLayer, rows: torch.Tensor) -> torch.Tensor:
    """The item's part of the input layer: item vector (id + text) + side features [len(rows), d_i]."""
    return torch.cat([inp.item_vectors(rows), *inp.item.features(rows)], -1)


class TwoTower(nn.Module):
    """A user tower and an item tower (MLP then a linear map to `dim`), L2-normalised outputs."""

    def __init__(self, inp: InputLayer, dim: int, layers: list[int], dropout: float = 0.0):
        super().__init__()
        d_u = inp.user.id.embedding_dim + inp.user.feature_dim + (inp.context.request_dim if inp.context else 0)
        d_i = inp.item_dim + inp.item.feature_dim
        self.user = nn.Sequential(mlp(d_u, layers, dropout), nn.Linear(mlp_out_dim(d_u, layers), dim))
        self.item = nn.Sequential(mlp(d_i, layers, dropout), nn.Linear(mlp_out_dim(d_i, layers), dim))

    def users(self, inp: InputLayer, rows: torch.Tensor, context=None) -> torch.Tensor:
        return F.normalize(self.user(user_row(inp, rows, context)), dim=-1)  # [B, dim]

    def items(self, inp: InputLayer, rows: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item(item_row(inp, rows)), dim=-1)  # [B, dim]


def in_batch_softmax(u: torch.Tensor, v: torch.Tensor, items: torch.Tensor, log_q: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Mean sampled-softmax loss of B positive pairs (u[b], v[b]) against the batch's other items:
    logits u v^T / tau - log q (Yi et al.'s logQ correction), accidental hits masked."""
    logits = u @ v.T / temperature - log_q[None, :]  # [B, B]
    same = items[:, None] == items[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(u), device=u.device))


class WithRetrieval:
    """Retrieval towers on any architecture (see the module docstring). Output columns follow the
    task list; `self.tasks` / `self.task_names` stay the ranking tasks the architecture was built
    on, and `output_tasks` / `retrieval_tasks` name every column / the retrieval ones."""

    def __init__(self, cfg, desc, tables, tasks, options=None, retrieval: RetrievalOptions | None = None):
        """`options`: the architecture's; `retrieval`: the towers' (RetrievalOptions)."""
        tasks = list(tasks)
        super().__init__(cfg, desc, tables, [t for t in tasks if not t.is_retrieval], options)
        r = retrieval if retrieval is not None else RetrievalOptions()
        self._outputs = tasks
        self._retrieval = [t for t in tasks if t.is_retrieval]
        if self.shared_input_layer() is None:  # the architecture shares no input layer
            self.retrieval_input = self.make_input(desc, tables)
        self.retrieval = nn.ModuleList(TwoTower(self.retrieval_layer(), r.retrieval_dim, r.retrieval_layers,
                                                cfg.dropout) for _ in self._retrieval)
        self.temperature = float(r.retrieval_temperature)
        names = [t.name for t in tasks]
        ranked = [k for k, t in enumerate(tasks) if not t.is_retrieval]
        retr = [k for k, t in enumerate(tasks) if t.is_retrieval]
        order = ranked + retr  # position of each column in cat([ranking, retrieval])
        self.register_buffer("_rank_cols", torch.tensor(ranked, dtype=torch.long), persistent=False)
        self.register_buffer("_retr_cols", torch.tensor(retr, dtype=torch.long), persistent=False)
        self.register_buffer("_join", torch.tensor([order.index(k) for k in range(len(names))], dtype=torch.long),
                             persistent=False)
        # per retrieval task: positives of each item seen in training so far (the logQ estimate)
        self.register_buffer("_item_counts", torch.zeros(len(retr), self.n_items), persistent=False)
        self._batch: list | None = None

    # -- what callers read -----------------------------------------------------------------------
    @property
    def output_tasks(self):
        return self._outputs

    @property
    def retrieval_tasks(self):
        return self._retrieval

    def retrieval_layer(self) -> InputLayer:
        own = getattr(self, "retrieval_input", None)
        return own if own is not None else self.shared_input_layer()

    def retrieval_index(self, task: str | None = None) -> int:
        names = [t.name for t in self._retrieval]
        return 0 if task is None else names.index(task)

    def retrieval_user_vectors(self, rows: torch.Tensor, task: str | None = None, context=None) -> torch.Tensor:
        return self.retrieval[self.retrieval_index(task)].users(self.retrieval_layer(), rows, context)

    def retrieval_item_vectors(self, rows: torch.Tensor | None = None, task: str | None = None) -> torch.Tensor:
        if rows is None:
            rows = torch.arange(self.n_items, device=self._item_counts.device)
        return self.retrieval[self.retrieval_index(task)].items(self.retrieval_layer(), rows)

    def join_outputs(self, ranking: torch.Tensor, retrieval: torch.Tensor) -> torch.Tensor:
        """[..., R] ranking columns + [..., Q] retrieval columns -> [..., T] in task order."""
        return torch.cat([ranking, retrieval], -1).index_select(-1, self._join)

    # -- the model's outputs ---------------------------------------------------------------------
    def ranking_forward(self, user, item, history=None, context=None):
        return super().forward(user, item, history, context)

    def forward(self, user, item, history=None, context=None):
        """Raw outputs [B, T]: the ranking towers, and per retrieval task the cosine of its towers.
        A history block (mtrlib.models.history) feeds the ranking towers; the retrieval towers
        read the user's id and features only, so that one user vector serves every item."""
        raw = self.ranking_forward(user, item, history, context)
        inp = self.retrieval_layer()
        vecs = [(tw.users(inp, user, context), tw.items(inp, item)) for tw in self.retrieval]
        if not torch.is_inference_mode_enabled():  # kept for task_losses' in-batch softmax
            self._batch = [vecs, item, raw.shape[0]]
        cos = torch.stack([(u * v).sum(-1) for u, v in vecs], -1)  # [B, Q]
        return self.join_outputs(raw, cos)

    def task_losses(self, raw, labels, mask):
        """Per-task loss [T]: the architecture's own for ranking tasks, the in-batch softmax for
        retrieval tasks over the batch's positive rows (0 with fewer than two)."""
        r, q = self._rank_cols, self._retr_cols
        ranking = super().task_losses(raw.index_select(1, r), labels.index_select(1, r), mask.index_select(1, r))
        if self._batch is None or self._batch[2] != raw.shape[0]:
            raise RuntimeError("task_losses of a retrieval task needs the forward pass of the same batch")
        vecs, item, _ = self._batch
        self._batch = None
        out = []
        for k, (u, v) in enumerate(vecs):
            pos = mask[:, q[k]].bool()
            if int(pos.sum()) < 2:
                out.append(raw.new_zeros(()) + 0.0 * raw.sum())
                continue
            items = item[pos]
            counts = self._item_counts[k]
            if self.training:
                with torch.no_grad():
                    counts.index_add_(0, items, torch.ones_like(items, dtype=counts.dtype))
            log_q = torch.log(counts[items].clamp(min=1) / counts.sum().clamp(min=1))
            out.append(in_batch_softmax(u[pos], v[pos], items, log_q, self.temperature))
        return self.join_outputs(ranking, torch.stack(out) if out else ranking.new_zeros(0))

    def predict(self, raw):
        """The architecture's predictions for ranking tasks; the cosine score for retrieval tasks."""
        return self.join_outputs(super().predict(raw.index_select(-1, self._rank_cols)),
                                 raw.index_select(-1, self._retr_cols))

    def fusion_scale(self, preds):
        """Ranking columns as the base model scales them; a retrieval column as its softmax logit
        cos / tau (its log-probability among all items, up to a per-user constant)."""
        return self.join_outputs(super().fusion_scale(preds.index_select(-1, self._rank_cols)),
                                 preds.index_select(-1, self._retr_cols) / self.temperature)

    @torch.no_grad()
    def fit_targets(self, labels, mask):
        super().fit_targets(labels.index_select(1, self._rank_cols.to(labels.device)),
                            mask.index_select(1, self._rank_cols.to(mask.device)))
        self._item_counts.zero_()


_CLASSES: dict[type, type] = {}


def with_retrieval(cls: type) -> type:
    """The network class `cls` with retrieval towers (one class per network, made once): its
    `spec` (and so `arch`) is the architecture's own, and isinstance(model, cls) still holds."""
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (WithRetrieval, cls), {"__module__": cls.__module__,
                                                                   "__qualname__": cls.__qualname__ + "+retrieval"})
    return _CLASSES[cls]


RECALL_KS = (10, 100)
RECALL_SAMPLE = 2000  # positive pairs per evaluation: exact ranks over the whole catalogue, cheap


@torch.inference_mode()
def sampled_recall(model, data, tasks, cap: int = RECALL_SAMPLE, ks=RECALL_KS, seed: int = 0) -> dict[str, dict]:
    """{retrieval task: {"recall@10", "recall@100", "n"}} over a seeded sample of at most `cap` of
    `data`'s positive pairs: the share whose item ranks in the top K of all items by the towers'
    score for the user (items the user has met are not excluded: TFRS's FactorizedTopK)."""
    out: dict[str, dict] = {}
    names = [t.name for t in tasks]
    was = model.training
    model.eval()
    try:
        for t in model.retrieval_tasks:
            rows = data.mask[:, names.index(t.name)].nonzero().flatten()
            if len(rows) > cap:
                pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:cap]
                rows = rows[pick.to(rows.device)]
            if len(rows) == 0:
                continue
            V = model.retrieval_item_vectors(task=t.name)  # [I, d]
            U = model.retrieval_user_vectors(data.user[rows], t.name, context_of(data, rows))  # [n, d]
            S = U @ V.T  # [n, I]
            rank = (S > S.gather(1, data.item[rows][:, None])).sum(1)  # items scored above the positive
            out[t.name] = {f"recall@{k}": float((rank < k).float().mean()) for k in ks}
    finally:
        model.train(was)
    return out
