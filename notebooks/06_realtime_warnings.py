# Databricks notebook source
# MAGIC %md
# MAGIC # Real-time warnings
# MAGIC The streaming query behind `churn-spark stream`: new event files land, are ingested under the contract
# MAGIC (bad rows to quarantine), the users they touch are re-scored from `user_daily` with the champion model,
# MAGIC and a warning is written when one crosses into the high tier or rises fast within the day.
# MAGIC Run the demo notebooks 01-04 first (a lakehouse with scores). Locally:
# MAGIC `.venv/bin/python notebooks/06_realtime_warnings.py`.

# COMMAND ----------

from churn_spark import notebook, storage
from churn_spark.generate import bad_day, land_rows
from churn_spark.live import read_warnings, users_near_high
from churn_spark.stream import LiveStream

conf = notebook.widget("conf", "conf/local.yaml")
overrides = notebook.widget("overrides", "")
users = int(notebook.widget("users", "5"))
config, spark = notebook.setup(conf, overrides)
landing = notebook.widget("live_landing", "") or config.landing_location("live/events")

# COMMAND ----------

# MAGIC %md ## Start the queries: the landing folder and the events table, a micro-batch every 10 seconds

# COMMAND ----------

live = LiveStream(spark, config, landing, "jsonl").start("10s")
notebook.show_text(f"watching {landing}; checkpoints under {config.location('checkpoints')}")

# COMMAND ----------

# MAGIC %md ## A bad day for a few customers near the high tier: two complaints and a refund each

# COMMAND ----------

chosen = users_near_high(spark, config, users)
day = live.warner.clock().date()
landed = land_rows(bad_day(chosen, day, "notebook"), storage.join(landing, f"bad-day-{day}.jsonl"), config)
live.process_all_available()
notebook.show_text("\n".join([f"landed {landed} for {', '.join(chosen)}", *live.result().lines()]))

# COMMAND ----------

# MAGIC %md ## The day's warnings: before and after, the reasons in words, the suggested action

# COMMAND ----------

notebook.show(read_warnings(spark, config, day).select(
    "user_id", "kind", "probability_before", "probability_after", "risk_tier", "top_reasons", "suggested_action"))
live.stop()
