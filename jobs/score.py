"""spark-submit entry point for `churn-spark score`: every user scored at a date, then alerts.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/score.py --conf conf/cluster.yaml --as-of 2026-06-18
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
