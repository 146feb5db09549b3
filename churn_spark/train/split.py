"""The time split: train, validation and test snapshots, never randomly across time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from churn_spark.errors import InputError


@dataclass(frozen=True)
class Split:
    """Snapshot dates of each split."""

    train: tuple[dt.date, ...]
    valid: tuple[dt.date, ...]
    test: tuple[dt.date, ...]


def choose_split(
    available: Sequence[dt.date], horizon_days: int, train: Sequence[dt.date] | None = None,
    valid: Sequence[dt.date] | None = None, test: Sequence[dt.date] | None = None,
) -> Split:
    """The given split, checked; or by default: test = the last snapshot, validation = the last
    one whose label window ends by the test date, train = the earlier such ones.

    A label window [T, T + horizon) of a training or validation snapshot must end by the first
    test snapshot, so that no test label is known while training; training comes before validation.

    Raises
    ------
    InputError
        One line naming the snapshot that breaks a rule, or saying what is missing.
    """
    dates = sorted(set(available))
    if not dates:
        raise InputError("train: training_set has no snapshots; run churn-spark labels first")
    test_dates = sorted(test) if test else dates[-1:]
    horizon = dt.timedelta(days=horizon_days)
    usable = [d for d in dates if d + horizon <= test_dates[0]]
    valid_dates = sorted(valid) if valid else usable[-1:]
    train_dates = sorted(train) if train else [d for d in usable if valid_dates and d < valid_dates[0]]
    split = Split(tuple(train_dates), tuple(valid_dates), tuple(test_dates))
    _check(split, dates, horizon)
    return split


def _check(split: Split, dates: list[dt.date], horizon: dt.timedelta) -> None:
    for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        if not part:
            raise InputError(f"train: no {name} snapshot fits (snapshots {', '.join(map(str, dates))}; label "
                             f"windows of train/valid must end by the test date): label more snapshot dates")
        missing = [d for d in part if d not in dates]
        if missing:
            raise InputError(f"train: {name} snapshot {missing[0]} is not in training_set")
    for day in (*split.train, *split.valid):
        if day + horizon > split.test[0]:
            raise InputError(f"train: snapshot {day}'s label window [{day}, {day + horizon}) overlaps the test "
                             f"snapshot {split.test[0]}")
    if max(split.train) >= min(split.valid):
        raise InputError(f"train: training snapshot {max(split.train)} is not before validation {min(split.valid)}")
