"""GraphSAGE (Hamilton, Ying & Leskovec, NeurIPS 2017) on the like graph, in plain PyTorch.

The graph: profiles are nodes, a like (or superlike) u -> v is a directed edge. Every profile has
two roles, so two embeddings: **taste** (as a swiper: aggregated over the profiles it liked,
``N_out``) and **appeal** (as a candidate: aggregated over the profiles that liked it, ``N_in``).
Two layers of mean aggregation, each "self || mean of sampled neighbours" -> linear:

    h0(x)      = MLP([id(x) * known_x, features_x])                            # [dim]
    taste1(u)  = relu(W_t1 [h0(u),      mean_{v in N_out(u)} h0(v)])
    appeal1(v) = relu(W_a1 [h0(v),      mean_{w in N_in(v)}  h0(w)])
    taste2(u)  = W_t2 [taste1(u),  mean_{v in N_out(u)} appeal1(v)]   # u's taste: who u liked
    appeal2(v) = W_a2 [appeal1(v), mean_{w in N_in(v)}  taste1(w)]    # v's appeal: who liked v
    score(u, v) = cos(taste2(u), appeal2(v))

**Inductive**: nothing above is tied to a node id except the optional id embedding (zeroed for
nodes without training interactions, and dropped at random in training so the rest learns to
stand alone). A new profile gets both embeddings from its features and its first likes given and
received through the trained weights (:meth:`GraphSAGE.embed_new`), without retraining.

**Training** (link prediction): each epoch splits the likes at random into message edges (the
graph that is aggregated over, share ``message_share``) and supervision edges (the links to
predict), so a model never sees the edge it is asked about. Loss: for each supervision edge
(u, v), a softmax over candidate links of u at temperature ``temperature``: the true v against
the other edges' candidates in the batch (with the logQ correction for their popularity, as in
the two-tower model) and ``hard_negatives`` of u's own passes. A binary cross-entropy over
sampled negatives learnt far slower here (the in-batch contrast is the stronger signal).

**Neighbour sampling keeps memory bounded**: a batch of B target nodes samples ``fanout1``
neighbours of each (with replacement) and ``fanout2`` of each of those, so one step touches at
most ``B * (2 + hard_negatives) * (1 + fanout1 + fanout1 * fanout2)`` nodes whatever the graph size or a hub's degree;
``h0`` is computed once per distinct node of that set. Inference (after each epoch, and for the
stored vectors) uses every neighbour via sparse mean matrices, in row batches: memory
O(edges + nodes * dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recommender.ml.collab.base import RecommenderConfig
from recommender.ml.collab.data import Interactions
from recommender.ml.collab.deep import InductiveModel, mlp, unit


@dataclass
class GraphSAGEConfig(RecommenderConfig):
    dim: int = 64
    id_dim: int = 32  # id embedding size (0 = purely inductive)
    hidden: int = 128  # width of the input MLP
    fanout1: int = 10  # neighbours sampled per target node
    fanout2: int = 5  # neighbours sampled per first-hop neighbour
    temperature: float = 0.1
    learning_rate: float = 0.003
    weight_decay: float = 1e-6
    batch_size: int = 512  # supervision edges per step
    hard_negatives: int = 1  # passes of the swiper per edge, extra negatives (0 = none)
    logq_correction: bool = True
    message_share: float = 0.7  # of the likes used as the message graph each epoch
    id_dropout: float = 0.3
    epochs: int = 30


def sample_neighbours(
    indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray, fanout: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``fanout`` neighbours of each node, drawn with replacement from a CSR adjacency.

    Returns (neighbours [*nodes.shape, fanout] int64, valid [*nodes.shape, fanout] bool); a node
    without neighbours gets all-invalid slots (index 0, masked). Memory is O(nodes * fanout),
    independent of the degrees.
    """
    flat = nodes.reshape(-1)
    degree = indptr[flat + 1] - indptr[flat]  # [m]
    pick = (rng.random((flat.size, fanout)) * np.maximum(degree, 1)[:, None]).astype(np.int64)
    pos = np.minimum(indptr[flat][:, None] + pick, max(indices.size - 1, 0))
    out = indices[pos] if indices.size else np.zeros((flat.size, fanout), dtype=np.int64)
    valid = np.broadcast_to((degree > 0)[:, None], out.shape)
    shape = (*nodes.shape, fanout)
    return out.astype(np.int64).reshape(shape), valid.reshape(shape).copy()


def _mean_matrix(adj: sp.csr_matrix) -> sp.csr_matrix:
    """Row-normalised adjacency: (M @ H)[i] is the mean of H over i's neighbours (0 if none)."""
    deg = np.asarray(adj.sum(axis=1)).reshape(-1)
    inv = np.divide(1.0, deg, out=np.zeros_like(deg, dtype=np.float64), where=deg > 0)
    return (sp.diags(inv) @ adj).tocsr().astype(np.float32)


def _spmm(m: sp.csr_matrix, h: torch.Tensor, batch: int = 65_536) -> torch.Tensor:
    """Sparse [n, k] @ dense [k, d] in row batches."""
    out = [torch.from_numpy(np.asarray(m[s : s + batch] @ h.numpy())) for s in range(0, m.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0, h.shape[1])


class GraphSAGE(InductiveModel):
    name = "graphsage"
    config_class = GraphSAGEConfig
    config: GraphSAGEConfig

    # --- modules ---------------------------------------------------------------------------------

    def _build(self, n_nodes: int, n_feat: int) -> None:
        cfg = self.config
        if cfg.id_dim <= 0 and n_feat == 0:
            raise ValueError("graphsage needs id embeddings (id_dim > 0) or side features")
        d = cfg.dim
        self._ids = torch.nn.Embedding(n_nodes, max(cfg.id_dim, 0))  # [n, id_dim]
        with torch.no_grad():
            self._ids.weight.normal_(0.0, 0.1, generator=self._gen)
        self._input = mlp(max(cfg.id_dim, 0) + n_feat, cfg.hidden, d)  # h0
        self._taste1 = torch.nn.Linear(2 * d, d)
        self._appeal1 = torch.nn.Linear(2 * d, d)
        self._taste2 = torch.nn.Linear(2 * d, d)
        self._appeal2 = torch.nn.Linear(2 * d, d)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {
            "ids": self._ids,
            "input": self._input,
            "taste1": self._taste1,
            "appeal1": self._appeal1,
            "taste2": self._taste2,
            "appeal2": self._appeal2,
        }

    def _parameters(self) -> list[torch.nn.Parameter]:
        return [p for m in self._modules().values() for p in m.parameters()]

    def _setup(self, data: Interactions) -> None:
        cfg = self.config
        if data.shape[0] != data.shape[1] or not data.shared:
            raise ValueError("graphsage works on one shared id map (profiles on both sides of a like)")
        self._gen = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng(cfg.seed)
        self._x, _ = self._init_features(data)  # [n, f] standardised (f = 0 without features)
        n = data.shape[0]
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self._build(n, self._x.shape[1])
        self._optimizer = torch.optim.Adam(self._parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        seen = data.seen()
        self.known = torch.from_numpy((np.diff(seen.indptr) > 0) | (np.diff(seen.tocsc().indptr) > 0))  # [n]
        pos = data.positives().tocoo()
        self._pos_u = pos.row.astype(np.int64)
        self._pos_i = pos.col.astype(np.int64)
        self._pos_w = pos.data.astype(np.float32)
        counts = np.bincount(self._pos_i, minlength=n).astype(np.float64)
        self._log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32))
        self._graph = data.positives()
        self._graph.data[:] = 1.0  # an edge per like: means are unweighted, as in the sampler
        neg = data.negatives().tocsr()
        self._neg_indptr = neg.indptr.astype(np.int64)
        self._neg_items = neg.indices.astype(np.int64)
        self._refresh()

    # --- sampled forward (training) --------------------------------------------------------------

    def _h0(self, nodes: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """[len(nodes), dim] input representations; ``keep`` [len(nodes)] zeroes id embeddings."""
        parts = []
        if self._ids.embedding_dim > 0:
            e = self._ids(nodes)
            parts.append(e if keep is None else e * keep.unsqueeze(1).float())
        if self._x.shape[1] > 0:
            parts.append(self._x[nodes])
        return self._input(torch.cat(parts, dim=1))

    def _sampled(self, targets: np.ndarray, role: str, adj: dict[str, tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
        """Layer-2 embeddings [len(targets), dim] of ``targets`` in ``role`` ("taste" aggregates
        over likes given, "appeal" over likes received), from sampled neighbourhoods."""
        cfg = self.config
        first, second = ("out", "in") if role == "taste" else ("in", "out")
        n1, v1 = sample_neighbours(*adj[first], targets, cfg.fanout1, self._rng)  # [B, f1]
        n2, v2 = sample_neighbours(*adj[second], n1, cfg.fanout2, self._rng)  # [B, f1, f2]
        # h0 once per distinct node of the computation graph (bounded by B (1 + f1 + f1 f2)).
        every = np.concatenate([targets, n1.reshape(-1), n2.reshape(-1)])
        uniq, inverse = np.unique(every, return_inverse=True)
        known = self.known[torch.from_numpy(uniq)]
        keep = known & (torch.rand(uniq.size, generator=self._gen) >= self._id_drop)
        h = self._h0(torch.from_numpy(uniq), keep)[torch.from_numpy(inverse)]  # [len(every), d]
        b, f1, f2 = targets.size, cfg.fanout1, cfg.fanout2
        h_t = h[:b]  # [B, d]
        h_1 = h[b : b + b * f1].reshape(b, f1, -1)  # [B, f1, d]
        h_2 = h[b + b * f1 :].reshape(b, f1, f2, -1)  # [B, f1, f2, d]
        m1 = torch.from_numpy(v1).float().unsqueeze(-1)  # [B, f1, 1]
        m2 = torch.from_numpy(v2).float().unsqueeze(-1)  # [B, f1, f2, 1]
        mean1 = (h_1 * m1).sum(1) / m1.sum(1).clamp_min(1.0)  # [B, d]
        mean2 = (h_2 * m2).sum(2) / m2.sum(2).clamp_min(1.0)  # [B, f1, d]
        own1, other1 = (self._taste1, self._appeal1) if role == "taste" else (self._appeal1, self._taste1)
        own2 = self._taste2 if role == "taste" else self._appeal2
        self_1 = F.relu(own1(torch.cat([h_t, mean1], dim=-1)))  # [B, d] target at layer 1
        neigh_1 = F.relu(other1(torch.cat([h_1, mean2], dim=-1)))  # [B, f1, d] neighbours at layer 1
        agg = (neigh_1 * m1).sum(1) / m1.sum(1).clamp_min(1.0)  # [B, d]
        return unit(own2(torch.cat([self_1, agg], dim=-1)))  # [B, d]

    def _hard_negatives(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[b, hard_negatives] passes of each swiper (with replacement) and [b, h] validity."""
        h = self.config.hard_negatives
        n_pass = self._neg_indptr[users + 1] - self._neg_indptr[users]
        pick = (self._rng.random((users.size, h)) * np.maximum(n_pass, 1)[:, None]).astype(np.int64)
        items = self._neg_items[np.minimum(self._neg_indptr[users][:, None] + pick, max(self._neg_items.size - 1, 0))]
        return items, np.broadcast_to((n_pass > 0)[:, None], items.shape).copy()

    def _epoch(self, data: Interactions, epoch: int) -> float:
        cfg = self.config
        n_pos = self._pos_u.size
        if n_pos == 0:
            return 0.0
        self._id_drop = cfg.id_dropout if self._x.shape[1] > 0 else 0.0
        message = self._rng.random(n_pos) < cfg.message_share
        n = data.shape[0]
        msg = sp.csr_matrix(
            (np.ones(int(message.sum()), dtype=np.float32), (self._pos_u[message], self._pos_i[message])), shape=(n, n)
        )
        msg_in = msg.T.tocsr()
        adj = {
            "out": (msg.indptr.astype(np.int64), msg.indices.astype(np.int64)),
            "in": (msg_in.indptr.astype(np.int64), msg_in.indices.astype(np.int64)),
        }
        sup = np.flatnonzero(~message)
        sup = sup[self._rng.permutation(sup.size)]
        total, weight = 0.0, 0.0
        for s in range(0, sup.size, cfg.batch_size):
            idx = sup[s : s + cfg.batch_size]
            b = idx.size
            u_np, i_np = self._pos_u[idx], self._pos_i[idx]
            hard_np, valid = self._hard_negatives(u_np) if self._neg_items.size else (np.zeros((b, 0), np.int64), None)
            taste = self._sampled(u_np, "taste", adj)  # [b, d]
            appeal = self._sampled(np.concatenate([i_np, hard_np.reshape(-1)]), "appeal", adj)  # [b (1 + h), d]
            i = torch.from_numpy(i_np)
            logits = taste @ appeal[:b].T / cfg.temperature  # [b, b]: every other edge's candidate is a negative
            if cfg.logq_correction:
                logits = logits - self._log_q[i].unsqueeze(0)
            same = (i.unsqueeze(0) == i.unsqueeze(1)) & ~torch.eye(b, dtype=torch.bool)
            logits = logits.masked_fill(same, -torch.inf)
            if hard_np.shape[1] > 0 and valid is not None:
                a_hard = appeal[b:].reshape(b, hard_np.shape[1], -1)  # [b, h, d]
                hard = (taste.unsqueeze(1) * a_hard).sum(-1) / cfg.temperature  # [b, h]
                logits = torch.cat([logits, hard.masked_fill(~torch.from_numpy(valid), -torch.inf)], dim=1)
            w = torch.from_numpy(self._pos_w[idx])
            loss = (w * F.cross_entropy(logits, torch.arange(b), reduction="none")).sum() / w.sum()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            total += float(loss.item()) * float(w.sum())
            weight += float(w.sum())
        self._refresh()
        return total / max(weight, 1e-12)

    # --- full-graph inference --------------------------------------------------------------------

    def _refresh(self) -> None:
        """Every node's h0, layer-1 and layer-2 embeddings on the full like graph (every
        neighbour, exact means); stored for scoring and for embedding new nodes."""
        with torch.no_grad():
            n = self._x.shape[0]
            h0 = torch.cat(
                [
                    self._h0(torch.arange(s, min(n, s + 8192)), self.known[s : s + 8192])
                    for s in range(0, n, 8192)
                ]
            ) if n else torch.zeros(0, self.config.dim)  # fmt: skip
            mean_out = _mean_matrix(self._graph)  # over likes given
            mean_in = _mean_matrix(self._graph.T.tocsr())  # over likes received
            self.h0 = h0
            self.taste1 = F.relu(self._taste1(torch.cat([h0, _spmm(mean_out, h0)], 1)))
            self.appeal1 = F.relu(self._appeal1(torch.cat([h0, _spmm(mean_in, h0)], 1)))
            self.taste = unit(self._taste2(torch.cat([self.taste1, _spmm(mean_out, self.appeal1)], 1)))
            self.appeal = unit(self._appeal2(torch.cat([self.appeal1, _spmm(mean_in, self.taste1)], 1)))
            self.bias = torch.zeros(n)

    # --- state -----------------------------------------------------------------------------------

    def _state(self) -> dict[str, torch.Tensor]:
        return {**super()._state(), "known": self.known, "h0": self.h0, "taste1": self.taste1, "appeal1": self.appeal1}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        super()._load_state(state)
        self.known = state["known"].bool().clone()
        self.h0 = state["h0"].float().clone()
        self.taste1 = state["taste1"].float().clone()
        self.appeal1 = state["appeal1"].float().clone()
        self._load_modules(
            state, built=hasattr(self, "_input"), build=lambda: self._build(self.n_users, self.feat_mean.numel())
        )

    # --- inductive -------------------------------------------------------------------------------

    def embed_new(
        self,
        features: np.ndarray,
        likes: list[np.ndarray] | list[list[int]] | None = None,
        liked_by: list[np.ndarray] | list[list[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(taste, appeal) [m, dim] unit vectors of profiles the model never saw, from their side
        features ([m, f]) and their first interactions: ``likes[j]`` the known rows profile j
        liked, ``liked_by[j]`` the known rows that liked profile j (either may be empty). No
        retraining; score them with :meth:`like_probability_vectors`."""
        self._check_fitted()
        m = len(features)
        empty: list[list[int]] = [[] for _ in range(m)]
        likes = likes if likes is not None else empty
        liked_by = liked_by if liked_by is not None else [list(e) for e in empty]
        if len(likes) != m or len(liked_by) != m:
            raise ValueError("likes and liked_by need one entry per new profile")
        if self.has_features:
            x = self._standardise(features)
        elif np.asarray(features).size and np.asarray(features).shape[1] != 0:
            raise ValueError("this graphsage model was trained without side features")
        else:
            x = torch.zeros(m, 0)

        def mean_of(table: torch.Tensor, rows: list[np.ndarray] | list[list[int]]) -> torch.Tensor:
            out = torch.zeros(m, table.shape[1])
            for j, r in enumerate(rows):
                r = np.asarray(r, dtype=np.int64)
                if r.size:
                    out[j] = table[torch.from_numpy(r)].mean(0)
            return out

        with torch.no_grad():
            parts = [torch.zeros(m, self._ids.embedding_dim)] if self._ids.embedding_dim > 0 else []
            if x.shape[1] > 0:
                parts.append(x)
            h0 = self._input(torch.cat(parts, dim=1))  # [m, d]: no id part (a new profile)
            taste1 = F.relu(self._taste1(torch.cat([h0, mean_of(self.h0, likes)], 1)))
            appeal1 = F.relu(self._appeal1(torch.cat([h0, mean_of(self.h0, liked_by)], 1)))
            taste = unit(self._taste2(torch.cat([taste1, mean_of(self.appeal1, likes)], 1)))
            appeal = unit(self._appeal2(torch.cat([appeal1, mean_of(self.taste1, liked_by)], 1)))
        return taste.numpy(), appeal.numpy()
