"""spark-submit entry point for `churn-spark run-all`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/run_all.py --conf conf/cluster.yaml [options of churn-spark run-all]
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run-all", *sys.argv[1:]]))
