"""churn-spark: churn early-warning for e-commerce on Spark, Delta Lake and PyTorch."""
