"""One training function, three launchers: a single process, torchrun, Spark's TorchDistributor.

``train_fn`` is what every process runs. It is self-contained and picklable (imports
inside, everything it needs in ``params``), as TorchDistributor requires, and every rank
returns the same result (metrics are all-reduced or gathered), since TorchDistributor's
local mode keeps only one rank's return value. The backend is NCCL on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from typing import Any

LAUNCHERS = ("single", "torchrun", "torchdistributor")


def train_fn(params: dict[str, Any]) -> dict[str, Any]:
    """Train one rank (or the only process) from ``params``; return the run's summary."""
    # (A petastorm cache in params imported feed_petastorm, and its thread-pool fix, as it unpickled.)
    from churn_spark.train.distributed import run_rank, skip_teardown_at_exit

    summary = run_rank(params)
    if summary["world_size"] > 1:  # a process of its own, started by torchrun
        skip_teardown_at_exit()
    return summary


def skip_teardown_at_exit() -> None:
    """End this rank's process with ``os._exit(0)`` at exit, once the launcher has saved its result.

    DDP keeps the gloo process group, and its threads, alive after ``destroy_process_group``;
    tearing the interpreter down under them now and then aborts a rank that has finished
    ("terminate called without an active exception"). With ranks on several machines
    (TorchDistributor with ``local_mode=False``) the other nodes' torchrun agents then wait 300 s
    at their exit barrier for the failed one, and the training stage stalls for five minutes.
    Registered only after training succeeded: a failure still ends the process with an error.
    """
    import atexit

    def _exit() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    atexit.register(_exit)


def run_rank(params: dict[str, Any]) -> dict[str, Any]:
    """The body of ``train_fn``: set up the process group, the model and the loaders, train."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from churn_spark.train.feed import open_batches
    from churn_spark.train.loop import Inputs, Trainer
    from churn_spark.train.model import build_model

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and params.get("use_gpu", True)
    if cuda:
        torch.cuda.set_device(local_rank)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    try:
        inputs = Inputs(params["numeric"], params["categorical"], sequence=params.get("sequence_column"))
        model = build_model(params["model"], len(inputs.numeric), params["cardinalities"], device,
                            seed=params["seed"], **params.get("shape", {}))
        if world > 1:
            model = DistributedDataParallel(model, device_ids=[local_rank] if cuda else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"],
                                     weight_decay=params.get("weight_decay", 0.0))
        loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(params["pos_weight"], device=device))

        def batches(converter: Any) -> Any:
            # One reader thread: row groups in a seeded order, so a resumed run repeats the same batches.
            return lambda order_seed: open_batches(converter, params["batch_size"], rank, world, workers=1,
                                                   shuffle_seed=order_seed)

        trainer = Trainer(model, optimizer, loss, inputs, batches(params["train"]), batches(params["valid"]),
                          params["checkpoint"], seed=params["seed"], patience=params.get("patience", 3),
                          extra_state=params.get("extra_state"), storage_options=params.get("storage_options"))
        state = trainer.train(params["epochs"], resume=params.get("resume", False))
        return {"best_auc": state.best_auc, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
                "history": state.history, "epoch_seconds": state.epoch_seconds, "checkpoint": params["checkpoint"] + ".best", "world_size": world,
                "device": device.type}
    finally:
        if world > 1:
            dist.destroy_process_group()


def launch(params: dict[str, Any], launcher: str = "single", num_processes: int = 1,
           local_mode: bool = True) -> dict[str, Any]:
    """Run ``train_fn`` with ``launcher``: ``single``, ``torchrun`` or ``torchdistributor``.

    Raises
    ------
    ValueError
        For an unknown launcher or a process count below 1.
    """
    if launcher not in LAUNCHERS or num_processes < 1:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)} with num_processes >= 1, "
                         f"got {launcher!r}, {num_processes}")
    if launcher == "single":
        return train_fn(params)
    if launcher == "torchdistributor":
        from pyspark.ml.torch.distributor import TorchDistributor

        import torch

        use_gpu = bool(params.get("use_gpu", True) and torch.cuda.is_available())
        distributor = TorchDistributor(num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu)
        return distributor.run(train_fn, params)
    return _torchrun(params, num_processes)


def _torchrun(params: dict[str, Any], num_processes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        inputs, output = os.path.join(folder, "params.pkl"), os.path.join(folder, "result.pkl")
        with open(inputs, "wb") as handle:
            pickle.dump(params, handle)
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={num_processes}", "-m", "churn_spark.train.distributed",
                        inputs, output], check=True)
        with open(output, "rb") as handle:
            return pickle.load(handle)


if __name__ == "__main__":  # a torchrun rank: python -m churn_spark.train.distributed PARAMS RESULT
    with open(sys.argv[1], "rb") as source:
        summary = train_fn(pickle.load(source))
    rank_of = int(os.environ.get("RANK", "0"))
    for path in [f"{sys.argv[2]}.rank{rank_of}"] + ([sys.argv[2]] if rank_of == 0 else []):
        with open(path, "wb") as target:
            pickle.dump(summary, target)
