"""spark-submit entry point for `churn-spark promote`: the latest registered version becomes the
champion if it ranks the latest matured training_set snapshot better than the champion does.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/promote.py --conf conf/cluster.yaml [--candidate V]
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
