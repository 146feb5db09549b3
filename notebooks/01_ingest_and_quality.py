# Databricks notebook source
# MAGIC %md
# MAGIC # Ingested events and their quality
# MAGIC What landed in the lakehouse, what was refused and why, and how activity runs day by day.
# MAGIC Locally: `CHURN_CONF=conf/local.yaml .venv/bin/python notebooks/01_ingest_and_quality.py`.

# COMMAND ----------

from churn_spark import notebook, quality
from churn_spark.tables import read_table

conf = notebook.widget("conf", "conf/local.yaml")
overrides = notebook.widget("overrides", "")
config, spark = notebook.setup(conf, overrides)

# COMMAND ----------

# MAGIC %md ## The last ingest batches

# COMMAND ----------

notebook.show(read_table(spark, config, "ingest_log").orderBy("batch_time", "dataset").drop("batch_id", "path"))

# COMMAND ----------

# MAGIC %md ## Quarantine by reason

# COMMAND ----------

notebook.show(quality.quarantine_by_reason(read_table(spark, config, "quarantine")))

# COMMAND ----------

# MAGIC %md ## Daily activity

# COMMAND ----------

notebook.show(quality.daily_activity(read_table(spark, config, "events")), rows=200)
