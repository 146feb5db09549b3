"""spark-submit entry point for `churn-spark ingest`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/ingest.py --conf conf/cluster.yaml [options of churn-spark ingest]
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
