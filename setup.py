"""Packaging for churn-spark.

``install_requires`` holds ranges wide enough for the Spark runtimes the wheel is installed
into (the Databricks ML runtimes on Spark 4.x, a cluster with its own Spark), so that
``pip install churn_spark-*.whl`` there keeps the runtime's own pyarrow, numpy, pandas, torch
and MLflow. Spark itself is not a requirement: a Databricks runtime or a Spark installed from
its tarball has pyspark and Delta's Python module on the path without pip knowing about them,
and a requirement on ``pyspark`` or ``delta-spark`` would make pip install a second pyspark
from PyPI over the running one. The ``spark`` extra brings them into a plain Python
environment; ``local`` is the exact line ``install.sh`` sets up.

petastorm is deliberately absent everywhere: petastorm 0.13.1 declares ``setuptools<70`` while
torch needs ``setuptools>=77``, so pip cannot resolve both in one step. ``install.sh`` installs
petastorm with ``--no-deps`` in its own step, after the real needs it has (the ``petastorm``
extra, ``PETASTORM_NEEDS``) are installed here.
"""

from setuptools import find_packages, setup

# Lower bounds: what the code needs and the local line; upper bounds only where a major version
# is known to break (pandas 3 breaks pyspark.pandas; numpy 3, torch 3, MLflow 4 are unreleased).
# The Databricks ML runtimes ship MLflow as the mlflow-skinny distribution (17.3 LTS ML:
# mlflow-skinny 3.0.1, no "mlflow"): a requirement on "mlflow" would install the full package
# and a newer skinny over it.
CORE = [
    "pyarrow>=14",
    "numpy>=1.26,<3",
    "pandas>=2.2,<3",
    "fsspec>=2023.5",
    "pydantic>=2.6,<3",
    "PyYAML>=6",
    "torch>=2.2,<3",
    "tqdm>=4.60",
    # Review sentiment: models that ship inside the packages (nothing downloaded at run time).
    "vaderSentiment==3.3.2",
    "snownlp==0.12.3",
    # Training, evaluation and tracking (scipy: BG/NBD's likelihood and hypergeometric function).
    "scipy>=1.11",
    "scikit-learn>=1.4,<1.8",
    "lightgbm>=4.3,<5",
    "mlflow-skinny>=2.14,<4",
    "matplotlib>=3.8,<3.11",
    "torchmetrics>=1.3,<2",
    # churn-spark tune: TPE and median pruning (the Databricks ML runtimes ship it).
    "optuna>=3.5,<5",
]

# For a Python environment without Spark. delta-spark pins pyspark to the minor lines its jars
# are built for (4.4.x: pyspark <= 4.2.0), so pip picks a matching pair; delta-spark 4.4.1 is on
# PyPI without its jars on Maven Central, so a session built with it cannot start.
SPARK = [
    "pyspark>=4.0,<5",
    "delta-spark>=4.0,<5,!=4.4.1",
]

# The line install.sh sets up, exactly. petastorm 0.13.1 imports pyarrow.filesystem and calls
# ParquetDataset(validate_schema=...), both gone after pyarrow 14, which fixes the rest of it:
# pyspark 4.0.x (4.1 needs pyarrow >= 15), delta-spark 4.0.x, numpy 1.26, pandas 2.2. The full
# mlflow (its tracking server and UI) depends on the mlflow-skinny of the same version.
LOCAL = [
    "pyspark==4.0.1",
    "delta-spark==4.0.0",
    "pyarrow==14.0.2",
    "numpy==1.26.4",
    "pandas==2.2.3",
    "mlflow==2.22.4",
]

# What petastorm 0.13.1 really imports (its own metadata is not used, see above).
PETASTORM_NEEDS = [
    "dill>=0.2.1",
    "diskcache>=3.0.0",
    "future>=0.10.2",
    "psutil>=4.0.0",
    "pyzmq>=14.0.0",
    "six>=1.5.0",
    "packaging",
]

# Object stores for the files under the lakehouse (churn_spark.storage, the training ranks):
# fsspec's implementations for s3:// and s3a://, and abfs:// and abfss://.
S3 = ["s3fs>=2023.5"]
AZURE = ["adlfs>=2023.4"]

DEV = [
    "pytest>=8",
    "pytest-timeout>=2.2",
    # The suite runs on every core (pytest.ini: -n auto): one Spark session per worker process.
    "pytest-xdist>=3.5",
    "duckdb>=1.0",
    "ruff>=0.15",
    # The object-store tests: an S3-compatible server on loopback, and s3a:// read from Python.
    "moto[server]>=5.0,<6",
    *S3,
]

setup(
    name="churn-spark",
    version="0.1.0",
    description="Churn early-warning for e-commerce: Spark + Delta Lake jobs, "
    "Petastorm-fed PyTorch DDP training, pandas-UDF scoring.",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["churn_spark", "churn_spark.*"]),
    package_data={"churn_spark": ["data/*"]},
    install_requires=CORE,
    extras_require={
        "spark": SPARK,
        "local": SPARK + LOCAL + PETASTORM_NEEDS,
        "petastorm": PETASTORM_NEEDS,
        "s3": S3,
        "azure": AZURE,
        "dev": DEV,
    },
    entry_points={"console_scripts": ["churn-spark=churn_spark.cli:main"]},
)
