"""The main job: every stage of the pipeline in order, on the configured lakehouse."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import simulate, tables
from churn_spark.alerts import Summary, run_alerts
from churn_spark.config import Config, GenerateConfig
from churn_spark.errors import InputError
from churn_spark.generate import GenerateSpec, generate, write_landing
from churn_spark.ingest import ingest
from churn_spark.monitor import run_monitor
from churn_spark.policy import PolicyRun, run_policy
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
    events, users = generate(spark, generate_spec(settings))
    write_landing(events, users, out, settings.format, settings.partitions)


def generate_spec(settings: GenerateConfig) -> GenerateSpec:
    """The generator's spec as configured (the world of the demo data)."""
    return GenerateSpec(settings.users, settings.days, settings.start, settings.seed,
                        settings.dirty_fraction, settings.redelivered_fraction)


def respond(spark: SparkSession, config: Config, dates: Sequence[dt.date]) -> int:
    """Demo data only: the generated world's response to the actions of the alerts at ``dates``
    (``simulate.respond``: the users an action wins back buy within the week), landed as JSON
    lines under ``<landing>/responses/<date>`` and ingested (re-running lands and stores the same
    events once); the number of won-back users."""
    alerts = (tables.read_table(spark, config, "alerts").where(F.col("snapshot_date").isin(list(dates)))
              .where(F.col("propensity").isNotNull()).select("user_id", "snapshot_date", "suggested_action"))
    events = simulate.respond(spark, generate_spec(config.generate), alerts, config.labels.horizon_days).persist()
    try:
        won = events.select("user_id", "session_id").distinct().count()
        if won:
            folder = config.landing_location(f"responses/{min(dates)}_{max(dates)}")
            events.coalesce(1).write.mode("overwrite").json(folder)
            for report in ingest(spark, config, folder, fmt="jsonl"):
                log.info("respond %s", report.summary())
    finally:
        events.unpersist()
    log.info("the world's response to the actions at %s: %d users won back", ", ".join(map(str, dates)), won)
    return won


def policy_step(spark: SparkSession, config: Config) -> PolicyRun:
    """``churn-spark policy`` on demo data: learn and judge, with each policy's true value from the
    generated world (``simulate.policy_truth``) beside the estimates."""
    spec = generate_spec(config.generate)

    def truth(chosen: pd.DataFrame, policies: list[str]) -> dict[str, float]:
        return simulate.policy_truth(spark, spec, chosen, policies, dict(config.policy.actions),
                                     config.labels.horizon_days)

    return run_policy(spark, config, truth)


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


def _policy(spark: SparkSession, config: Config) -> None:
    """run-all's policy step: a demo too small to have matured assignments says so and goes on."""
    try:
        lines = policy_step(spark, config).lines()
    except InputError as err:
        lines = [f"policy: not learnt ({err})"]
    for line in lines:
        log.info("%s", line)


def run_all(spark: SparkSession, config: Config) -> list[StepResult]:
    """Generate demo landing files, ingest them into Delta, roll them up per user and day,
    features and labels from the rollup, train and evaluate
    the models, score the last labelled snapshot and the last two feature snapshots and list the
    alerts of each (a run's alerts are the users newly at risk since the run before, each with an
    assigned action), let the generated world respond to those actions (``respond``: the runs whose
    week of response lies inside the data), measure the scoring runs whose label window has closed
    and decide on a retrain (``monitor``: the labelled snapshot's run), learn and judge a retention
    policy from the matured assignments (``policy``, with the world's true values), write the
    manager's report, and
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

    end = config.generate.start + dt.timedelta(days=config.generate.days)
    answered = [t for t in scored if t + dt.timedelta(days=min(7, config.labels.horizon_days)) <= end]

    steps: list[tuple[str, Callable[[], None]]] = [
        ("generate", _generate),
        ("ingest", _ingest),
        ("rollup", lambda: log.info("%s", run_rollup(spark, config).summary())),
        ("features", lambda: run_features(spark, config, featured)),
        ("labels", lambda: run_labels(spark, config, labelled)),
        ("train", lambda: run_training(spark, config)),
        ("score", _score),
        ("alerts", _alerts),
        ("respond", lambda: respond(spark, config, answered)),
        ("monitor", lambda: [log.info("%s", line) for line in run_monitor(spark, config).lines()]),
        ("policy", lambda: _policy(spark, config)),
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
