"""spark-submit entry point for `churn-spark evaluate`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/evaluate.py --conf conf/cluster.yaml
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
