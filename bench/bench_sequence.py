"""The sequence model's training throughput: the GRU against the tabular MLP on one device, and,
where CUDA is there, each on the GPU against the CPU.

    .venv/bin/python bench/bench_sequence.py [--rows 50000] [--days 90] [--epochs 3] [--repeats 3]
        [--batch 256]

Data: in-memory tensors shaped as training reads them (80 standardised numerics, 6 category
indices, a ``days`` x 8 daily sequence, a label that depends on both), so that the feed is not
measured (bench_train.py measures the feeds). Each model trains ``--epochs`` passes with Adam and
the BCE loss of ``train_fn``; throughput = rows / mean seconds of a pass. Prints, per device, the
rows per second of each model and the ratio GRU / MLP; with CUDA, the ratio GPU / CPU of each
model (the figure issue 13 asks of a GPU machine). Medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from churn_spark.train.model import build_model

NUMERIC, CATEGORIES, CHANNELS = 80, 6, 8


def _data(rows: int, days: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    numeric = torch.randn(rows, NUMERIC, generator=generator)
    categories = torch.randint(1, 5, (rows, CATEGORIES), generator=generator)
    sequence = torch.rand(rows, days * CHANNELS, generator=generator)
    signal = numeric[:, 0] - sequence[:, -CHANNELS:].sum(1) + 0.5 * torch.randn(rows, generator=generator)
    label = (signal > signal.median()).float()
    return tuple(t.to(device) for t in (numeric, categories, sequence, label))


def _rows_per_second(kind: str, data: tuple[torch.Tensor, ...], days: int, epochs: int, batch: int,
                     device: torch.device) -> float:
    numeric, categories, sequence, label = data
    shape = {"days": days, "channels": CHANNELS} if kind == "gru" else {}
    model = build_model(kind, NUMERIC, [5] * CATEGORIES, device, **shape)
    optimizer, loss = torch.optim.Adam(model.parameters(), lr=0.003), torch.nn.BCEWithLogitsLoss()
    seconds = []
    for _ in range(epochs):
        began = time.perf_counter()
        for start in range(0, len(label), batch):
            part = slice(start, start + batch)
            inputs = (numeric[part], categories[part]) + ((sequence[part],) if kind == "gru" else ())
            optimizer.zero_grad()
            loss(model(*inputs), label[part]).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)
    return len(label) / statistics.mean(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    found: dict[tuple[str, str], float] = {}
    print(f"rows {args.rows}, days {args.days} x {CHANNELS} channels, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if len(devices) > 1 else ""))
    for device in devices:
        data = _data(args.rows, args.days, device)
        for kind in ("mlp", "gru"):
            found[device.type, kind] = statistics.median(
                _rows_per_second(kind, data, args.days, args.epochs, args.batch, device) for _ in range(args.repeats))
            print(f"{device.type}: {kind} {found[device.type, kind]:,.0f} rows/s")
        print(f"{device.type}: GRU / MLP throughput {found[device.type, 'gru'] / found[device.type, 'mlp']:.3f}")
    if len(devices) > 1:
        for kind in ("mlp", "gru"):
            print(f"{kind}: GPU / CPU throughput {found['cuda', kind] / found['cpu', kind]:.1f}")


if __name__ == "__main__":
    main()
