"""The main job: every stage of the pipeline in order, on the configured lakehouse."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from churn_spark.alerts import Summary, run_alerts
from churn_spark.config import Config, GenerateConfig
from churn_spark.generate import GenerateSpec, generate, write_landing
from churn_spark.ingest import ingest
from churn_spark.monitor import run_monitor
from churn_spark.report import write_manager_report
from churn_spark.rollup import run_rollup
from churn_spark.score import run_scoring
from churn_spark.snapshots import run_features, run_labels
from churn_spark.config import AVAILABLE_NOW
from churn_spark.stream import run_stream
from churn_spark.train.job import run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    """One finished step of ``run_all`` and how long it took."""

    name: str
    seconds: float


def generate_landing(spark: SparkSession, settings: GenerateConfig, out: str) -> None:
    """Write a synthetic data set, as configured, to ``out/events`` and ``out/users``."""
    spec = GenerateSpec(settings.users, settings.days, settings.start, settings.seed,
                        settings.dirty_fraction, settings.redelivered_fraction)
    events, users = generate(spark, spec)
    write_landing(events, users, out, settings.format, settings.partitions)


def score_and_alert(spark: SparkSession, config: Config, dates: Sequence[dt.date],
                    model_version: str | None = None) -> list[Summary]:
    """Score every user at each date, in order, and list each run's alerts; the summaries."""
    summaries = []
    for as_of in sorted(dates):
        run_scoring(spark, config, as_of, model_version)
        summaries.append(run_alerts(spark, config, as_of))
    return summaries


def demo_snapshots(config: Config) -> tuple[list[dt.date], list[dt.date]]:
    """Snapshot dates for the demo data: every two weeks once eight weeks of history exist.

    Returns the dates for features (up to the end of the data) and the subset whose label
    window is complete in the data (for the training set).
    """
    settings, horizon = config.generate, config.labels.horizon_days
    end = settings.start + dt.timedelta(days=settings.days)
    dates = [settings.start + dt.timedelta(days=d) for d in range(56, settings.days + 1, 14)]
    labelled = [d for d in dates if d + dt.timedelta(days=horizon) < end]
    if not labelled:
        raise ValueError(f"generate.days ({settings.days}) too short for snapshots with a {horizon}-day horizon")
    return dates, labelled


def run_all(spark: SparkSession, config: Config) -> list[StepResult]:
    """Generate demo landing files, ingest them into Delta, roll them up per user and day,
    features and labels from the rollup, train and evaluate
    the models, score the last labelled snapshot and the last two feature snapshots and list the
    alerts of each (a run's alerts are the users newly at risk since the run before), measure the
    scoring runs whose label window has closed and decide on a retrain (``monitor``: the labelled
    snapshot's run), write the manager's report, and
    run the real-time warnings query once (``available-now``: it re-scores the users of the last
    ingest at the newest event, against the last scoring run).
    """
    demo = config.landing_location("demo")
    fmt = config.generate.format

    def _generate() -> None:
        generate_landing(spark, config.generate, demo)

    def _ingest() -> None:
        for report in ingest(spark, config, f"{demo}/events", f"{demo}/users", fmt):
            log.info("ingest %s", report.summary())

    featured, labelled = demo_snapshots(config)
    # The last labelled snapshot too: its label window has closed, so monitor can measure it.
    scored = sorted({labelled[-1], *featured[-2:]})

    def _score() -> None:
        for as_of in scored:
            run_scoring(spark, config, as_of)

    def _alerts() -> None:
        for as_of in scored:
            for line in run_alerts(spark, config, as_of).lines():
                log.info("%s", line)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("generate", _generate),
        ("ingest", _ingest),
        ("rollup", lambda: log.info("%s", run_rollup(spark, config).summary())),
        ("features", lambda: run_features(spark, config, featured)),
        ("labels", lambda: run_labels(spark, config, labelled)),
        ("train", lambda: run_training(spark, config)),
        ("score", _score),
        ("alerts", _alerts),
        ("monitor", lambda: [log.info("%s", line) for line in run_monitor(spark, config).lines()]),
        ("report", lambda: log.info("manager's report: %s", write_manager_report(spark, config))),
        ("stream", lambda: log.info("%s", run_stream(spark, config, AVAILABLE_NOW).progress.summary())),
    ]
    results = []
    for number, (name, step) in enumerate(steps, start=1):
        log.info("[%d/%d] %s ...", number, len(steps), name)
        began = time.perf_counter()
        step()
        results.append(StepResult(name, time.perf_counter() - began))
        log.info("[%d/%d] %s done in %.1fs", number, len(steps), name, results[-1].seconds)
    return results
