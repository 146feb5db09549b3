"""spark-submit entry point for `churn-spark train`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/train.py --conf conf/cluster.yaml
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
