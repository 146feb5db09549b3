"""Packaging for churn-spark.

petastorm is deliberately absent from ``install_requires``: petastorm 0.13.1 declares
``setuptools<70`` while torch needs ``setuptools>=77``, so pip cannot resolve both in one
step. ``install.sh`` installs petastorm with ``--no-deps`` in its own step, after the real
needs it has (listed in ``PETASTORM_NEEDS``) are installed here.
"""

from setuptools import find_packages, setup

# petastorm 0.13.1 imports pyarrow.filesystem and calls ParquetDataset(validate_schema=...),
# both gone after pyarrow 14, which fixes the rest of the line: pyspark 4.0.x (4.1 needs
# pyarrow >= 15), delta-spark 4.0.x, numpy 1.26, pandas 2.2.
CORE = [
    "pyspark==4.0.1",
    "delta-spark==4.0.0",
    "pyarrow==14.0.2",
    "numpy==1.26.4",
    "pandas==2.2.3",
    "pydantic>=2.6,<3",
    "PyYAML>=6",
    "torch>=2.2,<3",
    "tqdm>=4.60",
    # Review sentiment: models that ship inside the packages (nothing downloaded at run time).
    "vaderSentiment==3.3.2",
    "snownlp==0.12.3",
    # Training, evaluation and tracking.
    "scikit-learn>=1.4,<1.8",
    "lightgbm>=4.3,<5",
    "mlflow>=2.14,<3",
    "matplotlib>=3.8,<3.11",
    "torchmetrics>=1.3,<2",
]

# What petastorm 0.13.1 really imports (its own metadata is not used, see above).
PETASTORM_NEEDS = [
    "dill>=0.2.1",
    "diskcache>=3.0.0",
    "future>=0.10.2",
    "psutil>=4.0.0",
    "pyzmq>=14.0.0",
    "six>=1.5.0",
    "fsspec",
    "packaging",
]

DEV = [
    "pytest>=8",
    "pytest-timeout>=2.2",
    "duckdb>=1.0",
]

setup(
    name="churn-spark",
    version="0.1.0",
    description="Churn early-warning for e-commerce: Spark + Delta Lake jobs, "
    "Petastorm-fed PyTorch DDP training, pandas-UDF scoring.",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["churn_spark", "churn_spark.*"]),
    package_data={"churn_spark": ["data/*"]},
    install_requires=CORE + PETASTORM_NEEDS,
    extras_require={"dev": DEV},
    entry_points={"console_scripts": ["churn-spark=churn_spark.cli:main"]},
)
