"""spark-submit entry point for `churn-spark alerts`: alerts, exports and summary of a scoring run.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/alerts.py --conf conf/cluster.yaml --as-of 2026-06-18
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["alerts", *sys.argv[1:]]))
