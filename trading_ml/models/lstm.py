"""The LSTM both direction and volatility use: sequences of the last ``length`` bars per symbol.

Sequences never cross symbols; a row without ``length`` bars of its symbol before it gets no
prediction. Training keeps the epoch with the lowest validation loss. Seeds are fixed and torch
runs deterministic algorithms, so the same data gives the same weights.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn


class LSTMNet(nn.Module):
    def __init__(self, features: int, hidden: int, outputs: int):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(sequences)
        return self.head(hidden[-1])


class Sequences:
    """Windows of ``length`` rows ending at each row, per symbol, over a (timestamp, symbol) table."""

    def __init__(self, table: pd.DataFrame, values: np.ndarray, length: int):
        symbols = table.index.get_level_values("symbol")
        self.length = length
        self.windows, self.ends = [], []  # per symbol: a view of its windows, and the table rows they end at
        for symbol in pd.unique(symbols):
            rows = np.flatnonzero(symbols == symbol)
            if len(rows) >= length:
                self.windows.append(np.lib.stride_tricks.sliding_window_view(values[rows], length, axis=0))
                self.ends.append(rows[length - 1:])
        self.row_of = np.concatenate(self.ends) if self.ends else np.array([], dtype=int)
        self._where = [(i, j) for i, ends in enumerate(self.ends) for j in range(len(ends))]

    def batch(self, positions: np.ndarray) -> torch.Tensor:
        """Windows at these positions (indices into row_of), as (batch, length, features)."""
        stacked = np.stack([self.windows[i][j] for i, j in (self._where[p] for p in positions)])
        return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 2, 1)))


def load_net(config: dict, outputs: int, weights) -> tuple[LSTMNet, dict]:
    """A saved net (state_dict, read with weights_only) and its shape settings from its config."""
    net = LSTMNet(len(config["feature_names"]), config["hidden"], outputs)
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net, {"sequence_length": config["sequence_length"], "hidden": config["hidden"]}


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


def fit(
    net: nn.Module,
    sequences: Sequences,
    targets: torch.Tensor,
    train: np.ndarray,
    validation: np.ndarray,
    loss_fn: nn.Module,
    epochs: int,
    batch: int,
    learning_rate: float,
    seed: int,
) -> dict:
    """Train on the ``train`` positions, keep the weights of the best validation epoch; the history."""
    generator = seed_everything(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    best, history = (float("inf"), None), []
    for epoch in range(epochs):
        net.train()
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            optimizer.zero_grad()
            loss = loss_fn(net(sequences.batch(chunk)), targets[chunk])
            loss.backward()
            optimizer.step()
        validation_loss = evaluate_loss(net, sequences, targets, validation, loss_fn, batch)
        history.append(round(validation_loss, 6))
        if validation_loss < best[0]:
            best = (validation_loss, copy.deepcopy(net.state_dict()))
    if best[1] is not None:
        net.load_state_dict(best[1])
    return {"validation_loss_by_epoch": history, "best_epoch": int(np.argmin(history)) + 1 if history else 0}


def evaluate_loss(net, sequences, targets, positions, loss_fn, batch) -> float:
    if len(positions) == 0:
        return float("nan")
    outputs = predict(net, sequences, positions, batch)
    return float(loss_fn(outputs, targets[positions]))


def predict(net: nn.Module, sequences: Sequences, positions: np.ndarray, batch: int = 1024) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        chunks = [net(sequences.batch(positions[s:s + batch])) for s in range(0, len(positions), batch)]
    return torch.cat(chunks) if chunks else torch.empty(0)
