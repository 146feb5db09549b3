"""Typed, validated configuration: one pydantic model per YAML section.

``load_config(path, overrides)`` reads ``conf/local.yaml`` (the embedded default) or any
other file, applies ``--set KEY=VALUE`` overrides, and validates the result. An unknown
key or a bad value raises :class:`ConfigError` with one line naming it.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from churn_spark.errors import ConfigError
from churn_spark.storage import canonical

DEFAULT_CONF = Path("conf/local.yaml")

TABLES = (
    "events",
    "users",
    "first_events",
    "user_daily",
    "quarantine",
    "ingest_log",
    "user_features",
    "training_set",
    "label_stats",
    "churn_scores",
    "alerts",
    "score_runs",
    "drift_metrics",
    "model_performance",
    "policy_evaluation",
    "warnings",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Section):
    """How to get a SparkSession; ignored where one already exists (spark-submit, Databricks)."""

    master: str | None = "local[*]"
    app_name: str = "churn-spark"
    settings: dict[str, str] = Field(default_factory=dict)

    @field_validator("settings", mode="before")
    @classmethod
    def _as_text(cls, settings: Any) -> Any:
        """Spark takes every setting as text; YAML's true/8 become "true"/"8"."""
        if not isinstance(settings, dict):
            return settings
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.items()}


class StorageConfig(_Section):
    """Where tables live: Delta folders under the lakehouse, or metastore tables."""

    kind: Literal["path", "metastore"] = "path"
    database: str = "churn"


class IngestConfig(_Section):
    """Contract settings that are policy rather than schema.

    The bounds reject values that are finite but absurd (a price of 1e308 would make every
    feature built on it infinite); the defaults leave room for real retail data (the UCI
    Online Retail set peaks at a price of 38,970 and a quantity of 80,995).
    """

    max_future: dt.timedelta = dt.timedelta(days=1)
    max_price: float = Field(1_000_000.0, gt=0, allow_inf_nan=False)
    max_quantity: int = Field(1_000_000, ge=1, le=2**31 - 1)
    max_dwell_seconds: float = Field(86_400.0, gt=0, allow_inf_nan=False)  # a day on one page
    max_text_chars: int = Field(20_000, ge=1)  # any text value; a longer one is quarantined


class GenerateConfig(_Section):
    """Defaults of the synthetic generator."""

    users: int = Field(2_000, ge=1)
    days: int = Field(120, ge=7)
    start: dt.date = dt.date(2026, 1, 1)
    seed: int = 42
    format: Literal["parquet", "jsonl", "csv"] = "jsonl"
    partitions: int = Field(8, ge=1)
    dirty_fraction: float = Field(0.002, ge=0.0, le=0.5)
    redelivered_fraction: float = Field(0.01, ge=0.0, le=0.5)


# The windowed families other than frequency and browsing (which take ``windows``), with the
# windows they have by default. Every scoring run keeps ``spend_90d`` (revenue at risk), so
# monetary always holds 90.
FAMILY_WINDOWS: dict[str, tuple[int, ...]] = {
    "breadth": (30, 90), "funnel": (30, 90), "monetary": (30, 90), "service": (30, 90),
    "reviews": (90,), "profile": (90,),
}


def _distinct_positive(windows: tuple[int, ...], what: str) -> tuple[int, ...]:
    if not windows or any(w < 1 for w in windows) or len(set(windows)) != len(windows):
        raise ValueError(f"{what} must be distinct positive day counts")
    return tuple(sorted(windows))


class FeaturesConfig(_Section):
    """Feature windows and how far back any feature looks.

    ``windows`` are those of the frequency and browsing families; ``family_windows`` those of
    the other windowed families (a family left out keeps its default, ``FAMILY_WINDOWS``).
    ``history_days`` bounds every window and is the span of recency, loyalty and tenure.
    """

    windows: tuple[int, ...] = (7, 30, 90)
    family_windows: dict[str, tuple[int, ...]] = Field(default_factory=lambda: dict(FAMILY_WINDOWS))
    history_days: int = Field(180, ge=90, le=3650)

    @field_validator("windows")
    @classmethod
    def _windows_fit(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        return _distinct_positive(windows, "windows")

    @field_validator("family_windows")
    @classmethod
    def _families_known(cls, given: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        unknown = sorted(set(given) - set(FAMILY_WINDOWS))
        if unknown:
            raise ValueError(f"family_windows: unknown family {unknown[0]!r}; known: {', '.join(FAMILY_WINDOWS)}")
        merged = {family: _distinct_positive(tuple(given.get(family, default)), f"family_windows.{family}")
                  for family, default in FAMILY_WINDOWS.items()}
        if 90 not in merged["monetary"]:
            raise ValueError("family_windows.monetary must hold 90 (spend_90d is the revenue at risk of every score)")
        return merged

    def longest_window(self) -> int:
        """The longest window of any family."""
        return max(max(self.windows), *(max(w) for w in self.family_windows.values()))


class LabelsConfig(_Section):
    """Who is eligible at T and what churn means after T."""

    horizon_days: int = Field(30, ge=1)
    lookback_days: int = Field(90, ge=1)
    eligibility: Literal["purchase", "any_activity"] = "purchase"


class TrainConfig(_Section):
    """Training: the time split, the models, and how they are launched."""

    train_snapshots: list[dt.date] | None = None  # None: chosen from training_set (see split.py)
    valid_snapshots: list[dt.date] | None = None
    # The share of users held out of training to validate, at every snapshot before the test
    # (churn_spark/train/split.py says why); 0: validation is the validation snapshots' users.
    valid_users: float = Field(0.25, ge=0, lt=1)
    test_snapshots: list[dt.date] | None = None
    models: list[Literal["lr", "mlp", "gru"]] = ["lr", "mlp"]
    # gru: a GRU over each user's last sequence_days days of user_daily activity (train/sequence.py).
    sequence_days: int = Field(90, ge=7)
    launcher: Literal["single", "torchrun", "torchdistributor"] = "torchdistributor"
    num_processes: int = Field(2, ge=1)
    local_mode: bool = True
    use_gpu: bool = True
    # auto: petastorm where it imports (pyarrow 14), else the pyarrow.dataset feed (train/feed.py).
    feed: Literal["auto", "petastorm", "arrow"] = "auto"
    epochs: int = Field(15, ge=1)
    patience: int = Field(3, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    threshold_rule: Literal["max_f1", "expected_cost"] = "max_f1"
    cost_false_negative: float = Field(5.0, ge=0)  # a churner missed (expected_cost rule)
    cost_false_positive: float = Field(1.0, ge=0)  # a retention offer to a loyal user
    baseline_max_rows: int = Field(500_000, ge=1000)  # LightGBM trains on the driver
    # Fitted on the validation snapshot per model (churn_spark/calibrate.py); auto: chosen there.
    calibration: Literal["auto", "platt", "isotonic", "none"] = "auto"
    bootstrap: int = Field(1000, ge=0)  # resamples behind the report's 95% intervals (0: none)
    # BG/NBD's P(alive), expected purchases and P(no purchase) as inputs of every model
    # (churn_spark/btyd.py); fitted on the training split and in the report either way.
    bgnbd_inputs: bool = True
    # Each network trains with the best learning rate, weight decay and batch size churn-spark tune
    # found for it (models/tuned.json under the lakehouse) instead of the values above.
    use_tuned: bool = True

    @field_validator("feed")
    @classmethod
    def _feed_runs_here(cls, feed: str) -> str:
        from churn_spark.train.feed import petastorm_problem

        problem = petastorm_problem() if feed == "petastorm" else None
        if problem:
            raise ValueError(f"petastorm cannot be imported here ({problem}); set train.feed to arrow or auto")
        return feed


class TuneConfig(_Section):
    """``churn-spark tune``: Optuna's TPE over each network's learning rate, weight decay and batch
    size, each trial a training run through ``train.launcher``, trials that trail the median of
    earlier ones at the same epoch (validation PR-AUC) stopped early.

    Time-boxed: no trial starts after ``timeout_minutes`` (shared by the kinds searched), and at
    most ``trials`` run per kind.
    """

    models: list[Literal["lr", "mlp", "gru"]] | None = None  # None: train.models
    trials: int = Field(20, ge=1)  # per kind
    timeout_minutes: float = Field(60.0, gt=0)
    seed: int = 0  # TPE's draws
    startup_trials: int = Field(5, ge=0)  # trials that run to the end before any is pruned (per kind)
    warmup_epochs: int = Field(1, ge=0)  # epochs of each trial before it can be pruned
    learning_rate: tuple[float, float] = (1e-4, 3e-2)  # searched on a log scale
    weight_decay: tuple[float, float] = (1e-7, 1e-2)  # log scale
    batch_size: list[int] = [128, 256, 512, 1024]

    @field_validator("learning_rate", "weight_decay")
    @classmethod
    def _a_range(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not 0 < bounds[0] < bounds[1]:
            raise ValueError(f"a range [low, high] with 0 < low < high, got {list(bounds)}")
        return bounds

    @field_validator("batch_size")
    @classmethod
    def _batch_sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes or min(sizes) < 1:
            raise ValueError(f"one or more batch sizes of at least 1, got {sizes}")
        return sizes


class ScoreConfig(_Section):
    """Risk tiers and reasons of the scoring job.

    ``tiers_by: quantile`` puts users at or above the ``high`` quantile of the scored population
    in the high tier and those at or above ``medium`` in the medium tier (0.9 / 0.7: the top 10%
    and the next 20%); ``tiers_by: probability`` reads ``high`` / ``medium`` as probabilities.
    """

    tiers_by: Literal["quantile", "probability"] = "quantile"
    high: float = Field(0.9, gt=0, lt=1)
    medium: float = Field(0.7, gt=0, lt=1)
    reasons: int = Field(3, ge=0, le=10)  # 0: probabilities only

    @model_validator(mode="after")
    def _ordered(self) -> "ScoreConfig":
        if self.medium >= self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self


class ActionRule(_Section):
    """A retention action for users whose top reasons match any of ``features`` (glob patterns)."""

    action: str
    features: list[str] = Field(min_length=1)


class AlertsConfig(_Section):
    """Who is alerted, the rule table of actions, and how exports name users.

    The rule table (``actions``, first match wins, else ``default_action``) names actions of
    ``policy.actions``; it chooses every alert's action until a learnt policy is promoted
    (``churn-spark policy``), and stays the fallback after.
    """

    probability_rise: float = Field(0.2, gt=0, le=1)  # since the previous scoring run
    actions: list[ActionRule] = [
        ActionRule(action="service_call",
                   features=["service_*", "refund*", "low_rating_share_*", "rating_mean_*", "sentiment_mean_*"]),
        ActionRule(action="coupon",
                   features=["spend_*", "purchases_*", "items_*", "avg_order_value_*", "overdue_ratio",
                             "cart_*", "repurchase_rate"]),
        ActionRule(action="winback_email",
                   features=["days_since_last_*", "*_seen", "sessions_*", "active_days_*", "views_*", "dwell_*"]),
    ]
    default_action: str = "winback_email"
    pseudonymise: bool = False  # exports carry sha256(salt + user_id); the salt comes from salt_env
    salt_env: str = "CHURN_EXPORT_SALT"


NO_ACTION = "none"  # the hold-out: the action of doing nothing, at no cost


class PolicyConfig(_Section):
    """The actions the operations team can take and how each alert's action is chosen
    (``churn_spark/policy.py``).

    Every alert gets one action of ``actions`` (name: cost per user, in the currency of
    ``spend_90d``; ``none`` is always one, at 0). A share ``exploration`` of alerted users gets
    an action drawn uniformly from all of them, ``none`` included (the hold-out); the rest get
    the serving policy's (the promoted learnt policy, else the rule table). Every assignment
    stores its propensity, so that any other policy can be judged from the log.

    A retained user is worth ``margin`` x their last-90-day spend; a policy's net value is that
    times the users it keeps, minus the cost of its actions. ``budget`` caps the learnt
    policy's spend per scoring run (None: no cap).
    """

    actions: dict[str, float] = {NO_ACTION: 0.0, "service_call": 8.0, "coupon": 10.0, "winback_email": 0.5}
    exploration: float = Field(0.2, ge=0, le=1)
    seed: int = 0  # the assignment draws: a hash of (seed, user, date), the same on every re-run
    margin: float = Field(0.3, gt=0, le=1)
    budget: float | None = Field(None, gt=0)
    blanket_action: str = "coupon"  # what "treat all high-risk" gives every high-tier alerted user
    folds: int = Field(5, ge=2)  # cross-fitting: each fold is judged by models learnt on the others
    bootstrap: int = Field(200, ge=20)  # resamples behind each estimate's 95% interval
    min_rows: int = Field(30, ge=1)  # an action logged fewer times gets a lift without features
    regularisation: float = Field(30.0, gt=0)  # the L2 penalty on the win-back model's feature weights

    @field_validator("actions")
    @classmethod
    def _priced(cls, actions: dict[str, float]) -> dict[str, float]:
        if any(cost < 0 for cost in actions.values()):
            raise ValueError("every action's cost must be >= 0")
        if actions.get(NO_ACTION, 0.0) != 0.0:
            raise ValueError(f"{NO_ACTION!r} is doing nothing and costs 0")
        return {NO_ACTION: 0.0, **actions}


AVAILABLE_NOW = "available-now"
_INTERVAL = re.compile(r"^\s*(\d+)\s*(s|sec|second|seconds|m|min|minute|minutes)\s*$")


def parse_trigger(text: str) -> dict[str, object]:
    """``available-now`` or an interval (``10s``, ``1 minute``) as ``DataStreamWriter.trigger``'s
    keyword arguments.

    Raises
    ------
    ConfigError
        Neither.
    """
    if text.strip() == AVAILABLE_NOW:
        return {"availableNow": True}
    match = _INTERVAL.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"trigger {text!r}: expected {AVAILABLE_NOW} or an interval such as 10s or 1 minute")
    seconds = int(match.group(1)) * (60 if match.group(2).startswith("m") else 1)
    return {"processingTime": f"{seconds} seconds"}


class StreamConfig(_Section):
    """The real-time warnings query (``churn-spark stream``).

    ``clock: wall`` takes "now" from the machine's UTC clock; ``clock: events`` from the newest
    event in the events table (a replay of historical events, a demo, a test). The features are
    those at the end of the clock's day: every event of the day so far is in them.
    """

    trigger: str = "10s"  # "available-now", or a processing-time interval: "10s", "1 minute"
    clock: Literal["wall", "events"] = "wall"
    probability_rise: float = Field(0.2, gt=0, le=1)  # within the day, over the day's batch score
    silent_days: int = Field(14, ge=1)  # a high-value user with no event for this many days
    high_value_quantile: float = Field(0.8, ge=0, lt=1)  # of spend_90d in the day's batch scores
    max_files_per_trigger: int = Field(1000, ge=1)  # landing files (or Delta files) per micro-batch

    @field_validator("trigger")
    @classmethod
    def _trigger_known(cls, trigger: str) -> str:
        try:
            parse_trigger(trigger)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return trigger


class MonitorConfig(_Section):
    """The retrain trigger of ``churn-spark monitor`` (churn_spark/monitor.py): retrain when the
    serving model's score PSI exceeds ``score_psi`` on each of its last ``psi_runs`` scoring runs,
    or its newest matured run's realised ROC-AUC falls below its test ROC-AUC minus ``auc_margin``."""

    score_psi: float = Field(0.25, gt=0)
    psi_runs: int = Field(2, ge=1)
    auc_margin: float = Field(0.05, ge=0)


class MlflowConfig(_Section):
    """Where runs and models are tracked."""

    tracking_uri: str = "./mlruns"  # a folder (local store) or any MLflow tracking URI
    experiment: str = "churn-spark"
    model_name: str = "churn-spark"


class Config(_Section):
    """The whole configuration of one run."""

    lakehouse: str = "./lakehouse"
    landing: str = "./landing"
    spark: SparkConfig = SparkConfig()
    storage: StorageConfig = StorageConfig()
    ingest: IngestConfig = IngestConfig()
    generate: GenerateConfig = GenerateConfig()
    features: FeaturesConfig = FeaturesConfig()
    labels: LabelsConfig = LabelsConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    score: ScoreConfig = ScoreConfig()
    alerts: AlertsConfig = AlertsConfig()
    stream: StreamConfig = StreamConfig()
    monitor: MonitorConfig = MonitorConfig()
    policy: PolicyConfig = PolicyConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @model_validator(mode="after")
    def _history_covers_windows(self) -> "Config":
        longest = max(self.features.longest_window(), self.labels.lookback_days)
        if self.features.history_days < longest:
            raise ValueError(f"features.history_days ({self.features.history_days}) must cover the longest "
                             f"window or lookback ({longest})")
        return self

    @model_validator(mode="after")
    def _actions_known(self) -> "Config":
        named = [rule.action for rule in self.alerts.actions] + [self.alerts.default_action,
                                                                self.policy.blanket_action]
        unknown = [name for name in named if name not in self.policy.actions]
        if unknown:
            raise ValueError(f"action {unknown[0]!r} is not one of policy.actions ({', '.join(self.policy.actions)})")
        return self

    def table(self, name: str) -> str:
        """The Delta location of table ``name``: an absolute path or URI, or a metastore name.

        Raises
        ------
        ValueError
            If ``name`` is not one of the project's tables.
        """
        if name not in TABLES:
            raise ValueError(f"table: unknown table {name!r}; known: {', '.join(TABLES)}")
        if self.storage.kind == "metastore":
            return f"{self.storage.database}.{name}"
        return self.location(name)

    def location(self, name: str) -> str:
        """``name`` under the lakehouse (tables, ``reports``, ``models``, ``cache``), as a URI in its
        one canonical spelling (``storage.canonical``: a local lakehouse, however given, is
        ``file:/abs/...``; Delta's table builder refuses relative paths and two spellings of one)."""
        return f"{canonical(self.lakehouse)}/{name}"

    def landing_location(self, name: str) -> str:
        """``name`` under the landing folder, spelt as ``location`` spells lakehouse locations."""
        return f"{canonical(self.landing)}/{name}"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a configuration.

    Parameters
    ----------
    path
        A YAML file; ``None`` means ``conf/local.yaml`` when it exists, else built-in defaults.
    overrides
        ``KEY=VALUE`` strings, ``KEY`` dotted (``spark.master=local[2]``), ``VALUE`` YAML.

    Raises
    ------
    ConfigError
        One line naming the file, key and problem.
    """
    source = str(path) if path is not None else str(DEFAULT_CONF)
    raw: dict[str, Any] = {}
    if path is not None or DEFAULT_CONF.exists():
        raw = _read_yaml(Path(source))
    for item in overrides or []:
        _apply_override(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{source}: {key}: {problem}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    parts = key.strip().split(".")
    # Spark settings keep their dotted names: spark.settings.spark.sql.x=1 is one key.
    if len(parts) > 2 and parts[:2] == ["spark", "settings"]:
        parts = parts[:2] + [".".join(parts[2:])]
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({problem})") from None
