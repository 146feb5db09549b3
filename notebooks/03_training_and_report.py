# Databricks notebook source
# MAGIC %md
# MAGIC # Training and the evaluation report
# MAGIC Logistic regression and the MLP trained with DistributedDataParallel (fed by Petastorm, launched by
# MAGIC TorchDistributor), LightGBM on the same split, all scored on the test snapshot beside the recency-only
# MAGIC score; the best network is registered in MLflow.
# MAGIC Locally: `.venv/bin/python notebooks/03_training_and_report.py`.

# COMMAND ----------

from churn_spark import notebook
from churn_spark.evaluate import metrics_table
from churn_spark.train.job import run_training

conf = notebook.widget("conf", "conf/local.yaml")
overrides = notebook.widget("overrides", "")
config, spark = notebook.setup(conf, overrides)

# COMMAND ----------

# MAGIC %md ## Train

# COMMAND ----------

result = run_training(spark, config)
notebook.show_text(f"run {result['run']}: train {result['split'].train}, validation {result['split'].valid}, "
                   f"test {result['split'].test}; registered {config.mlflow.model_name} version {result['version']}")

# COMMAND ----------

# MAGIC %md ## Test-snapshot metrics
# MAGIC Thresholds were chosen on the validation snapshot; the plots and `report.html` are in the report folder.

# COMMAND ----------

notebook.show(metrics_table(result["metrics"]))
notebook.show_text(f"report: {config.location('reports')}/{result['run']}/report.html")
