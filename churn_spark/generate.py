"""Synthetic e-commerce events in the contract, made by Spark at any scale.

Every random draw is a hash of (seed, ids, a salt), not a driver-side loop or a stateful
generator, so the same seed gives the same rows on any cluster and any partitioning.

How users behave:
- each user has a session rate (sessions a day), a preferred channel and category, and a
  profile (gender, age, region, membership level that follows engagement);
- some users churn: over the four to ten weeks before their churn day their sessions thin
  out, sessions get shorter (fewer views, less dwell), carts convert less, and bad
  experiences (low ratings with angry reviews, refunds, service contacts) become likely;
  after the churn day they are silent. Churn days run past the end of the data, so some
  churners still look active at the end, as in real data;
- a session is views (with dwell times) of products, maybe a cart, maybe a purchase, and
  later maybe a review (English or Chinese text by region), a refund or a service contact.
A small share of rows is dirty (one contract rule broken) and a share is delivered twice,
so that ingestion's quarantine and deduplication have work to do.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark.storage import write_atomically

if TYPE_CHECKING:
    from churn_spark.config import Config

log = logging.getLogger(__name__)

CHANNELS = ("app", "web", "mini_program")
CATEGORIES = ("apparel", "beauty", "books", "electronics", "grocery", "home", "kids",
              "pets", "shoes", "sports", "toys", "jewelry")
REGIONS = ("CN-East", "CN-North", "CN-South", "SG", "UK", "DE", "US-East", "US-West")
CHINESE_REGIONS = ("CN-East", "CN-North", "CN-South")
PRODUCTS = 5_000
REVIEWS = {
    ("en", "good"): ("Great quality, fast delivery.", "Love it, will buy again!",
                     "Exactly as described, very happy."),
    ("en", "mixed"): ("It's okay, nothing special.", "Average product for the price."),
    ("en", "bad"): ("Terrible quality, broke after two days.",
                    "Very disappointed, slow delivery and poor service.",
                    "Not as described, I want a refund."),
    ("zh", "good"): ("质量很好，物流很快。", "非常喜欢，会回购！", "和描述一致，很满意。"),
    ("zh", "mixed"): ("一般般，没什么特别的。", "价格还行，质量普通。"),
    ("zh", "bad"): ("质量太差，用了两天就坏了。", "非常失望，发货慢，客服态度差。", "与描述不符，要求退款。"),
}
_MASK = (1 << 53) - 1
_DAY = 86_400


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate."""

    users: int
    days: int
    start: dt.date
    seed: int = 42
    dirty_fraction: float = 0.002
    redelivered_fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.days < 7:
            raise ValueError(f"days must be >= 7, got {self.days}")
        for name in ("dirty_fraction", "redelivered_fraction"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name} must be within [0, 0.5], got {getattr(self, name)}")


def generate(spark: SparkSession, spec: GenerateSpec) -> tuple[DataFrame, DataFrame]:
    """The synthetic ``(events, users)`` DataFrames, in the landing contract.

    Event times and signup times are ISO-8601 text (UTC), as in JSON and CSV landing files.
    """
    latent, events = world(spark, spec)
    return _deliver(events, spec), _profiles(latent, spec)


def world(spark: SparkSession, spec: GenerateSpec) -> tuple[DataFrame, DataFrame]:
    """The world behind ``generate``: one row per user of hidden state (rate, churn schedule,
    favourite category, ...) and their events as they happened, before delivery breaks or repeats
    any (``churn_spark.simulate`` reads both to know the truth)."""
    latent = _latent_users(spark, spec)
    return latent, _events(_sessions(latent, spec), spec)


def intensity_on(day: Column) -> Column:
    """A user's engagement in (0, 1] on ``day`` (days from the start), over ``world``'s users:
    1 for a loyal user and before a churner's decline, down to 0.1 at and after the churn day."""
    return _intensity(day)


def write_landing(
    events: DataFrame, users: DataFrame, out: str, fmt: str, partitions: int
) -> None:
    """Write generated data as landing files under ``out/events`` and ``out/users``."""
    for frame, name in ((events.repartition(partitions, "user_id"), "events"),
                        (users.repartition(max(1, partitions // 4)), "users")):
        writer = frame.write.mode("overwrite")
        path = f"{out.rstrip('/')}/{name}"
        if fmt == "parquet":
            writer.parquet(path)
        elif fmt == "csv":
            writer.options(header="true", escape='"').csv(path)
        elif fmt == "jsonl":
            writer.json(path)
        else:
            raise ValueError(f"format must be parquet, jsonl or csv, got {fmt!r}")
        log.info("wrote %s %s to %s", fmt, name, path)


def uniform(seed: int, salt: str, *keys: Column | str) -> Column:
    """A uniform draw in [0, 1), a pure function of (seed, salt, keys): the same on any cluster
    and any partitioning, and on every re-run."""
    return F.xxhash64(F.lit(seed), F.lit(salt), *keys).bitwiseAND(_MASK) / float(_MASK + 1)


_u = uniform


def _pick(options: tuple[str, ...], draw: Column) -> Column:
    return F.element_at(F.array(*[F.lit(o) for o in options]), (draw * len(options)).cast("int") + 1)


def _latent_users(spark: SparkSession, spec: GenerateSpec) -> DataFrame:
    """One row per user: behaviour parameters and the (hidden) churn schedule."""
    s, d = spec.seed, spec.days
    uid = F.format_string("u%07d", F.col("id"))
    u = {salt: _u(s, salt, "id") for salt in
         ("rate", "tenure", "late", "churn", "cday", "decl", "chan", "cat", "sex", "age", "reg", "zh")}
    joined_late = u["late"] < 0.3
    active_from = F.when(joined_late, F.floor(u["tenure"] * 0.7 * d)).otherwise(0)
    churns = u["churn"] < 0.4
    return spark.range(spec.users).select(
        uid.alias("user_id"),
        (0.05 + 0.55 * u["rate"] * u["rate"]).alias("rate"),
        active_from.cast("int").alias("active_from"),
        F.when(joined_late, active_from).otherwise(-F.floor(u["tenure"] * 730) - 1).alias("signup_day"),
        churns.alias("churner"),
        F.when(churns, active_from + 14 + u["cday"] * (d + 30 - active_from - 14)).alias("churn_day"),
        (28 + u["decl"] * 42).alias("decline_days"),
        _pick(CHANNELS, u["chan"]).alias("channel"),
        (u["cat"] * len(CATEGORIES)).cast("int").alias("fav_category"),
        _pick(("female", "male", "other"), F.when(u["sex"] < 0.97, u["sex"] / 0.97 * 0.66)
              .otherwise(0.99)).alias("gender"),
        (16 + F.floor(u["age"] * 60)).cast("int").alias("age"),
        _pick(REGIONS, u["reg"]).alias("region"),
        u["zh"].alias("zh_draw"),
    )


def _intensity(day: Column) -> Column:
    """Engagement in (0, 1] on ``day``: 1 until the decline, falling to 0.1 at churn."""
    decline = F.greatest(F.least((F.col("churn_day") - day) / F.col("decline_days"), F.lit(1.0)), F.lit(0.0))
    return F.when(F.col("churner"), 0.1 + 0.9 * decline * decline).otherwise(1.0)


def _sessions(latent: DataFrame, spec: GenerateSpec) -> DataFrame:
    """Sessions by thinning: candidate days at the peak rate, kept with the day's intensity."""
    s = spec.seed
    end = F.when(F.col("churner"), F.least(F.lit(float(spec.days)), F.col("churn_day"))).otherwise(float(spec.days))
    span = F.greatest(end - F.col("active_from"), F.lit(0.0))
    peak = 1.3  # weekend boost
    n = F.floor(F.col("rate") * span * peak + _u(s, "n", "user_id")).cast("int")
    candidates = latent.withColumn("k", F.explode(F.sequence(F.lit(0), F.greatest(n - 1, F.lit(-1)))))
    day_float = F.col("active_from") + _u(s, "day", "user_id", "k") * span
    start = dt.datetime.combine(spec.start, dt.time(), dt.timezone.utc).timestamp()
    sessions = candidates.withColumn("day", F.floor(day_float).cast("int")).withColumn(
        "t0", start + F.col("day") * _DAY + (7 + 17 * _u(s, "hour", "user_id", "k")) * 3600
    ).withColumn("intensity", _intensity(F.col("day").cast("double")))
    weekend = F.dayofweek(F.timestamp_seconds("t0")).isin(1, 7)
    keep = _u(s, "keep", "user_id", "k") < F.col("intensity") * F.when(weekend, peak).otherwise(1.0) / peak
    return sessions.where(keep).withColumn("session_id", F.format_string("%s-s%d", "user_id", "k"))


def _events(sessions: DataFrame, spec: GenerateSpec) -> DataFrame:
    """Explode each session into its events, with times, products, prices and texts."""
    s = spec.seed
    sid, i = F.col("session_id"), F.col("intensity")
    churning = F.col("churner") & (i < 1.0)
    bad = _u(s, "bad", sid) < F.when(churning, 0.05 + 0.45 * (1 - i)).otherwise(0.04)
    n_views = 1 + F.floor(_u(s, "nv", sid) * (2 + 6 * i)).cast("int")
    carted = _u(s, "cart", sid) < 0.35 * (0.4 + 0.6 * i)
    bought = carted & (_u(s, "buy", sid) < 0.6 * (0.5 + 0.5 * i))
    reviewed = bought & (_u(s, "rev", sid) < F.when(bad, 0.7).otherwise(0.25))
    refunded = bought & (_u(s, "ref", sid) < F.when(bad, 0.35).otherwise(0.02))
    service = _u(s, "svc", sid) < F.when(bad, 0.3).otherwise(0.015)

    def product(j: Column) -> Column:
        fav = _u(s, "fav", sid, j) < 0.55
        any_product = F.floor(_u(s, "prod", sid, j) * PRODUCTS).cast("int")
        in_fav = F.col("fav_category") + len(CATEGORIES) * F.floor(
            _u(s, "prod", sid, j) * (PRODUCTS // len(CATEGORIES))).cast("int")
        return F.when(fav, in_fav).otherwise(any_product)

    def event(kind: str, offset: Column, prod: Column, dwell: Column = F.lit(None)) -> Column:
        return F.struct(F.lit(kind).alias("event_type"), offset.cast("double").alias("offset"),
                        prod.cast("int").alias("product"), dwell.cast("double").alias("dwell"))

    def only_if(cond: Column, ev: Column) -> Column:
        return F.filter(F.array(ev), lambda _: cond)

    last = product(n_views - 1)
    paid_at = n_views * 45 + 60
    views = F.transform(F.sequence(F.lit(0), n_views - 1), lambda j: event(
        "view", j * 45, product(j), -F.log1p(-_u(s, "dwell", sid, j)) * (15 + 75 * i)))
    timeline = F.concat(
        views,
        only_if(carted, event("cart", n_views * 45 + 10, last)),
        only_if(bought, event("purchase", paid_at, last)),
        only_if(reviewed, event("review", paid_at + 3 * _DAY, last)),
        only_if(refunded, event("refund", paid_at + 5 * _DAY, last)),
        only_if(service, event("service", F.when(refunded, paid_at + 6 * _DAY).otherwise(120), F.lit(None))),
    )
    exploded = sessions.select("*", F.posexplode(timeline).alias("k_event", "e")).select(
        "*", "e.*").drop("e")
    return _event_columns(exploded, spec, bad)


def _event_columns(exploded: DataFrame, spec: GenerateSpec, bad: Column) -> DataFrame:
    s = spec.seed
    sid, typ = F.col("session_id"), F.col("event_type")
    time = F.timestamp_seconds(F.col("t0") + F.col("offset"))
    base_price = F.round(F.exp(1.5 + 3.5 * _u(s, "price", F.col("product"))), 2)
    rating = F.when(bad, 1 + F.floor(_u(s, "stars", sid) * 2)).otherwise(
        3 + F.floor(F.sqrt(_u(s, "stars", sid)) * 3)).cast("int")
    mood = F.when(rating <= 2, "bad").when(rating == 3, "mixed").otherwise("good")
    lang = F.when(F.col("region").isin(*CHINESE_REGIONS) | ((F.col("region") == "SG") & (F.col("zh_draw") < 0.5)),
                  "zh").otherwise("en")
    texts = F.create_map(*[x for (lg, md), opts in REVIEWS.items()
                           for x in (F.lit(f"{lg}:{md}"), F.array(*[F.lit(t) for t in opts]))])
    options = texts[F.concat_ws(":", lang, mood)]
    text = F.element_at(options, (F.floor(_u(s, "text", sid) * F.size(options)) + 1).cast("int"))
    channel = F.when(_u(s, "ch", sid) < 0.75, F.col("channel")).otherwise(_pick(CHANNELS, _u(s, "ch2", sid)))
    priced = typ.isin("purchase", "refund")
    return exploded.where(time < F.lit(dt.datetime.combine(
        spec.start + dt.timedelta(days=spec.days), dt.time(), dt.timezone.utc))).select(
        F.format_string("%s-e%d", sid, F.col("k_event")).alias("event_id"),
        "user_id",
        F.date_format(time, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("event_time"),
        "event_type",
        "session_id",
        F.when(typ != "service", F.format_string("p%05d", F.col("product"))).alias("product_id"),
        F.when(typ != "service", F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]),
                                              F.pmod(F.col("product"), F.lit(len(CATEGORIES))) + 1)
               ).alias("category"),
        channel.alias("channel"),
        F.when(typ == "review", text).alias("review_text"),
        F.when(priced, base_price).alias("price"),
        F.when(priced, 1 + F.floor(_u(s, "qty", sid) ** 3 * 3)).cast("int").alias("quantity"),
        F.round(F.col("dwell"), 1).alias("dwell_seconds"),
        F.when(typ == "review", rating).alias("rating"),
    )


def _deliver(events: DataFrame, spec: GenerateSpec) -> DataFrame:
    """Break one contract rule in a few rows, and deliver a few rows twice."""
    s = spec.seed
    eid = F.col("event_id")
    dirty = _u(s, "dirty", eid) < spec.dirty_fraction
    kind = F.floor(_u(s, "dirty_kind", eid) * 9).cast("int")

    def corrupt(column: str, k: int, value: Column) -> Column:
        return F.when(dirty & (kind == k), value).otherwise(F.col(column)).alias(column)

    broken = events.select(
        corrupt("event_id", 8, F.lit("")),
        corrupt("user_id", 0, F.lit("")),
        F.when(dirty & (kind == 1), F.lit("not-a-time"))
        .when(dirty & (kind == 2), F.concat(F.lit("2099"), F.substring("event_time", 5, 20)))
        .otherwise(F.col("event_time")).alias("event_time"),
        corrupt("event_type", 3, F.lit("click")),
        "session_id", "product_id", "category", "channel", "review_text",
        corrupt("price", 4, F.lit(-1.0)),
        corrupt("quantity", 5, F.lit(0)),
        corrupt("dwell_seconds", 7, F.lit(-5.0)),
        corrupt("rating", 6, F.lit(9)),
    )
    columns = events.columns
    again = broken.where(_u(s, "again", eid) < spec.redelivered_fraction)
    return broken.select(*columns).unionByName(again.select(*columns))


def _profiles(latent: DataFrame, spec: GenerateSpec) -> DataFrame:
    s = spec.seed
    level = (F.when(F.col("rate") > 0.4, "platinum").when(F.col("rate") > 0.25, "gold")
             .when(F.col("rate") > 0.12, "silver").otherwise("basic"))
    signup = F.timestamp_seconds(
        dt.datetime.combine(spec.start, dt.time(), dt.timezone.utc).timestamp()
        + F.col("signup_day") * _DAY + _u(s, "signup", "user_id") * _DAY)
    dirty = _u(s, "udirty", "user_id") < spec.dirty_fraction
    return latent.select(
        F.when(dirty & (_u(s, "ukind", "user_id") < 0.5), F.lit("")).otherwise(F.col("user_id")).alias("user_id"),
        F.date_format(signup, "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("signup_time"),
        "gender",
        F.when(dirty & (_u(s, "ukind", "user_id") >= 0.5), F.lit(150)).otherwise(F.col("age")).alias("age"),
        "region",
        level.alias("membership_level"),
    )


def bad_day(users: Sequence[str], day: dt.date, tag: str) -> list[dict[str, object]]:
    """Landing rows (the contract's JSON fields) of a bad day for each of ``users``: two service
    contacts and a refund, from 08:00 on ``day``, a second apart; event ids unique per ``tag``.
    What a real-time warning is for (the stream's notebook and benchmark feed these)."""
    rows: list[dict[str, object]] = []
    for number, user in enumerate(users):
        when = dt.datetime.combine(day, dt.time(8)) + dt.timedelta(seconds=3 * number)
        for k, kind in enumerate(("service", "service", "refund")):
            row: dict[str, object] = {
                "event_id": f"{tag}-{user}-{k}", "user_id": user, "event_type": kind,
                "event_time": (when + dt.timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "session_id": f"{tag}-{user}"}
            if kind == "refund":
                row.update(product_id="p1", price=20.0, quantity=1)
            rows.append(row)
    return rows


def land_rows(rows: Sequence[dict[str, object]], uri: str, config: Config | None = None) -> str:
    """Write ``rows`` as one JSON-lines landing file at ``uri`` that appears whole (a watcher
    never reads half of it: ``storage.write_atomically``); its URI."""
    write_atomically(uri, "".join(json.dumps(row) + "\n" for row in rows), config)
    return uri
