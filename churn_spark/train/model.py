"""Models: logistic regression (the baseline of the original design), a tabular MLP, and a GRU
over each user's daily activity beside the tabular inputs.

Both take standardised numeric features and category indices and return one logit per row;
``forward`` is ``head(numeric, embed(categories))``, so that scoring can take gradients with
respect to the embedded categories too (per-user reasons, see ``churn_spark.explain``).
``build_model`` creates the parameters on torch's meta device (no memory, no init work) and
materialises them on the target device with ``to_empty`` + ``reset_parameters``: the job
torchdistx's deferred initialisation did, with torch's own API.
"""

from __future__ import annotations

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """A linear logit over numerics plus one learned weight per category value (one-hot)."""

    def __init__(self, n_numeric: int, cardinalities: list[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(n_numeric, 1)
        self.category_weights = nn.ModuleList(nn.Embedding(n, 1) for n in cardinalities)

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        return self.head(numeric, self.embed(categories))

    def category_tables(self) -> nn.ModuleList:
        return self.category_weights

    def embed(self, categories: torch.Tensor) -> list[torch.Tensor]:
        """Each categorical column's learned weight, one (rows, 1) tensor per column."""
        return [weights(categories[:, column]) for column, weights in enumerate(self.category_weights)]

    def head(self, numeric: torch.Tensor, embedded: list[torch.Tensor]) -> torch.Tensor:
        logit = self.linear(numeric).squeeze(-1)
        for weight in embedded:
            logit = logit + weight.squeeze(-1)
        return logit


class TabularMLP(nn.Module):
    """Embeddings for categories, concatenated with numerics, then a small MLP."""

    def __init__(self, n_numeric: int, cardinalities: list[int], hidden: tuple[int, ...] = (64, 32),
                 embedding_dim: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(cardinalities)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        return self.head(numeric, self.embed(categories))

    def category_tables(self) -> nn.ModuleList:
        return self.embeddings

    def embed(self, categories: torch.Tensor) -> list[torch.Tensor]:
        """Each categorical column's embedding, one (rows, embedding_dim) tensor per column."""
        return [e(categories[:, i]) for i, e in enumerate(self.embeddings)]

    def head(self, numeric: torch.Tensor, embedded: list[torch.Tensor]) -> torch.Tensor:
        return self.body(torch.cat([numeric, *embedded], dim=1)).squeeze(-1)


class SequenceGRU(nn.Module):
    """A GRU over each user's daily activity (``train.sequence``: ``days`` steps of ``channels``
    values), its last hidden state beside the tabular inputs (embedded categories, numerics),
    then a small MLP. ``forward`` and ``head`` take the flattened sequence as a third input."""

    def __init__(self, n_numeric: int, cardinalities: list[int], days: int = 90, channels: int = 8,
                 hidden: int = 32, embedding_dim: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.days, self.channels = days, channels
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        width = n_numeric + embedding_dim * len(cardinalities) + hidden
        self.body = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 1))

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        return self.head(numeric, self.embed(categories), sequence)

    def category_tables(self) -> nn.ModuleList:
        return self.embeddings

    def embed(self, categories: torch.Tensor) -> list[torch.Tensor]:
        return [e(categories[:, i]) for i, e in enumerate(self.embeddings)]

    def head(self, numeric: torch.Tensor, embedded: list[torch.Tensor], sequence: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(sequence.reshape(-1, self.days, self.channels))
        return self.body(torch.cat([numeric, *embedded, last[-1]], dim=1)).squeeze(-1)


class WithSequence(nn.Module):
    """A sequence network with its batch's sequences bound: ``forward(numeric, categories)``,
    ``embed`` and ``head(numeric, embedded)`` as the tabular models have them, so that scoring
    and reasons (``explain.attributions``: the tabular inputs' contributions) treat it as one."""

    def __init__(self, network: SequenceGRU, sequence: torch.Tensor) -> None:
        super().__init__()
        self.network, self.sequence = network, sequence

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        return self.network(numeric, categories, self.sequence)

    def category_tables(self) -> nn.ModuleList:
        return self.network.category_tables()

    def embed(self, categories: torch.Tensor) -> list[torch.Tensor]:
        return self.network.embed(categories)

    def head(self, numeric: torch.Tensor, embedded: list[torch.Tensor]) -> torch.Tensor:
        return self.network.head(numeric, embedded, self.sequence)


SEQUENCE_MODELS = ("gru",)  # kinds that read the daily sequence (churn_spark.train.sequence)
MODELS = {"lr": LogisticRegression, "mlp": TabularMLP, "gru": SequenceGRU}


def build_model(kind: str, n_numeric: int, cardinalities: list[int], device: torch.device,
                seed: int = 0, **shape: int) -> nn.Module:
    """A model of ``kind`` (``lr``, ``mlp`` or ``gru``; ``shape``: the gru's ``days`` and
    ``channels``), initialised on ``device`` from ``seed``.

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """
    if kind not in MODELS:
        raise ValueError(f"model: unknown kind {kind!r}; choose one of {', '.join(MODELS)}")
    with torch.device("meta"):
        model = MODELS[kind](n_numeric, cardinalities, **shape)
    model = model.to_empty(device=device)
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model
