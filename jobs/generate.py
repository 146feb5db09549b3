"""spark-submit entry point for `churn-spark generate`.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/generate.py --conf conf/cluster.yaml [options of churn-spark generate]
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
