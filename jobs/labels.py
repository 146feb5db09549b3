"""spark-submit entry point for `churn-spark labels`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/labels.py --conf conf/cluster.yaml --as-of 2026-03-01:2026-04-26:7
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["labels", *sys.argv[1:]]))
