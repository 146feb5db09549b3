"""A trained model as one file: kind, weights, inputs, preprocessing, calibration, threshold; and
its predictions.

Every kind is used the same way: ``bundle.model()`` loads it once (a network, or a LightGBM
booster), ``model.logits`` and ``model.contributions`` take the raw inputs of
``preprocess.raw_arrays`` (numerics as they are, category indices), and ``bundle.probabilities``
turns logits into calibrated churn probabilities. Scoring, reasons, promotion, the registry's
pyfunc and the stream call nothing kind-specific.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from churn_spark import storage
from churn_spark.calibrate import Calibration
from churn_spark.train.model import MODELS, SEQUENCE_MODELS, SequenceGRU, WithSequence, build_model
from churn_spark.train.preprocess import Preprocessing, raw_arrays, standardise
from churn_spark.train.sequence import SEQUENCE, as_array

BOOSTER = "lightgbm"  # the kind of a LightGBM bundle: its state is {"model": the booster as text}
ENSEMBLE = "ensemble"  # the average of a run's calibrated models: its state is {"members": [their bundles' bytes]}
KINDS = (*MODELS, BOOSTER, ENSEMBLE)


@dataclass
class Bundle:
    """Everything needed to score raw feature rows with a trained model of any kind."""

    kind: str
    state: dict[str, Any]  # a network's weights, or a booster's text
    preprocessing: Preprocessing  # the features, and the training split's means (reasons' "typical")
    threshold: float = 0.5  # on calibrated probabilities
    version: str = ""
    calibration: Calibration = Calibration()
    # Bins and shares of the features and of the model's probability on the run's test snapshot,
    # frozen at training: what scoring runs measure drift from (churn_spark/drift.py).
    reference: dict[str, Any] | None = None
    # The daily-activity input of a sequence model ({"days", "channels"}: churn_spark.train.sequence);
    # an ensemble holding one reads it too. None: the model reads the feature row alone.
    sequence: dict[str, Any] | None = None

    @property
    def features(self) -> list[str]:
        """The model's inputs, in order (BG/NBD's derived ones included)."""
        return [*self.preprocessing.numeric, *self.preprocessing.categorical]

    @property
    def inputs(self) -> list[str]:
        """The feature columns a row must hold to be scored (``features`` less the derived ones,
        plus what they are derived from, and the daily sequence of a sequence model)."""
        return [*self.preprocessing.columns(), *([SEQUENCE] if self.sequence else [])]

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
                    "threshold": self.threshold, "version": self.version,
                    "calibration": self.calibration.to_dict(), "reference": self.reference,
                    "sequence": self.sequence}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        saved: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return cls(saved["kind"], saved["state"], Preprocessing.from_dict(saved["preprocessing"]),
                   saved["threshold"], saved.get("version", ""), Calibration.from_dict(saved.get("calibration")),
                   saved.get("reference"), saved.get("sequence"))

    @classmethod
    def load_checkpoint(cls, path: str, kind: str, preprocessing: Preprocessing,
                        config: storage.Where = None, sequence: dict[str, Any] | None = None) -> Bundle:
        """The best weights a training run checkpointed (at a path or URI), as a bundle (with the
        daily-sequence input a sequence model was trained on)."""
        saved = torch.load(io.BytesIO(storage.read_bytes(path, config)), map_location="cpu", weights_only=False)
        return cls(kind, saved["model"], preprocessing, sequence=sequence)

    @classmethod
    def ensemble(cls, members: Sequence[Bundle]) -> Bundle:
        """The average of ``members``' calibrated probabilities as a bundle of its own; the
        members come from one run, so they read one preprocessing."""
        sequence = next((member.sequence for member in members if member.sequence), None)
        return cls(ENSEMBLE, {"members": [member.to_bytes() for member in members]}, members[0].preprocessing,
                   sequence=sequence)

    def model(self) -> NetworkModel | BoosterModel | EnsembleModel:
        """The trained model, loaded on the CPU.

        Raises
        ------
        ValueError
            For an unknown kind, or a model whose inputs do not fit the preprocessing state.
        """
        if self.kind == BOOSTER:
            return BoosterModel(self.state["model"], self.preprocessing)
        if self.kind == ENSEMBLE:
            return EnsembleModel([Bundle.from_bytes(member) for member in self.state["members"]])
        if self.kind not in MODELS:
            raise ValueError(f"model: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        return NetworkModel(self.network(), self.preprocessing)

    def network(self) -> torch.nn.Module:
        """The network of an ``lr``, ``mlp`` or ``gru`` bundle, in evaluation mode."""
        shape = ({"days": self.sequence["days"], "channels": len(self.sequence["channels"])}
                 if self.kind in SEQUENCE_MODELS else {})
        model = build_model(self.kind, len(self.preprocessing.numeric), self.preprocessing.cardinalities(),
                            torch.device("cpu"), **shape)
        model.load_state_dict(self.state)
        return model.eval()

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """The model's logits as calibrated churn probabilities (float64), computed once, one way."""
        return self.calibration.apply(sigmoid(logits))

    def predict_proba(self, rows: pd.DataFrame, model: NetworkModel | BoosterModel | EnsembleModel | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """Churn probabilities of raw feature rows (pandas), on the CPU; ``calibrated=False``
        for the model's own (the report's "before calibration")."""
        logits = (model or self.model()).logits(*raw_arrays(rows, self.preprocessing), **self.sequence_input(rows))
        return self.probabilities(logits) if calibrated else sigmoid(logits)

    def sequence_input(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """``{"sequence": (rows, days * channels) float32}`` from raw rows for a model that reads
        the daily sequence; nothing for one that does not."""
        if not self.sequence:
            return {}
        return {"sequence": as_array(rows, self.sequence["days"], len(self.sequence["channels"]))}


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype="float64")))


def logit(probabilities: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``sigmoid``'s inverse, finite at 0 and 1 (an isotonic map reaches both)."""
    p = np.clip(np.asarray(probabilities, dtype="float64"), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


class NetworkModel:
    """A network from ``train.model`` on raw inputs: standardised here, as in training."""

    def __init__(self, network: torch.nn.Module, preprocessing: Preprocessing) -> None:
        self.network, self.preprocessing = network, preprocessing
        for parameter in network.parameters():
            parameter.requires_grad_(False)

    def logits(self, numeric: np.ndarray, categories: np.ndarray, sequence: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            out = self._bound(sequence)(torch.from_numpy(standardise(numeric, self.preprocessing)),
                                        torch.from_numpy(categories))
        return out.numpy().astype("float64")

    def contributions(self, numeric: np.ndarray, categories: np.ndarray,
                      sequence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits and each tabular input's contribution to them (``explain.attributions``; a
        sequence model's daily sequence held as it is)."""
        from churn_spark.explain import attributions

        logits, contributions = attributions(self._bound(sequence), standardise(numeric, self.preprocessing),
                                             categories)
        return logits.numpy().astype("float64"), contributions

    def _bound(self, sequence: np.ndarray | None) -> torch.nn.Module:
        """The network, with the batch's sequences bound for a sequence model."""
        if not isinstance(self.network, SequenceGRU):
            return self.network
        if sequence is None:
            raise ValueError(f"a sequence model needs each row's {SEQUENCE}")
        return WithSequence(self.network, torch.from_numpy(np.asarray(sequence, dtype=np.float32)))


class BoosterModel:
    """A LightGBM booster on raw inputs: numerics as they are (missing stays missing, LightGBM
    routes it), each category as its code in the training vocabulary (an unseen one missing).
    Contributions are the booster's exact per-feature SHAP values (``pred_contrib``), which sum
    with its expected value to the logit."""

    def __init__(self, text: str, preprocessing: Preprocessing) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_str=text)
        width = len(preprocessing.numeric) + len(preprocessing.categorical)
        if self.booster.num_feature() != width:
            raise ValueError(f"the booster reads {self.booster.num_feature()} features, the preprocessing "
                             f"state names {width}")

    @staticmethod
    def inputs(numeric: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """One float64 matrix: the numerics, then the category codes (index - 1; NaN unseen)."""
        codes = categories.astype("float64") - 1.0
        codes[codes < 0] = np.nan
        return np.hstack([np.asarray(numeric, dtype="float64"), codes])

    def _predict(self, numeric: np.ndarray, categories: np.ndarray, **kind: bool) -> np.ndarray:
        # As many threads as torch was given: the scoring UDF sets both to the task's cores.
        return self.booster.predict(self.inputs(numeric, categories), num_threads=torch.get_num_threads(), **kind)

    def logits(self, numeric: np.ndarray, categories: np.ndarray, sequence: np.ndarray | None = None) -> np.ndarray:
        if len(numeric) == 0:
            return np.zeros(0)
        return np.asarray(self._predict(numeric, categories, raw_score=True), dtype="float64")

    def contributions(self, numeric: np.ndarray, categories: np.ndarray,
                      sequence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if len(numeric) == 0:
            return np.zeros(0), np.zeros((0, self.booster.num_feature()))
        shap = np.asarray(self._predict(numeric, categories, pred_contrib=True), dtype="float64")
        return shap.sum(axis=1), shap[:, :-1]  # the last column is the expected value


class EnsembleModel:
    """The mean of its members' calibrated probabilities, as a logit. Its contributions are the
    mean of the members' (each on its own logit scale): a reason is what pushes the members,
    on average, towards churn."""

    def __init__(self, members: Sequence[Bundle]) -> None:
        self.members = [(member, member.model()) for member in members]

    def logits(self, numeric: np.ndarray, categories: np.ndarray, sequence: np.ndarray | None = None) -> np.ndarray:
        return logit(np.mean([member.probabilities(model.logits(numeric, categories, sequence))
                              for member, model in self.members], axis=0))

    def contributions(self, numeric: np.ndarray, categories: np.ndarray,
                      sequence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        parts = [(member, *model.contributions(numeric, categories, sequence)) for member, model in self.members]
        probabilities = np.mean([member.probabilities(logits) for member, logits, _ in parts], axis=0)
        return logit(probabilities), np.mean([contributions for _, _, contributions in parts], axis=0)
