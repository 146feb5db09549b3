"""Evaluation metrics and the report on a hand-made prediction set; the time split's rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from churn_spark.errors import InputError
from churn_spark.evaluate import choose_threshold, model_metrics, write_report
from churn_spark.train.split import Split, choose_split

LABELS = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_metrics_on_a_hand_made_prediction_set() -> None:
    metrics = model_metrics(LABELS, SCORES, threshold=0.5)
    assert metrics == pytest.approx({
        "roc_auc": 19 / 21,                     # positive-negative pairs ordered right
        "pr_auc": (1 + 1 + 3 / 5) / 3,          # precision at each positive
        "precision": 3 / 5, "recall": 1.0, "f1": 0.75, "threshold": 0.5,
        "top_decile_lift": 1 / 0.3,             # the top 10% (one user) is a churner; base rate 0.3
        "top_decile_capture": 1 / 3,
        "brier": float(np.mean((SCORES - LABELS) ** 2)),
        # ECE over 10 equal-width bins [0, 0.1), [0.1, 0.2), ...: each score falls in a bin of
        # its own (0.05 in the first, 0.1 in the second), so each bin weighs 1/10 and its gap is
        # |label - score|: (0.1 + 0.2 + 0.7 + 0.6 + 0.5 + 0.4 + 0.3 + 0.2 + 0.1 + 0.05) / 10 = 0.315.
        "ece": 0.315,
    })


def test_thresholds_chosen_on_validation() -> None:
    assert choose_threshold(LABELS, SCORES) == 0.8  # F1 0.8 there (P 1, R 2/3); 0.75 at 0.5
    assert choose_threshold(LABELS, SCORES, "expected_cost", cost_false_negative=10, cost_false_positive=1) == 0.5


def test_report_files_and_metrics_json_shape(tmp_path: Path) -> None:
    test = {"lr": (LABELS, SCORES), "mlp": (LABELS, SCORES[::-1].copy())}
    metrics = write_report(test, {"lr": 0.5, "mlp": 0.5}, dt.date(2026, 5, 21), str(tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics and saved["test_snapshot"] == "2026-05-21"
    assert set(saved["models"]) == {"lr", "mlp"}
    assert {"roc_auc", "pr_auc", "f1", "precision", "recall", "threshold", "top_decile_lift", "brier",
            "ece"} <= set(saved["models"]["lr"])
    assert saved["models"]["mlp"]["roc_auc"] == pytest.approx(2 / 21)
    for name in ("roc", "pr", "calibration", "lift", "histogram"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "2026-05-21" in page


DATES = [dt.date(2026, 2, 26) + dt.timedelta(days=14 * k) for k in range(7)]  # 02-26 .. 05-21


def test_default_split_keeps_test_labels_unseen() -> None:
    split = choose_split(DATES, 30)
    assert split == Split(train=tuple(DATES[:3]), valid=(DATES[3],), test=(DATES[6],))
    assert all(d + dt.timedelta(days=30) <= split.test[0] for d in split.train + split.valid)


def test_overlapping_split_is_refused_in_one_line() -> None:
    with pytest.raises(InputError, match=r"^train: snapshot 2026-05-07's label window \[2026-05-07, 2026-06-06\) "
                                         r"overlaps the test snapshot 2026-05-21$"):
        choose_split(DATES, 30, train=DATES[:2], valid=[DATES[5]], test=[DATES[6]])
    with pytest.raises(InputError, match="no train snapshot fits"):
        choose_split(DATES[-2:], 30)


def test_validation_users_are_held_out_of_training_at_every_snapshot_before_the_test(spark) -> None:
    users = [f"u{i:02d}" for i in range(40)]
    rows = spark.createDataFrame([(u, d) for u in users for d in DATES[:3]] + [("u00", DATES[5])],
                                 "user_id string, snapshot_date date")

    def parts(split: Split) -> dict[tuple[str, dt.date], str | None]:
        return {(r.user_id, r.snapshot_date): r.part
                for r in rows.select("user_id", "snapshot_date", split.part().alias("part")).collect()}

    by_users = parts(Split(train=(DATES[0],), valid=(DATES[1],), test=(DATES[2],), valid_users=0.5))
    held = {u for u in users if by_users[(u, DATES[0])] == "valid"}
    assert 10 <= len(held) <= 30  # about half, by a hash of user_id
    for user in users:
        assert by_users[(user, DATES[0])] == by_users[(user, DATES[1])] == ("valid" if user in held else "train")
        assert by_users[(user, DATES[2])] == "test"
    assert by_users[("u00", DATES[5])] is None  # in no part

    by_snapshot = parts(Split(train=(DATES[0],), valid=(DATES[1],), test=(DATES[2],)))
    assert {by_snapshot[(u, d)] for u in users for d in DATES[:3]} == {"train", "valid", "test"}
    assert all(by_snapshot[(u, d)] == part for u in users
               for d, part in zip(DATES[:3], ("train", "valid", "test"), strict=True))
