# Databricks notebook source
# MAGIC %md
# MAGIC # Features and labels
# MAGIC Point-in-time features for snapshot dates T (events strictly before T) into `user_features`,
# MAGIC and the training set (eligible users at T, labelled from [T, T + horizon)) into `training_set`.
# MAGIC Re-running a date replaces exactly that date's partition.
# MAGIC Locally: `.venv/bin/python notebooks/02_features_and_labels.py` (widgets from `CHURN_<NAME>`).

# COMMAND ----------

from churn_spark import notebook, quality
from churn_spark.cli import parse_dates
from churn_spark.snapshots import run_features, run_labels
from churn_spark.tables import read_table

conf = notebook.widget("conf", "conf/local.yaml")
overrides = notebook.widget("overrides", "")
feature_dates = parse_dates(notebook.widget("feature_dates", "2026-02-26:2026-06-18:14"))
label_dates = parse_dates(notebook.widget("label_dates", "2026-02-26:2026-05-21:14"))
config, spark = notebook.setup(conf, overrides)

# COMMAND ----------

# MAGIC %md ## Features at each snapshot

# COMMAND ----------

notebook.show_text(f"user_features: {run_features(spark, config, feature_dates)} rows written")
user_features = read_table(spark, config, "user_features")
notebook.show(quality.rows_per_snapshot(user_features))

# COMMAND ----------

# MAGIC %md ## Which features carry information
# MAGIC The share of users whose value differs from the feature's "none" value (0 counts, capped recency, `unknown`).

# COMMAND ----------

notebook.show(quality.feature_coverage(user_features, config.features), rows=80)

# COMMAND ----------

# MAGIC %md ## Labels: who churned after each snapshot

# COMMAND ----------

notebook.show_text("\n".join(run_labels(spark, config, label_dates).lines()))
notebook.show(quality.label_rates(read_table(spark, config, "training_set")))
