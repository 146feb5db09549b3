"""Which Spark SQL a source mapping may run: an allow-list of functions, checked statically.

A mapping's expressions come from a YAML file, and Spark SQL can call Java
(``java_method``), read files (a subquery over ``parquet.`/path```), or make ids that
change between runs (``monotonically_increasing_id``). ``check_expression`` reads an
expression as text, before any session exists: string literals, comments and
backquoted names are taken out, then every name followed by ``(`` must be an allowed
function (or a keyword such as ``IN (``), and subqueries are refused.
"""

from __future__ import annotations

import re

# Deterministic, row-local Spark SQL functions: text, numbers, dates, hashes, arrays, maps, JSON.
ALLOWED = frozenset("""
abs acos acosh add_months array array_append array_compact array_contains array_distinct array_except
array_insert array_intersect array_join array_max array_min array_position array_prepend array_remove
array_repeat array_size array_sort array_union arrays_overlap arrays_zip ascii asin asinh atan atan2
atanh base64 bigint bin binary bit_count bit_get bit_length boolean bround btrim cardinality cast cbrt
ceil ceiling char char_length character_length chr coalesce concat concat_ws contains conv
convert_timezone cos cosh cot crc32 csc date date_add date_diff date_format date_from_unix_date
date_part date_sub date_trunc dateadd datediff datepart day dayname dayofmonth dayofweek dayofyear
decimal decode degrees double e element_at elt encode endswith equal_null exp expm1 extract factorial
filter find_in_set flatten float floor forall format_number format_string from_csv from_json
from_unixtime from_utc_timestamp get get_json_object getbit greatest hash hex hour hypot if ifnull
initcap instr int isnan isnotnull isnull json_array_length json_object_keys last_day lcase least
left len length levenshtein ln locate log log10 log1p log2 lower lpad ltrim make_date
make_dt_interval make_interval make_timestamp make_timestamp_ltz make_timestamp_ntz make_ym_interval
map map_concat map_contains_key map_entries map_filter map_from_arrays map_from_entries map_keys
map_values map_zip_with md5 minute mod month monthname months_between named_struct nanvl negative
next_day nullif nullifzero nvl nvl2 octet_length overlay parse_json pi pmod position positive pow
power printf quarter radians regexp regexp_count regexp_extract regexp_extract_all regexp_instr
regexp_like regexp_replace regexp_substr repeat replace reverse right rint rlike round rpad rtrim
schema_of_json sec second sequence sha sha1 sha2 shiftleft shiftright shiftrightunsigned sign signum
sin sinh size slice smallint sort_array soundex space split split_part sqrt startswith str_to_map
string struct substr substring substring_index tan tanh timestamp timestamp_micros timestamp_millis
timestamp_seconds tinyint to_binary to_char to_csv to_date to_json
to_number to_timestamp to_timestamp_ltz to_timestamp_ntz to_unix_timestamp to_utc_timestamp
to_varchar transform transform_keys transform_values translate trim trunc try_add try_cast
try_divide try_element_at try_mod try_multiply try_parse_json try_subtract try_to_binary
try_to_number try_to_timestamp try_variant_get typeof ucase unbase64 unhex unix_date unix_micros
unix_millis unix_seconds unix_timestamp upper url_decode url_encode variant_get weekday weekofyear
width_bucket xxhash64 year zeroifnull zip_with exists aggregate reduce is_valid_utf8 make_valid_utf8
""".split())

# Keywords, type names and parser syntax (TIMESTAMPADD(unit, n, ts)) that a "(" may follow.
_KEYWORDS = frozenset("""
and or not in is like ilike any some all between case when then else from for placing both leading
trailing escape div as distinct numeric dec varchar character timestampadd timestampdiff
""".split())

# Functions refused with the reason, so that the message says why.
REFUSED = {
    **dict.fromkeys(("java_method", "reflect", "try_reflect"), "calls Java code"),
    **dict.fromkeys(("input_file_name", "input_file_block_start", "input_file_block_length"),
                    "reads the landing file's name, not the row"),
    **dict.fromkeys(("monotonically_increasing_id", "rand", "randn", "random", "uuid", "shuffle",
                     "spark_partition_id", "uniform", "randstr"),
                    "not deterministic: values change between runs and file splits"),
    **dict.fromkeys(("current_timestamp", "now", "current_date", "curdate", "localtimestamp",
                     "current_timezone"), "depends on when it runs"),
    **dict.fromkeys(("current_user", "user", "session_user", "current_database", "current_schema",
                     "current_catalog", "version"), "reads the environment"),
    **dict.fromkeys(("raise_error", "assert_true"), "aborts the job"),
    **dict.fromkeys(("explode", "explode_outer", "posexplode", "posexplode_outer", "inline",
                     "inline_outer", "stack", "json_tuple"), "makes rows, not a value"),
}
# Names refused wherever they appear: a subquery reads tables or files; _metadata is file metadata.
_QUERY_WORDS = {"select": "a subquery", "table": "a subquery", "values": "a subquery",
                "_metadata": "file metadata"}

_TOKEN = re.compile(r"(?P<space>\s+)|(?P<comment>--[^\n]*)|(?P<block>/\*)|(?P<raw>[rR](?=['\"]))"
                    r"|(?P<quote>['\"`])|(?P<word>\w+)|(?P<punct>.)", re.S)


def check_expression(expression: str) -> str | None:
    """Why ``expression`` may not run in a mapping, or ``None`` when it may.

    Parameters
    ----------
    expression
        A Spark SQL expression, as written in a mapping.

    Returns
    -------
    str or None
        One line naming the refused function or construct.
    """
    try:
        tokens = _tokens(expression)
    except ValueError as err:
        return str(err)
    for i, (kind, text) in enumerate(tokens):
        name = text.lower()
        if kind == "word" and name in _QUERY_WORDS:
            return f"{text}: {_QUERY_WORDS[name]} is not allowed (backquote a column of that name)"
        called = i + 1 < len(tokens) and tokens[i + 1] == ("punct", "(")
        if not called or (kind == "word" and name in _KEYWORDS):
            continue
        if kind == "string":
            return f"{text}(): a quoted name cannot be called"
        if i > 0 and tokens[i - 1] == ("punct", "."):
            return f"{tokens[i - 2][1] if i > 1 else ''}.{text}(): qualified function names are not allowed"
        if name in REFUSED:
            return f"{text}() is not allowed ({REFUSED[name]})"
        if name not in ALLOWED:
            return f"{text}() is not an allowed function (see churn_spark/expressions.py)"
        if name == "unix_timestamp" and i + 2 < len(tokens) and tokens[i + 2] == ("punct", ")"):
            return "unix_timestamp() without arguments is not allowed (depends on when it runs)"
    return None


def _tokens(expression: str) -> list[tuple[str, str]]:
    """Words, quoted names (``quoted``), literals (``string``) and punctuation; no comments."""
    tokens: list[tuple[str, str]] = []
    pos, raw = 0, False
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        assert match is not None  # the last alternative matches any character
        kind = match.lastgroup or "punct"
        if kind == "block":
            pos = _end_of_comment(expression, match.end())
            continue
        if kind == "quote":
            end = _end_of_quote(expression, match.end(), match.group(), raw)
            text = expression[match.end():end - 1]
            tokens.append(("quoted" if match.group() == "`" else "string", text))
            pos, raw = end, False
            continue
        raw = kind == "raw"
        if kind in ("word", "punct"):
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def _end_of_quote(text: str, start: int, quote: str, raw: bool) -> int:
    """The index just past the closing ``quote``; doubled quotes and (not raw) backslashes escape."""
    pos = start
    while pos < len(text):
        char = text[pos]
        if char == "\\" and not raw and quote != "`":
            pos += 2
            continue
        if char == quote:
            if pos + 1 < len(text) and text[pos + 1] == quote:
                pos += 2
                continue
            return pos + 1
        pos += 1
    raise ValueError(f"unterminated {quote} quote")


def _end_of_comment(text: str, start: int) -> int:
    """The index just past a (possibly nested) ``/* ... */`` comment."""
    depth, pos = 1, start
    while pos < len(text):
        if text.startswith("/*", pos):
            depth, pos = depth + 1, pos + 2
        elif text.startswith("*/", pos):
            depth, pos = depth - 1, pos + 2
            if depth == 0:
                return pos
        else:
            pos += 1
    raise ValueError("unterminated /* comment")
