"""BRP-NAS-style graph convolutional latency predictor (Dudziak et al., NeurIPS 2020), trained
end-to-end on measured model latency.

As BRP-NAS (§3.2 and supplementary S1.1; layer structure as in SamsungLabs/eagle
``eagle/predictors/gcn/gcn.py``, read for reference): the network is a graph of its operations plus
one *global node* connected to every node, with self-connections; 4 graph-convolution layers of 600
units, each ``A·X·W + b`` -> LayerNorm -> ReLU -> dropout; the global node's final embedding goes
through one linear layer to the latency. Training follows Table S1: batch 10, AdamW, initial learning
rate 8e-4, weight decay 5e-4, learning rate halved after 10 epochs without improvement, dropout
0.002, at most 250 epochs with early stopping after 35 (on a validation part of the *training*
architectures, 10 % here; BRP-NAS used 100 separate models).

Choices BRP-NAS leaves open for our graphs (documented, not from the paper):
- node features: BRP-NAS one-hot-encodes only the op type, since its NAS-Bench cells fix every
  shape; our architectures vary in shape, so each node also gets log(1 + value) of every Table 3
  feature (0 where the category has none), standardised on the training nodes;
- edges: the model's data-flow edges when given (``edges``), else the execution order (a chain),
  which is exact for the sequential synthetic NAS models and loses branches of real-world models;
- the adjacency is row-normalised (mean over neighbours) so the global node's many neighbours do not
  blow up its activations;
- the loss is squared error on latency divided by the training mean (a scale-free target).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..categories import CATEGORIES
from ..features import ALL_FEATURES

LAYERS = 4
HIDDEN = 600
BATCH = 10
LR = 8e-4
WEIGHT_DECAY = 5e-4
DROPOUT = 0.002
MAX_EPOCHS = 250
PATIENCE = 35
PLATEAU_PATIENCE = 10
VALIDATION = 0.1


def _node_inputs(ops: pd.DataFrame) -> np.ndarray:
    """Raw per-op inputs: one-hot category, global flag (0), log1p of Table 3 features."""
    onehot = np.zeros((len(ops), len(CATEGORIES) + 1), dtype=np.float32)
    idx = {c: i for i, c in enumerate(CATEGORIES)}
    for r, c in enumerate(ops["category"]):
        onehot[r, idx.get(c, idx["Other"])] = 1.0
    feats = np.column_stack([ops[f].fillna(0.0).to_numpy(np.float64) if f in ops
                             else np.zeros(len(ops)) for f in ALL_FEATURES])
    return np.hstack([onehot, np.log1p(np.maximum(feats, 0.0)).astype(np.float32)])


def build_graphs(ops: pd.DataFrame, edges: dict[str, list[tuple[int, int]]] | None = None):
    """Per model (in order of first appearance): (name, node inputs [n+1, F], adjacency [n+1, n+1]).

    Node 0 is the global node. ``edges[model]`` lists (producer op_index, consumer op_index)."""
    graphs = []
    for model, g in ops.groupby("model", sort=False):
        g = g.sort_values("op_index")
        n = len(g)
        x = np.zeros((n + 1, len(CATEGORIES) + 1 + len(ALL_FEATURES)), dtype=np.float32)
        x[1:] = _node_inputs(g)
        x[0, len(CATEGORIES)] = 1.0
        pos = {int(i): k + 1 for k, i in enumerate(g["op_index"])}
        a = np.eye(n + 1, dtype=np.float32)
        a[0, :] = 1.0
        a[:, 0] = 1.0
        pairs = (edges or {}).get(model)
        if pairs is None:
            pairs = list(zip(g["op_index"].iloc[:-1], g["op_index"].iloc[1:]))
        for s, d in pairs:
            if int(s) in pos and int(d) in pos:
                a[pos[int(s)], pos[int(d)]] = 1.0
        a /= a.sum(axis=1, keepdims=True)
        graphs.append((model, x, a))
    return graphs


def _net(n_in: int, dropout: float):
    import torch
    from torch import nn

    class GCN(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [n_in] + [HIDDEN] * LAYERS
            self.gc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
            self.norm = nn.ModuleList(nn.LayerNorm(HIDDEN) for _ in range(LAYERS))
            self.drop = nn.Dropout(dropout)
            self.fc = nn.Linear(HIDDEN, 1)

        def forward(self, adj, x):
            for gc, norm in zip(self.gc, self.norm):
                # A·(X·W) + b: bias after aggregation, as a graph convolution
                x = torch.bmm(adj, x @ gc.weight.T) + gc.bias
                x = self.drop(torch.relu(norm(x)))
            return self.fc(x[:, 0])[:, 0]

    return GCN()


def _batch(graphs, idx):
    import torch
    n = max(graphs[i][1].shape[0] for i in idx)
    f = graphs[idx[0]][1].shape[1]
    X = np.zeros((len(idx), n, f), dtype=np.float32)
    A = np.zeros((len(idx), n, n), dtype=np.float32)
    for b, i in enumerate(idx):
        m = graphs[i][1].shape[0]
        X[b, :m] = graphs[i][1]
        A[b, :m, :m] = graphs[i][2]
    return torch.from_numpy(A), torch.from_numpy(X)


class GcnBaseline:
    name = "gcn"

    def __init__(self, max_epochs: int = MAX_EPOCHS, seed: int = 0, threads: int = 1,
                 edges: dict[str, list[tuple[int, int]]] | None = None, progress: bool = False):
        self.max_epochs = max_epochs
        self.seed = seed
        self.threads = threads
        self.edges = edges
        self.progress = progress
        self.net = None
        self.mean = self.std = None
        self.y_scale = 1.0
        self.epochs_run = 0
        self.fit_seconds = 0.0

    def __getstate__(self):
        # the torch module's class is built lazily (no torch import at module import): pickle
        # its weights and rebuild it on load
        state = dict(self.__dict__)
        if self.net is not None:
            state["net"] = {k: v.clone() for k, v in self.net.state_dict().items()}
            state["_n_in"] = self.net.gc[0].in_features
        return state

    def __setstate__(self, state):
        weights = state.pop("net", None)
        n_in = state.pop("_n_in", None)
        self.__dict__.update(state)
        self.net = None
        if weights is not None:
            self.net = _net(n_in, DROPOUT)
            self.net.load_state_dict(weights)
            self.net.eval()

    def _standardise(self, graphs):
        out = []
        for m, x, a in graphs:
            x = x.copy()
            k = len(CATEGORIES) + 1
            x[1:, k:] = (x[1:, k:] - self.mean) / self.std
            out.append((m, x, a))
        return out

    def fit(self, train_ops: pd.DataFrame) -> "GcnBaseline":
        import torch
        t0 = time.perf_counter()
        prev = torch.get_num_threads()
        torch.set_num_threads(max(1, self.threads))
        try:
            graphs = build_graphs(train_ops, self.edges)
            y_all = train_ops.groupby("model", sort=False)["e2e_ms"].first()
            y = np.array([y_all[m] for m, _, _ in graphs], dtype=np.float32)
            k = len(CATEGORIES) + 1
            nodes = np.vstack([x[1:, k:] for _, x, _ in graphs])
            self.mean = nodes.mean(axis=0)
            std = nodes.std(axis=0)
            self.std = np.where(std > 0, std, 1.0).astype(np.float32)
            graphs = self._standardise(graphs)
            self.y_scale = float(y.mean())
            t = torch.from_numpy(y / self.y_scale)

            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(len(graphs))
            n_val = max(1, int(round(VALIDATION * len(graphs)))) if len(graphs) > 2 else 0
            va, tr = perm[:n_val], perm[n_val:]
            torch.manual_seed(self.seed)
            net = _net(graphs[0][1].shape[1], DROPOUT)
            opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5,
                                                               patience=PLATEAU_PATIENCE)
            val_batches = [(va[i:i + BATCH]) for i in range(0, len(va), BATCH)]
            best, best_state, since = np.inf, None, 0
            bar = None
            if self.progress:
                from tqdm import tqdm
                bar = tqdm(total=self.max_epochs, desc="gcn", unit="epoch", leave=False)
            for epoch in range(self.max_epochs):
                net.train()
                order = rng.permutation(tr)
                for i in range(0, len(order), BATCH):
                    idx = order[i:i + BATCH]
                    A, X = _batch(graphs, idx)
                    loss = ((net(A, X) - t[idx]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                net.eval()
                with torch.no_grad():
                    if len(va):
                        err = float(sum(((net(*_batch(graphs, b)) - t[b]) ** 2).sum()
                                        for b in val_batches) / len(va))
                    else:
                        err = float(loss)
                sched.step(err)
                self.epochs_run = epoch + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(val_mse=f"{err:.4f}", refresh=False)
                if err < best - 1e-9:
                    best, since = err, 0
                    best_state = {k2: v.detach().clone() for k2, v in net.state_dict().items()}
                else:
                    since += 1
                    if since >= PATIENCE:
                        break
            if bar is not None:
                bar.close()
            net.load_state_dict(best_state)
            net.eval()
            self.net = net
        finally:
            torch.set_num_threads(prev)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict_models(self, ops: pd.DataFrame) -> pd.Series:
        import torch
        if self.net is None:
            raise RuntimeError("GCN baseline is not fitted")
        graphs = self._standardise(build_graphs(ops, self.edges))
        out = []
        with torch.no_grad():
            for i in range(0, len(graphs), BATCH):
                idx = list(range(i, min(i + BATCH, len(graphs))))
                out += (self.net(*_batch(graphs, idx)) * self.y_scale).tolist()
        return pd.Series(np.maximum(out, 0.0), index=[m for m, _, _ in graphs], dtype=np.float64)
