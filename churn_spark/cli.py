"""The ``churn-spark`` command: parse, load the config, get the session, call one function."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from churn_spark.config import Config, load_config
from churn_spark.errors import ChurnSparkError, ConfigError

if TYPE_CHECKING:
    from churn_spark.sources import SourceMapping

log = logging.getLogger("churn_spark")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; jobs/*.py reuse it for spark-submit."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conf", metavar="PATH", help="YAML config (default conf/local.yaml)")
    common.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override a config value, e.g. --set lakehouse=./lakehouse-test")
    common.add_argument("--verbose", action="store_true",
                        help="show Spark's and Ivy's console output and every library's log lines (default: "
                             "the job's own lines; Spark's output goes to a file under the temp folder)")
    parser = _Parser(prog="churn-spark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", parents=[common], help="write synthetic landing files")
    gen.add_argument("--out", required=True, help="folder for events/ and users/")
    gen.add_argument("--users", type=int)
    gen.add_argument("--days", type=int)
    gen.add_argument("--start", type=dt.date.fromisoformat, help="first day, YYYY-MM-DD")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--format", choices=("parquet", "jsonl", "csv"))

    ing = commands.add_parser("ingest", parents=[common], help="landing files -> Delta tables")
    ing.add_argument("--events", required=True, help="events file, folder or glob")
    ing.add_argument("--users", help="user profiles file, folder or glob (the mapping's users: section "
                                     "is evaluated over it)")
    ing.add_argument("--format", choices=("parquet", "jsonl", "csv"),
                     help="format of --events (default: the mapping's, else from the file names)")
    ing.add_argument("--users-format", choices=("parquet", "jsonl", "csv"),
                     help="format of --users (default: the mapping's, else from the file names, else --format)")
    ing.add_argument("--reingest", action="store_true",
                     help="read every file again, also those ingest_log records as ingested")
    mapping = ing.add_mutually_exclusive_group()
    mapping.add_argument("--source", default="contract", metavar="NAME",
                         help="the name of a mapping in conf/sources/ (default: contract); never a path")
    mapping.add_argument("--source-file", metavar="PATH",
                         help="a mapping YAML file anywhere, named explicitly (instead of --source)")

    rollup = commands.add_parser("rollup", parents=[common],
                                 help="user_daily: rebuild the days new events touched (features run it too)")
    rollup.add_argument("--full", action="store_true", help="rebuild every day from the whole events table")

    feats = commands.add_parser("features", parents=[common], help="user_features for snapshot dates")
    feats.add_argument("--as-of", required=True, type=parse_dates, metavar="DATES",
                       help="snapshot dates: 2026-03-01,2026-03-15 or a range START:END:STEP_DAYS")
    feats.add_argument("--from-events", action="store_true",
                       help="compute from the raw events (the reference path) instead of the user_daily rollup")

    labels = commands.add_parser("labels", parents=[common], help="training_set (labels + features)")
    labels.add_argument("--as-of", required=True, type=parse_dates, metavar="DATES",
                        help="snapshot dates: 2026-03-01,2026-03-15 or a range START:END:STEP_DAYS")
    labels.add_argument("--horizon", type=int, metavar="DAYS", help="label window after T (default from config)")
    labels.add_argument("--lookback", type=int, metavar="DAYS", help="eligibility window before T")

    train = commands.add_parser("train", parents=[common], help="train LR, MLP (DDP) and LightGBM; evaluate; MLflow")
    train.add_argument("--resume", action="store_true", help="continue the latest run from its checkpoints")

    commands.add_parser("tune", parents=[common], help="search each network's learning rate, weight decay and "
                                                       "batch size (Optuna); train then uses the best")
    commands.add_parser("evaluate", parents=[common], help="re-evaluate the latest training run")

    score = commands.add_parser("score", parents=[common], help="score every user at a date; alerts; summary")
    score.add_argument("--as-of", type=parse_date, default=_today(), metavar="DATE",
                       help="snapshot date YYYY-MM-DD (default: today, UTC)")
    score.add_argument("--model-version", metavar="V",
                       help="registered model version (default: the champion, else the latest)")
    score.add_argument("--no-alerts", action="store_true", help="write churn_scores only")

    alerts = commands.add_parser("alerts", parents=[common], help="alerts and exports of a scoring run")
    alerts.add_argument("--as-of", type=dt.date.fromisoformat, default=_today(), metavar="DATE",
                        help="snapshot date of the scoring run (default: today, UTC)")
    alerts.add_argument("--rewrite-exports", action="store_true",
                        help="rewrite every date's exports under the current alerts.pseudonymise, nothing else")

    promote = commands.add_parser("promote", parents=[common],
                                  help="make a registered version the champion if it ranks better")
    promote.add_argument("--candidate", metavar="V",
                         help="registered model version (default: the champion, else the latest)")

    commands.add_parser("monitor", parents=[common],
                        help="realised performance of matured scoring runs; exit 3 when the model should be retrained")
    commands.add_parser("policy", parents=[common],
                        help="learn a retention policy from the logged actions; judge it off-policy; promote it "
                             "if it beats the rule table")
    respond = commands.add_parser("respond", parents=[common],
                                  help="demo data only: the generated world's response to the alerts' actions "
                                       "(lands and ingests the purchases of the users won back)")
    respond.add_argument("--as-of", required=True, type=parse_dates, metavar="DATES",
                         help="the alerts' snapshot dates: 2026-03-01,2026-03-15 or START:END:STEP_DAYS")
    report = commands.add_parser("report", parents=[common], help="the manager's HTML report of a scoring run")
    report.add_argument("--as-of", type=dt.date.fromisoformat, metavar="DATE", help="default: the latest run")

    stream = commands.add_parser("stream", parents=[common],
                                 help="real-time warnings: new events re-score their users (Structured Streaming)")
    stream.add_argument("--trigger", metavar="WHEN",
                        help="available-now (a scheduled run: what is new, then stop) or an interval such as "
                             "10s (a continuous run); default stream.trigger")
    stream.add_argument("--landing", metavar="PATH",
                        help="also watch this folder for new event files and ingest them as churn-spark ingest does")
    stream.add_argument("--format", choices=("parquet", "jsonl", "csv"), help="format of the --landing files")
    stream.add_argument("--source", default="contract", metavar="NAME", help="the mapping of the --landing files")
    stream.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="stop a continuous run after this many seconds (default: run until stopped)")

    commands.add_parser("run-all", parents=[common], help="the whole pipeline on the embedded default")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one-line ``ConfigError`` s like every other refusal."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def parse_dates(text: str) -> list[dt.date]:
    """Comma-separated dates, ``START:END:STEP_DAYS`` ranges (END included) and ``today`` or
    ``today-N`` (UTC; what a scheduler passes), as a sorted list."""
    dates: set[dt.date] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            if ":" in part:
                start, end, step = part.split(":")
                first, last, days = dt.date.fromisoformat(start), dt.date.fromisoformat(end), int(step)
                if days < 1 or last < first:
                    raise ValueError
                dates.update(first + dt.timedelta(days=k * days) for k in range((last - first).days // days + 1))
            elif re.fullmatch(r"today(-\d+)?", part):  # relative to the run's date (UTC), for schedulers
                dates.add(_today() - dt.timedelta(days=int(part[6:] or 0)))
            elif part:
                dates.add(dt.date.fromisoformat(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected YYYY-MM-DD, START:END:STEP_DAYS or today-N items, comma-separated") from None
    if not dates:
        raise argparse.ArgumentTypeError(
            f"{text!r}: no date given; expected YYYY-MM-DD, START:END:STEP_DAYS or today-N items, comma-separated")
    return sorted(dates)


def parse_date(text: str) -> dt.date:
    """One date, ``YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date YYYY-MM-DD") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of every spark-submit job."""
    try:
        args = build_parser().parse_args(argv)
    except ChurnSparkError as err:  # a usage error: one line, as below
        print(f"churn-spark: error: {err}", file=sys.stderr)
        return 2
    _configure_logging(args.verbose)
    console = None if args.verbose else _console_log()
    try:
        config = load_config(args.conf, _overrides(args))
        status = _run(args, config, console)
    except ChurnSparkError as err:
        print(f"churn-spark: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        if console is not None and os.path.exists(console):
            print(f"churn-spark: Spark's console output is in {console}", file=sys.stderr)
        raise
    return status or 0


def _console_log() -> str:
    """A new file under the system temp folder for Spark's console output (``--verbose``: none)."""
    name = f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return os.path.join(tempfile.gettempdir(), "churn-spark", name)


def _configure_logging(verbose: bool) -> None:
    """The job's own progress lines (``churn_spark`` at INFO); other libraries' only from WARNING
    on, unless ``verbose``."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("py4j").setLevel(logging.WARNING)


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values, plus generator flags given on the command line."""
    extra = []
    if args.command == "labels":
        for flag, key in (("horizon", "labels.horizon_days"), ("lookback", "labels.lookback_days")):
            if getattr(args, flag) is not None:
                extra.append(f"{key}={getattr(args, flag)}")
    if args.command == "generate":
        for flag in ("users", "days", "start", "seed", "format"):
            value = getattr(args, flag)
            if value is not None:
                extra.append(f"generate.{flag}={value}")
    return [*args.overrides, *extra]


def _run(args: argparse.Namespace, config: Config, console: str | None) -> int | None:
    """Run the command; its exit status where it has one of its own (``monitor``)."""
    from churn_spark.spark import get_spark

    prepared = _prepare_ingest(args, config) if args.command == "ingest" else None  # checked before Spark starts
    spark = get_spark(config.spark, console, warehouse=config.location("warehouse"))
    if args.command == "generate":
        from churn_spark.pipeline import generate_landing

        generate_landing(spark, config.generate, args.out)
        print(f"generated {config.generate.format} landing files under {args.out}/events and /users")
    elif args.command == "ingest":
        from churn_spark.ingest import ingest

        assert prepared is not None
        mapping, events_fmt, users_fmt = prepared
        for report in ingest(spark, config, args.events, args.users, events_fmt, mapping, users_fmt,
                             reingest=args.reingest):
            print(report.summary())
    elif args.command == "rollup":
        from churn_spark.rollup import run_rollup

        print(run_rollup(spark, config, full=args.full).summary())
    elif args.command == "features":
        from churn_spark.snapshots import run_features

        rows = run_features(spark, config, args.as_of, from_events=args.from_events)
        print(f"user_features: {rows} rows for {len(args.as_of)} snapshot date(s)")
    elif args.command == "labels":
        from churn_spark.snapshots import run_labels

        print("\n".join(run_labels(spark, config, args.as_of).lines()))
    elif args.command in ("train", "evaluate"):
        from churn_spark.train.job import evaluate_run, run_training

        if args.command == "evaluate":
            _print_metrics(evaluate_run(spark, config))
            return
        result = run_training(spark, config, resume=args.resume)
        _print_metrics(result["metrics"])
        print(f"run {result['run']}; registered {config.mlflow.model_name} version {result['version']}")
    elif args.command == "tune":
        from churn_spark.train.tune import run_tuning

        for search in run_tuning(spark, config):
            print(search.line())
    elif args.command in ("score", "alerts"):
        from churn_spark.alerts import rewrite_exports, run_alerts
        from churn_spark.score import run_scoring

        if getattr(args, "rewrite_exports", False):
            print("\n".join(rewrite_exports(spark, config)))
            return
        if args.command == "score":
            result = run_scoring(spark, config, args.as_of, args.model_version)
            print(f"churn_scores: {result.users} users at {result.snapshot_date}, model version "
                  f"{result.model_version}, tier cut-offs high {result.cuts['high']:.4f} medium "
                  f"{result.cuts['medium']:.4f}")
            print(result.drift_line())
            if args.no_alerts:
                return
        print("\n".join(run_alerts(spark, config, args.as_of).lines()))
    elif args.command == "monitor":
        from churn_spark.monitor import exit_status, run_monitor

        decision = run_monitor(spark, config)
        print("\n".join(decision.lines()))
        return exit_status(spark, decision)
    elif args.command == "policy":
        from churn_spark.policy import run_policy

        print("\n".join(run_policy(spark, config).lines()))
    elif args.command == "respond":
        from churn_spark.pipeline import respond

        print(f"the world's response: {respond(spark, config, args.as_of)} users won back")
    elif args.command == "promote":
        from churn_spark.promote import promote

        print("\n".join(promote(spark, config, args.candidate).lines()))
    elif args.command == "report":
        from churn_spark.report import write_manager_report

        print(f"manager's report: {write_manager_report(spark, config, args.as_of)}")
    elif args.command == "stream":
        from churn_spark.stream import run_stream

        run = run_stream(spark, config, args.trigger, args.landing, args.format, args.source, args.timeout)
        print("\n".join(run.lines()))
    elif args.command == "run-all":
        from churn_spark.pipeline import run_all

        for step in run_all(spark, config):
            print(f"{step.name}: {step.seconds:.1f}s")


def _prepare_ingest(args: argparse.Namespace, config: Config) -> tuple[SourceMapping, str, str | None]:
    """The ingest's mapping and input formats, validated without a Spark session."""
    from churn_spark.ingest import input_formats
    from churn_spark.sources import load_source, load_source_file

    mapping = load_source_file(args.source_file) if args.source_file else load_source(args.source)
    return (mapping, *input_formats(mapping, args.events, args.users, args.format, args.users_format, config))


def _print_metrics(metrics: dict) -> None:
    print(f"test snapshot {metrics['test_snapshot']}; champion (best validation ROC-AUC): {metrics['champion']}")
    for model, values in metrics["models"].items():
        interval = f" [{values['roc_auc_low']:.3f}, {values['roc_auc_high']:.3f}]" if "roc_auc_low" in values else ""
        calibration = (f"  ECE {values['ece_before']:.3f} -> {values['ece']:.3f} ({metrics['calibration'][model]})"
                       if "ece_before" in values else f"  ECE {values['ece']:.3f}")
        print(f"{model:9s} ROC-AUC {values['roc_auc']:.4f}{interval}  PR-AUC {values['pr_auc']:.4f}  "
              f"F1 {values['f1']:.4f}  top-decile lift {values['top_decile_lift']:.2f}{calibration}")


if __name__ == "__main__":
    sys.exit(main())
