"""The training loop: one ``Trainer`` for a single process and for every DDP rank.

Rank 0 alone writes a checkpoint each epoch; ``train`` resumes from one when asked.
Uneven Petastorm shards are handled with DDP's ``join`` (a rank that runs out of batches
keeps answering the others' all-reduces), and the validation metric is computed over the
whole validation set: every rank's predictions are gathered, so every rank takes the same
early-stopping decision.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from churn_spark import storage

log = logging.getLogger(__name__)

# Opens one pass over this rank's batches; the argument is the epoch (None: validation order).
Batches = Callable[[int | None], contextlib.AbstractContextManager[Iterator[dict[str, torch.Tensor]]]]


@dataclass
class Inputs:
    """Which batch columns are numeric features, category indices, the label, and (for a sequence
    model) the daily sequence."""

    numeric: list[str]
    categorical: list[str]
    label: str = "label"
    sequence: str | None = None

    def split(self, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[tuple[torch.Tensor, ...],
                                                                                  torch.Tensor]:
        """The model's inputs (numerics, category indices, and the sequence where there is one)
        and the labels, on ``device``."""
        numeric = torch.stack([batch[c].float() for c in self.numeric], dim=1).to(device)
        if self.categorical:
            categories = torch.stack([batch[c].long() for c in self.categorical], dim=1).to(device)
        else:
            categories = torch.zeros((numeric.shape[0], 0), dtype=torch.long, device=device)
        inputs = (numeric, categories) if self.sequence is None else (
            numeric, categories, batch[self.sequence].float().to(device))
        return inputs, batch[self.label].float().to(device)


@dataclass
class TrainState:
    """What a checkpoint holds besides the model and optimiser."""

    epoch: int = 0  # epochs completed
    best_auc: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each training pass


class Trainer:
    """Fits a model on batches from ``train_batches`` and early-stops on validation AUC."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: nn.Module, inputs: Inputs,
                 train_batches: Batches, valid_batches: Batches, checkpoint: str, seed: int = 0,
                 patience: int = 3, extra_state: dict[str, Any] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.model, self.optimizer, self.loss, self.inputs = model, optimizer, loss, inputs
        self.train_batches, self.valid_batches = train_batches, valid_batches
        # A path or URI (rank 0 may run on an executor: the lakehouse's store, not its disk).
        self.checkpoint, self.storage_options = checkpoint, dict(storage_options or {})
        self.seed, self.patience = seed, patience
        self.extra_state = extra_state or {}
        self.device = next(model.parameters()).device
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.state = TrainState()

    def _run_batch(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        inputs, labels = self.inputs.split(batch, self.device)
        self.optimizer.zero_grad()
        loss = self.loss(self.model(*inputs), labels)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) * len(labels), len(labels)

    def _run_epoch(self, epoch: int) -> float:
        torch.manual_seed(self.seed + epoch)  # dropout draws depend only on (seed, epoch): resumable
        self.model.train()
        total, rows = 0.0, 0
        joined = self.model.join() if self.distributed else contextlib.nullcontext()
        with joined, self.train_batches(self.seed * 1000 + epoch) as batches:
            for batch in batches:
                loss, n = self._run_batch(batch)
                total, rows = total + loss, rows + n
        sums = self._all_reduce([total, rows])
        return sums[0] / max(sums[1], 1.0)

    def _validate(self) -> tuple[float, float]:
        """ROC-AUC (early stopping's measure) and PR-AUC (``churn-spark tune``'s) on validation."""
        self.model.eval()
        scores, labels = [], []
        with torch.no_grad(), self.valid_batches(None) as batches:
            for batch in batches:
                inputs, y = self.inputs.split(batch, self.device)
                scores.append(torch.sigmoid(self._module()(*inputs)).cpu().numpy())
                labels.append(y.cpu().numpy())
        scores_all, labels_all = self._gather(np.concatenate(scores or [np.zeros(0)]),
                                              np.concatenate(labels or [np.zeros(0)]))
        return (float(roc_auc_score(labels_all, scores_all)),
                float(average_precision_score(labels_all, scores_all)))

    def _save_checkpoint(self, path: str) -> None:
        if self.rank != 0:
            return
        buffer = io.BytesIO()
        torch.save({"model": self._module().state_dict(), "optimizer": self.optimizer.state_dict(),
                    "state": self.state.__dict__, **self.extra_state}, buffer)
        # Written whole or not at all: a kill mid-write never leaves a broken checkpoint.
        storage.write_atomically(path, buffer.getvalue(), self.storage_options)

    def _load_checkpoint(self) -> None:
        saved = torch.load(io.BytesIO(storage.read_bytes(self.checkpoint, self.storage_options)),
                           map_location=self.device, weights_only=False)
        self._module().load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = TrainState(**saved["state"])

    def train(self, epochs: int, resume: bool = False) -> TrainState:
        """Train up to ``epochs`` epochs (from the checkpoint when ``resume``); keep the best model."""
        if resume and storage.exists(self.checkpoint, self.storage_options):
            self._load_checkpoint()
            log.info("resuming after epoch %d", self.state.epoch)
        while self.state.epoch < epochs and self.state.stale_epochs < self.patience:
            epoch = self.state.epoch
            began = time.perf_counter()
            loss = self._run_epoch(epoch)
            # The slowest rank's time, so that every rank reports the same figures.
            self.state.epoch_seconds.append(self._all_reduce([time.perf_counter() - began], max_of=True)[0])
            auc, pr_auc = self._validate()
            self.state.history.append({"epoch": epoch, "loss": loss, "valid_auc": auc, "valid_pr_auc": pr_auc})
            self.state.epoch = epoch + 1
            if auc > self.state.best_auc:
                self.state.best_auc, self.state.best_epoch, self.state.stale_epochs = auc, epoch, 0
                self._save_checkpoint(self.checkpoint + ".best")
            else:
                self.state.stale_epochs += 1
            self._save_checkpoint(self.checkpoint)
            log.info("epoch %d: loss %.4f, valid AUC %.4f", epoch, loss, auc)
        return self.state

    def _module(self) -> nn.Module:
        return self.model.module if hasattr(self.model, "module") else self.model

    def _all_reduce(self, values: list[float], max_of: bool = False) -> list[float]:
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if max_of else dist.ReduceOp.SUM)
        return tensor.tolist()

    def _gather(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.distributed:
            return scores, labels
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (scores, labels))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
