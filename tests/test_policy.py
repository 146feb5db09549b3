"""Randomised, logged actions, the simulator's known effects, and the learnt policy judged off-policy."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import actions, simulate, tables
from churn_spark.config import Config, PolicyConfig
from churn_spark.generate import GenerateSpec
from churn_spark.policy import Logged, Policy, RetentionModel, choose, evaluate
from tests.builders import event, store_dates, store_events

T = dt.date(2026, 3, 1)
ACTIONS = ["none", "service_call", "coupon", "winback_email"]


def alerted(spark: SparkSession, users: int, day: dt.date = T, rule: str = "coupon"):
    return spark.range(users).select(F.format_string("u%05d", "id").alias("user_id"),
                                     F.lit(day).alias("snapshot_date"), F.lit(rule).alias("rule"))


def test_a_share_explores_uniformly_and_every_assignment_carries_its_propensity(spark: SparkSession) -> None:
    settings = PolicyConfig(exploration=0.4)
    rows = actions.assign(alerted(spark, 4000), F.col("rule"), F.lit("rules"), settings).toPandas()
    explored = rows[rows["assigned_by"] == actions.EXPLORE]
    assert abs(len(explored) / len(rows) - 0.4) < 0.03
    shares = explored["suggested_action"].value_counts(normalize=True)
    assert sorted(shares.index) == sorted(ACTIONS) and (abs(shares - 0.25) < 0.04).all()
    served = rows["suggested_action"] == "coupon"  # the rule's action: served, or explored onto it
    assert np.allclose(rows.loc[served, "propensity"], 0.4 / 4 + 0.6)
    assert np.allclose(rows.loc[~served, "propensity"], 0.4 / 4)
    assert (rows.loc[rows["assigned_by"] == "rules", "suggested_action"] == "coupon").all()
    costs = {"none": 0.0, "service_call": 8.0, "coupon": 10.0, "winback_email": 0.5}
    assert (rows["action_cost"] == rows["suggested_action"].map(costs)).all()
    again = actions.assign(alerted(spark, 4000), F.col("rule"), F.lit("rules"), settings).toPandas()
    assert again.equals(rows)  # a re-run for the date assigns the same
    later = actions.assign(alerted(spark, 4000, T + dt.timedelta(days=7)), F.col("rule"), F.lit("rules"),
                           settings).toPandas()
    assert (later["assigned_by"] != rows["assigned_by"]).any()  # another date draws anew


def test_no_exploration_serves_the_policy_with_certainty(spark: SparkSession) -> None:
    rows = actions.assign(alerted(spark, 50), F.col("rule"), F.lit("rules"), PolicyConfig(exploration=0)).collect()
    assert {(r.suggested_action, r.assigned_by, r.propensity, r.action_cost) for r in rows} == {
        ("coupon", "rules", 1.0, 10.0)}
    every = actions.assign(alerted(spark, 50), F.col("rule"), F.lit("rules"), PolicyConfig(exploration=1)).collect()
    assert {(r.assigned_by, r.propensity) for r in every} == {("explore", 0.25)}


def test_outcomes_join_matured_assignments_with_a_purchase_in_the_horizon(spark: SparkSession,
                                                                          config: Config) -> None:
    # kept: a purchase on T + 29 (in [T, T + 30)); lost: its purchase on T + 30 is past the window;
    # older: an alert written before actions were randomised (no propensity): not in the log.
    store_events(spark, config, [event(u, "2026-02-10T10:00:00") for u in ("kept", "lost", "older")]
                 + [event("kept", "2026-03-30T10:00:00"), event("lost", "2026-03-31T10:00:00"),
                    event("other", "2026-04-02T10:00:00")])
    schema = ("user_id string, snapshot_date date, risk_tier string, spend_90d double, suggested_action string, "
              "action_cost double, assigned_by string, propensity double")
    store_dates(spark, config, "alerts", [("kept", T, "high", 100.0, "coupon", 10.0, "explore", 0.05),
                                          ("lost", T, "high", 50.0, "none", 0.0, "rules", 0.8),
                                          ("older", T, "high", 80.0, "coupon", None, None, None)], schema, [T])
    got = actions.outcomes(spark, config).orderBy("user_id").collect()
    assert [(r.user_id, r.suggested_action, r.propensity, r.retained, r.worth, r.reward) for r in got] == [
        ("kept", "coupon", 0.05, 1, 30.0, 20.0), ("lost", "none", 0.8, 0, 15.0, 0.0)]


def test_an_open_window_has_no_outcome_yet(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, [event("a", "2026-02-10T10:00:00"), event("a", "2026-03-20T10:00:00")])
    schema = "user_id string, snapshot_date date, suggested_action string, action_cost double, propensity double"
    store_dates(spark, config, "alerts", [("a", T, "coupon", 10.0, 0.8)], schema, [T])
    assert actions.outcomes(spark, config).count() == 0  # the rollup ends on T + 19


def test_ips_snips_and_dr_on_a_hand_log() -> None:
    # Four rows; the target policy gives "coupon" to everyone.
    logged = Logged(["none", "coupon"], np.array(["coupon", "none", "coupon", "none"], dtype=object),
                    np.array([0.5, 0.5, 0.25, 0.75]), np.array([10.0, 0.0, -5.0, 20.0]),
                    q=np.array([[0.0, 8.0], [1.0, 2.0], [0.0, -4.0], [15.0, 5.0]]))
    target = np.array(["coupon"] * 4, dtype=object)
    resamples = np.tile(np.arange(4), (25, 1))  # every resample the sample itself: the interval is the point
    found = {(e.estimator, e.action): e for e in evaluate(logged, target, "coupon", resamples)}
    w = np.array([2.0, 0.0, 4.0, 0.0])
    assert found["ips", "all"].value == pytest.approx((2 * 10 + 4 * -5) / 4)
    assert found["snips", "all"].value == pytest.approx((2 * 10 + 4 * -5) / 6)
    dr = [8 + 2 * (10 - 8), 2, -4 + 4 * (-5 + 4), 5]
    assert found["dr", "all"].value == pytest.approx(np.mean(dr))
    assert found["dr", "coupon"].value == pytest.approx(np.mean(dr)) and found["dr", "coupon"].users == 4
    assert found["ips", "all"].ess == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert (found["dr", "all"].low, found["dr", "all"].high) == pytest.approx((np.mean(dr), np.mean(dr)))


def test_choose_takes_the_best_net_value_and_keeps_to_the_budget_per_date() -> None:
    costs = {"none": 0.0, "coupon": 10.0, "email": 1.0}
    net = np.array([[5.0, 20.0, 6.0],   # coupon gains 15
                    [5.0, 9.0, 12.0],   # email gains 7
                    [5.0, 30.0, 6.0],   # coupon gains 25
                    [8.0, 2.0, 3.0]])   # nothing beats none
    dates = np.array([T, T, T, T + dt.timedelta(days=7)])
    assert list(choose(net, ["none", "coupon", "email"], costs, dates, None)) == ["coupon", "email", "coupon", "none"]
    # 10.5 a date: the 25-gain coupon (10), then the 15-gain coupon does not fit, the email (1) does not either.
    assert list(choose(net, ["none", "coupon", "email"], costs, dates, 10.5)) == ["none", "none", "coupon", "none"]
    assert list(choose(net, ["none", "coupon", "email"], costs, dates, 11.0)) == ["none", "email", "coupon", "none"]


def test_the_win_back_model_learns_each_actions_lift_over_a_baseline_every_row_informs() -> None:
    # Kept without action: 30%. The call wins back 60% of the lost users after a bad experience, none
    # otherwise; the coupon 20% of everyone; the email is logged 12 times (< min_rows), the sms never.
    rng = np.random.default_rng(0)
    n = 4000
    x = pd.DataFrame({"bad": rng.integers(0, 2, n).astype(float), "noise": rng.normal(size=n)})
    taken = rng.choice(["none", "service_call", "coupon"], n, p=[0.1, 0.45, 0.45]).astype(object)
    taken[:12] = "winback_email"
    lift = np.select([taken == "service_call", taken == "coupon"], [0.6 * x["bad"], 0.2], 0.0)
    kept = ((rng.random(n) < 0.3) | (rng.random(n) < lift)).astype(int)
    names = [*ACTIONS, "sms"]
    model = RetentionModel.fit(x, taken, kept, names, min_rows=30, regularisation=0.1)  # barely shrunk

    grid = pd.DataFrame({"bad": [0.0, 1.0], "noise": [0.0, 0.0]})
    p = pd.DataFrame(model.predict(grid), columns=names)
    assert p["none"].to_numpy() == pytest.approx([0.3, 0.3], abs=0.05)
    assert p["service_call"].to_numpy() == pytest.approx([0.3, 0.3 + 0.7 * 0.6], abs=0.05)
    assert p["coupon"].to_numpy() == pytest.approx([0.3 + 0.7 * 0.2] * 2, abs=0.05)
    assert p["sms"].to_numpy() == pytest.approx(p["none"].to_numpy(), abs=1e-9)  # never logged: no lift
    assert model.weights["winback_email"][1:] == [0.0, 0.0]  # too few rows: no feature weights
    assert (p[names].to_numpy() >= p[["none"]].to_numpy() - 1e-12).all()  # an action only adds
    again = Policy.from_json(Policy("v", model, {a: 1.0 for a in names}, 0.3, None).to_json()).model
    assert again.predict(grid) == pytest.approx(model.predict(grid))


def test_a_promoted_policy_of_the_older_format_leaves_the_choice_to_the_rules(
        config: Config, caplog: pytest.LogCaptureFixture) -> None:
    from churn_spark import storage
    from churn_spark.policy import PROMOTED, promote, promoted

    models = config.location("models")
    storage.makedirs(models, config)
    storage.write_atomically(storage.join(models, PROMOTED), json.dumps(
        {"version": "v0", "actions": ACTIONS, "features": [], "models": {a: 0.5 for a in ACTIONS},
         "costs": {a: 0.0 for a in ACTIONS}, "margin": 0.3, "budget": None}), config)
    assert promoted(config) is None
    assert "policy v0 is of an older format" in caplog.text
    policy = Policy("v1", RetentionModel.constant(ACTIONS, {a: 0.5 for a in ACTIONS}), {a: 0.0 for a in ACTIONS},
                    0.3, None)
    promote(config, policy)
    assert promoted(config) == policy


SPEC = GenerateSpec(users=1500, days=120, start=dt.date(2026, 1, 1), seed=5)
AT = dt.date(2026, 3, 15)


@pytest.mark.slow
def test_the_world_wins_back_exactly_the_users_its_potential_outcomes_say(spark: SparkSession) -> None:
    state = simulate.state(spark, SPEC, [AT], 30)
    pick = F.element_at(F.array(*[F.lit(a) for a in ACTIONS]), (F.abs(F.hash("user_id")) % 4).cast("int") + 1)
    assigned = state.withColumn("suggested_action", pick).persist()
    response = simulate.respond(spark, SPEC, assigned.select("user_id", "snapshot_date", "suggested_action"), 30)
    bought = {r.user_id: r.event_time for r in response.where("event_type = 'purchase'").collect()}
    assert response.where("event_type = 'purchase'").count() == len(bought) > 0  # one purchase each
    rows = simulate.potential_outcomes(assigned, ACTIONS).collect()
    lifts = {r.user_id: r.lift for r in assigned.select(
        "user_id", F.coalesce(*[F.when(F.col("suggested_action") == a, simulate.lift(a)) for a in ACTIONS],
                              F.lit(0.0)).alias("lift")).collect()}
    for r in rows:
        won = r.suggested_action != "none" and r.draw < lifts[r.user_id]
        assert (r.user_id in bought) == won, r
        assert r.retained[r.suggested_action] == max(r.retained_without_action, int(won))
        assert r.retained["none"] == r.retained_without_action
        if won:
            assert AT <= dt.date.fromisoformat(bought[r.user_id][:10]) < AT + dt.timedelta(days=7)
    means = assigned.select(*[F.avg(simulate.lift(a)).alias(a) for a in ACTIONS]).first()
    assert means["none"] == 0 and means["winback_email"] == pytest.approx(0.04)
    assert min(means["coupon"], means["service_call"]) > means["winback_email"]
    assigned.unpersist()


@pytest.mark.slow
def test_off_policy_estimates_bracket_the_simulators_true_values(spark: SparkSession, registered: Config) -> None:
    """The whole loop on a generated world: score, alert with half the alerts explored, the world
    responds, and ``policy`` learns and judges. Each policy's IPS, SNIPS and DR intervals hold its
    true value, and the logged policy's observed value is its true value exactly (the outcomes read
    from the stored events are the world's potential outcomes)."""
    from churn_spark.alerts import run_alerts
    from churn_spark.pipeline import policy_step, respond
    from churn_spark.score import run_scoring
    from churn_spark.snapshots import run_features
    from tests.builders import generated

    spec = GenerateSpec(users=1500, days=120, start=dt.date(2026, 1, 1), seed=5, dirty_fraction=0.0)
    config = registered.model_copy(update={
        "generate": registered.generate.model_copy(update={"users": 1500, "days": 120, "seed": 5,
                                                            "dirty_fraction": 0.0}),
        "score": registered.score.model_copy(update={"tiers_by": "quantile", "high": 0.5, "medium": 0.3}),
        "policy": registered.policy.model_copy(update={"exploration": 0.5}),
    })
    events, users = generated(spark, spec)
    store_events(spark, config, events, users)
    dates = [dt.date(2026, 3, 12), dt.date(2026, 3, 26)]
    run_features(spark, config, dates)
    for day in dates:
        run_scoring(spark, config, day)
        run_alerts(spark, config, day)
    assert respond(spark, config, dates) > 0
    run = policy_step(spark, config)
    found = {(e.policy, e.estimator): e for e in run.estimates if e.action == "all"}
    alerts = tables.read_table(spark, config, "alerts")
    waiting = alerts.where("assigned_by = 'waiting'").count()  # alerted again at 03-26, inside 03-12's window
    assert run.rows == alerts.count() - waiting > 400 and waiting > 0
    for policy in ("none", "all_high_risk", "rules", "learnt"):
        truth = found[policy, "truth"].value
        for estimator in ("ips", "snips", "dr"):
            e = found[policy, estimator]
            assert e.low <= truth <= e.high, (e, truth)
    assert found["logged", "observed"].value == pytest.approx(found["logged", "truth"].value)
    stored = tables.read_table(spark, config, "policy_evaluation").where("action = 'all'").count()
    assert stored == len(found)


def test_a_user_whose_window_is_open_gets_no_action_and_stays_out_of_the_log(spark: SparkSession,
                                                                            config: Config) -> None:
    schema = "user_id string, snapshot_date date, suggested_action string, action_cost double, propensity double"
    earlier = T - dt.timedelta(days=20)
    store_dates(spark, config, "alerts", [("a", earlier, "none", 0.0, 0.05)], schema, [earlier])
    assert [r.user_id for r in actions.waiting(spark, config, T).collect()] == ["a"]
    assert actions.waiting(spark, config, earlier + dt.timedelta(days=30)).count() == 0  # closed on T0 + 30
    assigned = actions.assign(spark.createDataFrame([("a", T, "coupon"), ("b", T, "coupon")],
                                                    "user_id string, snapshot_date date, rule string"),
                              F.col("rule"), F.lit("rules"), PolicyConfig(exploration=0))
    held = actions.hold_open_windows(assigned, actions.waiting(spark, config, T)).orderBy("user_id").collect()
    assert [(r.user_id, r.suggested_action, r.action_cost, r.assigned_by, r.propensity) for r in held] == [
        ("a", "none", 0.0, "waiting", None), ("b", "coupon", 10.0, "rules", 1.0)]


@pytest.mark.slow
def test_alerts_follow_the_promoted_policy_within_its_budget_and_the_rules_when_it_cannot_serve(
        spark: SparkSession, registered: Config) -> None:
    from churn_spark.alerts import run_alerts
    from churn_spark.policy import promote
    from churn_spark.score import run_scoring
    from tests.builders import A, T1, T2, store_features

    # P(kept): none 0.2, coupon 0.9; worth 0.3 x spend_90d. Net: a (spend 100) coupon 17 against none 6;
    # b (spend 300) coupon 71 against 18; c (spend 20) none 1.2, the email 1.0, the coupon -4.6.
    kept = {"none": 0.2, "service_call": 0.2, "coupon": 0.9, "winback_email": 0.25}
    policy = Policy("v1", RetentionModel.constant(ACTIONS, kept, ["spend_90d"]), dict(registered.policy.actions),
                    0.3, 15.0)
    promote(registered, policy)
    users = {"a": A, "b": (*A[:4], 300.0, A[5]), "c": (*A[:4], 20.0, A[5])}
    store_features(spark, registered, T1, users)
    run_scoring(spark, registered, T1)
    run_alerts(spark, registered, T1)
    got = tables.read_table(spark, registered, "alerts").orderBy("user_id").collect()
    # The budget (15) pays for b's coupon, the larger gain; a's would exceed it.
    assert [(r.user_id, r.suggested_action, r.assigned_by, r.propensity) for r in got] == [
        ("a", "none", "policy v1", 1.0), ("b", "coupon", "policy v1", 1.0), ("c", "none", "policy v1", 1.0)]

    promote(registered, Policy("v2", RetentionModel.constant(ACTIONS, kept, ["no_such_feature"]),
                               dict(registered.policy.actions), 0.3, None))
    store_features(spark, registered, T2, {"d": A})
    run_scoring(spark, registered, T2)
    run_alerts(spark, registered, T2)
    (d,) = tables.read_table(spark, registered, "alerts").where(F.col("snapshot_date") == T2).collect()
    assert (d.user_id, d.suggested_action, d.assigned_by) == ("d", "coupon", "rules")  # A's reasons: spend
