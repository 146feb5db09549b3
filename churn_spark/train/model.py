"""Models: logistic regression (the baseline of the original design) and a tabular MLP.

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


MODELS = {"lr": LogisticRegression, "mlp": TabularMLP}


def build_model(kind: str, n_numeric: int, cardinalities: list[int], device: torch.device,
                seed: int = 0) -> nn.Module:
    """A model of ``kind`` (``lr`` or ``mlp``), initialised on ``device`` from ``seed``.

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """
    if kind not in MODELS:
        raise ValueError(f"model: unknown kind {kind!r}; choose one of {', '.join(MODELS)}")
    with torch.device("meta"):
        model = MODELS[kind](n_numeric, cardinalities)
    model = model.to_empty(device=device)
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model
