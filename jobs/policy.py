"""spark-submit entry point for `churn-spark policy`: learn a retention policy from the logged,
matured actions, judge it off-policy against the baselines, and promote it if it beats the rule table.

    spark-submit --packages io.delta:delta-spark_2.13:4.0.0 --py-files churn_spark.zip \
        jobs/policy.py --conf conf/cluster.yaml
"""

import sys

from churn_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["policy", *sys.argv[1:]]))
