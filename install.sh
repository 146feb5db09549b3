#!/usr/bin/env bash
# Sets churn-spark up in ./.venv: the library, its console script, test tools, and petastorm.
# Usage: ./install.sh            (then: .venv/bin/churn-spark run-all)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# pyspark 4.0 fails on Java 25 ("getSubject is not supported"); it needs JDK 17 (or 21).
if ! ls /usr/lib/jvm/*17* >/dev/null 2>&1 && ! java -version 2>&1 | grep -qE 'version "(17|21)'; then
  echo "install.sh: JDK 17 not found; install openjdk-17-jdk-headless first" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check"

$PIP install -q --upgrade pip wheel "setuptools>=77"
# Step 1: the project on the exact local line (the [local] extra: pyspark, Delta, pyarrow 14 and
# the rest, petastorm's own needs included) and the test tools.
$PIP install -q -e ".[local,dev]"
# Step 2: petastorm alone. Its metadata pins setuptools<70, which torch (>=77) contradicts;
# everything it imports was installed in step 1 (see PETASTORM_NEEDS in setup.py).
$PIP install -q --no-deps "petastorm==0.13.1"

.venv/bin/python -c "import pyspark, delta, petastorm, torch; print('churn-spark installed: pyspark', pyspark.__version__, '| torch', torch.__version__, '| petastorm', petastorm.__version__)"
