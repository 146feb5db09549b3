"""A trained model as one file: weights, kind, inputs, preprocessing, threshold; and its predictions."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from churn_spark import storage
from churn_spark.train.model import build_model
from churn_spark.train.preprocess import Preprocessing, to_arrays


@dataclass
class Bundle:
    """Everything needed to score raw feature rows with a trained network."""

    kind: str
    state: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    threshold: float = 0.5
    version: str = ""

    @property
    def features(self) -> list[str]:
        return [*self.preprocessing.numeric, *self.preprocessing.categorical]

    def save(self, path: str, config: storage.Where = None) -> None:
        """Write the bundle to ``path`` (a path or URI), whole or not at all."""
        storage.write_atomically(path, self.to_bytes(), config)

    @classmethod
    def load(cls, path: str, config: storage.Where = None) -> Bundle:
        """The bundle saved at ``path`` (a path or URI)."""
        return cls.from_bytes(storage.read_bytes(path, config))

    def to_bytes(self) -> bytes:
        """The bundle as bytes (broadcast to executors by the scoring job)."""
        buffer = io.BytesIO()
        torch.save({"kind": self.kind, "state": self.state, "preprocessing": self.preprocessing.to_dict(),
                    "threshold": self.threshold, "version": self.version}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        saved: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return cls(saved["kind"], saved["state"], Preprocessing.from_dict(saved["preprocessing"]),
                   saved["threshold"], saved.get("version", ""))

    @classmethod
    def load_checkpoint(cls, path: str, kind: str, preprocessing: Preprocessing,
                        config: storage.Where = None) -> Bundle:
        """The best weights a training run checkpointed (at a path or URI), as a bundle."""
        saved = torch.load(io.BytesIO(storage.read_bytes(path, config)), map_location="cpu", weights_only=False)
        return cls(kind, saved["model"], preprocessing)

    def network(self) -> torch.nn.Module:
        model = build_model(self.kind, len(self.preprocessing.numeric), self.preprocessing.cardinalities(),
                            torch.device("cpu"))
        model.load_state_dict(self.state)
        return model.eval()

    def predict_proba(self, rows: pd.DataFrame, network: torch.nn.Module | None = None) -> np.ndarray:
        """Churn probabilities of raw feature rows (pandas), on the CPU."""
        numeric, categories = to_arrays(rows, self.preprocessing)
        with torch.no_grad():
            logits = (network or self.network())(torch.from_numpy(numeric), torch.from_numpy(categories))
        return probabilities(logits)


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """The network's logits as churn probabilities (float64), computed once, one way."""
    return torch.sigmoid(logits.detach()).numpy().astype("float64")
