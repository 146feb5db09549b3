# Databricks notebook source
# MAGIC %md
# MAGIC # Scoring and alerts
# MAGIC Every user known at T scored by the registered model (a pandas UDF on the executors), tiered, with the
# MAGIC top reasons in words; the users newly at risk since the previous run, with a suggested action; and the
# MAGIC manager's one-page report.
# MAGIC Locally: `.venv/bin/python notebooks/04_scoring_and_alerts.py`.

# COMMAND ----------

from churn_spark import notebook
from churn_spark.alerts import action_counts, read_alerts, reason_counts
from churn_spark.cli import parse_dates
from churn_spark.pipeline import score_and_alert
from churn_spark.report import write_manager_report

conf = notebook.widget("conf", "conf/local.yaml")
overrides = notebook.widget("overrides", "")
score_dates = parse_dates(notebook.widget("score_dates", "2026-06-04,2026-06-18"))
model_version = notebook.widget("model_version", "") or None
config, spark = notebook.setup(conf, overrides)

# COMMAND ----------

# MAGIC %md ## Score each date, then list its alerts (each run is compared with the one before)

# COMMAND ----------

summaries = score_and_alert(spark, config, score_dates, model_version)
notebook.show_text("\n\n".join("\n".join(summary.lines()) for summary in summaries))

# COMMAND ----------

# MAGIC %md ## The latest run's alerts, reasons and actions

# COMMAND ----------

latest = summaries[-1].snapshot_date
alerts = read_alerts(spark, config, latest)
notebook.show(alerts.select("user_id", "churn_probability", "risk_tier", "alert_reason", "top_reasons",
                            "suggested_action"))
notebook.show(reason_counts(alerts))
notebook.show(action_counts(alerts))

# COMMAND ----------

# MAGIC %md ## The manager's report

# COMMAND ----------

notebook.show_text(f"report: {write_manager_report(spark, config, latest)}")
