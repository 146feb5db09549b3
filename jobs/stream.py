"""spark-submit entry point for `churn-spark stream`: real-time warnings (a scheduled or a continuous run).

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/stream.py --conf conf/cluster.yaml --trigger available-now
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
