"""Uplift learners compared by their true value on a logged world (a ``bench_policy.py --dump``).

    .venv/bin/python bench/policy_learners.py log.parquet [log2.parquet ...] [--folds 5]

For each dump: the policy each learner's cross-fitted net values choose (``policy.cross_fit``'s
folds by user, no budget), scored by the simulator's potential outcomes in the dump, beside
the rule table's, treat-none's and an oracle's (each row's best action, knowing its outcomes).
The learners: ``policy.RetentionModel`` (the win-back model ``churn-spark policy`` uses) and the
T-learner it replaced, a LightGBM classifier of P(kept) per action on that action's rows.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn_spark.config import PolicyConfig
from churn_spark.policy import RetentionModel, choose, net_values

Learner = Callable[[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame], np.ndarray]


def win_back(settings: PolicyConfig) -> Learner:
    def learn(x: pd.DataFrame, taken: np.ndarray, kept: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
        model = RetentionModel.fit(x, taken, kept, list(settings.actions), settings.min_rows, settings.regularisation)
        return model.predict(rows)
    return learn


def t_learner(settings: PolicyConfig) -> Learner:
    """P(kept | a): a LightGBM classifier per action (its mean below ``min_rows`` rows)."""
    def learn(x: pd.DataFrame, taken: np.ndarray, kept: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(rows), len(settings.actions)))
        for k, action in enumerate(settings.actions):
            mine = taken == action
            if mine.sum() < settings.min_rows or len(np.unique(kept[mine])) < 2:
                out[:, k] = kept[mine].mean() if mine.any() else kept.mean()
                continue
            classifier = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.05, num_leaves=7,
                                            min_child_samples=max(10, int(mine.sum()) // 50), subsample=0.8,
                                            subsample_freq=1, random_state=0, n_jobs=1, verbose=-1)
            classifier.fit(x.loc[mine].to_numpy(float), kept[mine])
            out[:, k] = classifier.predict_proba(rows.to_numpy(float))[:, 1]
        return out
    return learn


def compare(where: str, settings: PolicyConfig) -> None:
    log = pd.read_parquet(where)
    names = list(settings.actions)
    x = log[[c for c in log.columns if c.startswith("x_")]].astype(float)
    taken, kept = log["suggested_action"].to_numpy(), log["retained"].to_numpy(int)
    worth, dates = log["worth"].to_numpy(float), log["snapshot_date"].to_numpy()
    outcomes = np.stack([log[f"kept_{a}"].to_numpy(float) for a in names], axis=1)
    cost = np.array([settings.actions[a] for a in names])

    def truth(chosen: np.ndarray) -> float:
        column = np.array([names.index(a) for a in chosen])
        return float(np.mean(outcomes[np.arange(len(log)), column] * worth - cost[column]))

    folds = np.array([zlib.crc32(u.encode()) % settings.folds for u in log["user_id"]])
    found = {"rules": truth(log["rule_action"].to_numpy()), "none": truth(np.full(len(log), "none")),
             "oracle": float(np.mean((outcomes * worth[:, None] - cost).max(axis=1)))}
    for name, learner in (("win-back", win_back(settings)), ("T-learner", t_learner(settings))):
        p = np.empty((len(log), len(names)))
        for fold in range(settings.folds):
            mine = folds == fold
            p[mine] = learner(x.loc[~mine], taken[~mine], kept[~mine], x.loc[mine])
        found[name] = truth(choose(net_values(p, worth, names, settings.actions), names, settings.actions, dates, None))
    print(f"{where}: {len(log)} rows, {settings.folds} folds; true net value per alerted user: "
          + ", ".join(f"{name} {value:.3f}" for name, value in found.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dumps", nargs="+")
    parser.add_argument("--folds", type=int, default=PolicyConfig().folds)
    args = parser.parse_args()
    for dump in args.dumps:
        compare(dump, PolicyConfig(folds=args.folds))
