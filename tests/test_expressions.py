"""The allow-list of Spark SQL functions that a source mapping may call, read statically."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from churn_spark.expressions import ALLOWED, REFUSED, check_expression


@pytest.mark.parametrize("expression", [
    "concat_ws(':', InvoiceNo, StockCode, CAST(Quantity AS STRING))",
    "CAST(CAST(CustomerID AS BIGINT) AS STRING)",
    "CASE WHEN InvoiceNo LIKE 'C%' THEN -Quantity ELSE Quantity END",
    "sha2(concat_ws('|', customer, day, time, item), 256)",
    "try_divide(sales_value, abs(quantity))",
    "CAST(x AS DECIMAL(10, 2)) + 1",
    "x IN ('a', 'b') AND NOT (y BETWEEN 1 AND 2)",
    "transform(split(tags, ','), t -> upper(trim(t)))",
    "EXTRACT(YEAR FROM (ts))",
    "'java_method(' || note",                # a call inside a string literal runs nothing
    "`select`",                              # a backquoted column named like a keyword
    "unix_timestamp(day, 'yyyy-MM-dd')",
])
def test_ordinary_mapping_expressions_pass(expression: str) -> None:
    assert check_expression(expression) is None


@pytest.mark.parametrize("expression, refusal", [
    ("java_method('java.lang.System', 'getenv', 'CHURN_EXPORT_SALT')",
     "java_method() is not allowed (calls Java code)"),
    ("reflect('java.lang.System', 'getenv', 'X')", "reflect() is not allowed (calls Java code)"),
    ("TRY_REFLECT('java.lang.System', 'getenv', 'X')", "TRY_REFLECT() is not allowed (calls Java code)"),
    ("JAVA_METHOD /* hidden */ ('a', 'b')", "JAVA_METHOD() is not allowed (calls Java code)"),
    ("`java_method`('a', 'b')", "java_method() is not allowed (calls Java code)"),
    ("r'\\' || java_method('a', 'b')", "java_method() is not allowed (calls Java code)"),
    ("identifier('java_method')('a', 'b')", "identifier() is not an allowed function (see churn_spark/expressions.py)"),
    ("system.builtin.upper(x)", "builtin.upper(): qualified function names are not allowed"),
    ("input_file_name()", "input_file_name() is not allowed (reads the landing file's name, not the row)"),
    ("_metadata.file_path", "_metadata: file metadata is not allowed (backquote a column of that name)"),
    ("(SELECT max(x) FROM parquet.`/etc`)", "SELECT: a subquery is not allowed (backquote a column of that name)"),
    ("CAST(monotonically_increasing_id() AS STRING)",
     "monotonically_increasing_id() is not allowed (not deterministic: values change between runs and file splits)"),
    ("uuid()", "uuid() is not allowed (not deterministic: values change between runs and file splits)"),
    ("current_timestamp()", "current_timestamp() is not allowed (depends on when it runs)"),
    ("unix_timestamp()", "unix_timestamp() without arguments is not allowed (depends on when it runs)"),
    ("row_number() OVER (ORDER BY x)", "row_number() is not an allowed function (see churn_spark/expressions.py)"),
    ("explode(items)", "explode() is not allowed (makes rows, not a value)"),
    ("my_udf(x)", "my_udf() is not an allowed function (see churn_spark/expressions.py)"),
    ("'abc", "unterminated ' quote"),
])
def test_refused_expressions_name_the_function(expression: str, refusal: str) -> None:
    assert check_expression(expression) == refusal


def test_every_listed_function_is_a_spark_builtin(spark: SparkSession) -> None:
    builtins = {r.function for r in spark.sql("SHOW SYSTEM FUNCTIONS").collect()}
    assert sorted(ALLOWED - builtins - {"cast", "try_cast"}) == []
    assert sorted(set(REFUSED) - builtins) == []
