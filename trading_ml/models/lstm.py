"""The LSTM both direction and volatility use: sequences of the last ``length`` bars per symbol.

Sequences never cross symbols; a row without ``length`` bars of its symbol before it gets no
prediction. Each epoch trains on a fresh random draw of at most ``sequences_per_epoch`` training
sequences and is judged on the same draw of at most ``validation_sequences`` validation sequences;
training keeps the epoch with the lowest validation loss, stopping once ``patience`` epochs in a
row have not lowered it. Seeds are fixed and torch runs deterministic algorithms, so the
same data gives the same weights.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from trading_ml.models.base import LSTMParams, Standardizer, symbol_grouped_order
from trading_ml.models.imports import import_torch_compiler_without_triton

log = logging.getLogger(__name__)


class LSTMNet(nn.Module):
    def __init__(self, features: int, hidden: int, outputs: int):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(sequences)
        return self.head(hidden[-1])


class Sequences:
    """Windows of ``length`` rows ending at each row, per symbol, over a (timestamp, symbol) table.

    ``values_of`` gives the values of the table rows at the positions it is passed, in that order:
    the rows in :func:`symbol_grouped_order`, so a window is ``length`` consecutive grouped rows and
    a batch is one gather. The grouped values are never written to (they may be the run's mapped
    model inputs, read-only); a batch is standardized by ``scaler`` as it is gathered.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        length: int,
        values_of: Callable[[np.ndarray], np.ndarray],
        scaler: Standardizer | None = None,
    ):
        order = symbol_grouped_order(table)
        codes, _ = pd.factorize(table.index.get_level_values("symbol"))
        group_starts = np.flatnonzero(np.diff(codes[order], prepend=-1))
        rank = np.arange(len(order)) - np.repeat(group_starts, np.diff(np.append(group_starts, len(order))))
        ends = np.flatnonzero(rank >= length - 1)  # grouped positions with a full window behind them
        self.length, self.order, self.grouped, self.scaler = length, order, values_of(order), scaler
        self.starts = ends - (length - 1)
        self.row_of = order[ends]  # the table row each window ends at

    def batch(self, positions: np.ndarray) -> torch.Tensor:
        """Windows at these positions (indices into row_of), as (batch, length, features), standardized."""
        rows = self.starts[positions][:, None] + np.arange(self.length)
        values = self.grouped[rows]
        if self.scaler is not None:
            self.scaler.transform_in_place(values)
        return torch.from_numpy(values)

    def grouped_positions(self, rows: np.ndarray) -> np.ndarray:
        """Where the table rows at positions ``rows`` sit in the grouped values."""
        position_of_row = np.empty_like(self.order)
        position_of_row[self.order] = np.arange(len(self.order))
        return position_of_row[rows]


def standardized_sequences(
    table: pd.DataFrame, values_of: Callable[[np.ndarray], np.ndarray], train: np.ndarray, length: int
) -> tuple[Standardizer, Sequences]:
    """The :class:`Sequences` of ``values_of`` (float32), standardized by the :class:`Standardizer`
    fitted on the ``train`` rows (a mask over the table, fitted in table order)."""
    sequences = Sequences(table, length, values_of)
    sequences.scaler = Standardizer.fit(sequences.grouped, sequences.grouped_positions(np.flatnonzero(train)))
    return sequences.scaler, sequences


def load_net(config: dict, outputs: int, weights: bytes) -> tuple[LSTMNet, dict]:
    """A saved net (state_dict bytes, read with weights_only) and its shape settings from its config."""
    net = LSTMNet(len(config["feature_names"]), config["hidden"], outputs)
    state = io.BytesIO(weights)
    net.load_state_dict(torch.load(state, weights_only=True))
    return net, {"sequence_length": config["sequence_length"], "hidden": config["hidden"]}


def state_dict_bytes(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getvalue()


def seed_everything(seed: int) -> torch.Generator:
    """Seeds torch, turns on its deterministic algorithms (which imports its compiler stack: done
    first without triton) and returns a generator seeded for the epochs' draws."""
    import_torch_compiler_without_triton()
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
    params: LSTMParams,
    seed: int,
    name: str = "lstm",
    keep_initial: bool = False,
    threads: int | None = None,
) -> dict:
    """Train on the ``train`` positions, keep the weights of the best validation epoch; the history.
    Training stops after ``params.patience`` epochs in a row without a better validation loss. Each
    epoch logs its losses under the model's ``name``. With ``keep_initial`` the untrained net competes
    too (epoch 0): a net that starts at a baseline then never ends worse than it on validation.
    ``threads``: torch's intra-op threads from here on (None: as they are)."""
    if threads:
        torch.set_num_threads(threads)
    generator = seed_everything(seed)
    epochs, batch = params.epochs, params.batch
    judged = judged_sample(validation, params.validation_sequences, seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    best: tuple[float, dict | None] = (float("inf"), None)
    best_epoch = 0
    if keep_initial and len(validation):
        best = (evaluate_loss(net, sequences, targets, judged, loss_fn, batch), copy.deepcopy(net.state_dict()))
        log.info("%s: epoch 0 (untrained): validation loss %.5f", name, best[0])
    initial = {"initial_validation_loss": round(best[0], 6)} if best[1] is not None else {}
    history: list[float] = []
    log.info(
        "%s: %d epochs, each over %d of %d training sequences; judged on %d of %d validation sequences",
        name,
        epochs,
        min(len(train), params.sequences_per_epoch),
        len(train),
        len(judged),
        len(validation),
    )
    for epoch in range(epochs):
        started = time.perf_counter()
        training_loss = train_epoch(
            net,
            sequences,
            targets,
            train[torch.randperm(len(train), generator=generator).numpy()[: params.sequences_per_epoch]],
            loss_fn,
            optimizer,
            batch,
        )
        validation_loss = evaluate_loss(net, sequences, targets, judged, loss_fn, batch)
        history.append(round(validation_loss, 6))
        improved = validation_loss < best[0]
        if improved:
            best, best_epoch = (validation_loss, copy.deepcopy(net.state_dict())), epoch + 1
        log.info(
            "%s: epoch %d of %d: training loss %.5f, validation loss %.5f%s (%.1f s)",
            name,
            epoch + 1,
            epochs,
            training_loss,
            validation_loss,
            ", best so far" if improved else "",
            time.perf_counter() - started,
        )
        if len(validation) and epoch + 1 - best_epoch >= params.patience and epoch + 1 < epochs:
            log.info("%s: stopped after epoch %d: no better validation loss in %d", name, epoch + 1, params.patience)
            break
    if best[1] is not None:
        net.load_state_dict(best[1])
    return {"validation_loss_by_epoch": history, "best_epoch": best_epoch, **initial}


def judged_sample(validation: np.ndarray, at_most: int, seed: int) -> np.ndarray:
    """The validation positions every epoch is judged on: all of them, or when there are more than
    ``at_most`` a draw of that many (seeded, in their order), the same for every epoch."""
    if len(validation) <= at_most:
        return validation
    return np.sort(np.random.default_rng(seed).choice(validation, at_most, replace=False))


def train_epoch(net, sequences: Sequences, targets, order: np.ndarray, loss_fn, optimizer, batch: int) -> float:
    """One pass over ``order`` in batches; the mean training loss."""
    net.train()
    total = 0.0
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        optimizer.zero_grad()
        loss = loss_fn(net(sequences.batch(chunk)), targets[chunk])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(chunk)
    return total / len(order) if len(order) else float("nan")


def evaluate_loss(net, sequences, targets, positions, loss_fn, batch) -> float:
    if len(positions) == 0:
        return float("nan")
    outputs = predict(net, sequences, positions, batch)
    return float(loss_fn(outputs, targets[positions]))


def predict(net: nn.Module, sequences: Sequences, positions: np.ndarray, batch: int = 1024) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        chunks = [net(sequences.batch(positions[s : s + batch])) for s in range(0, len(positions), batch)]
    return torch.cat(chunks) if chunks else torch.empty(0)
