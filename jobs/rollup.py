"""spark-submit entry point for `churn-spark rollup`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/rollup.py --conf conf/cluster.yaml
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["rollup", *sys.argv[1:]]))
