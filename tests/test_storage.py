"""churn_spark.storage on real filesystems (local disk, ``file:`` URIs, fsspec's in-memory one),
the one spelling of a lakehouse location, and a scan proving no library code outside
storage.py touches files through the local-file APIs."""

from __future__ import annotations

import ast
import math
import os
import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

import churn_spark
from churn_spark import storage, tables
from churn_spark.config import load_config
from churn_spark.train.bundle import Bundle
from tests.conftest import ROOT, TEST_SETTINGS


@pytest.fixture(params=["path", "file:///", "file:/", "memory://"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh folder, spelt as a plain path, a ``file:`` URI either way, or an in-memory URI."""
    if request.param == "memory://":
        return f"memory://test-{uuid.uuid4().hex}"
    return {"path": "", "file:///": "file://", "file:/": "file:"}[request.param] + str(tmp_path / "root")


def test_files_are_written_read_listed_and_removed_the_same_way_everywhere(root: str) -> None:
    storage.write_text(storage.join(root, "a", "b", "notes.txt"), "héllo")  # folders made as needed
    storage.write_bytes(storage.join(root, "a", "data.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, "top.json"), "{}")

    assert storage.read_text(storage.join(root, "a", "b", "notes.txt")) == "héllo"
    assert storage.read_bytes(storage.join(root, "a", "data.bin")) == b"\x00\x01"
    assert storage.listdir(root) == ["a", "top.json"]
    assert storage.listdir(storage.join(root, "a")) == ["b", "data.bin"]
    assert storage.listdir(storage.join(root, "nowhere")) == []
    assert storage.find(root) == ["a/b/notes.txt", "a/data.bin", "top.json"]
    assert (storage.isdir(storage.join(root, "a")), storage.isdir(storage.join(root, "top.json"))) == (True, False)
    assert (storage.exists(storage.join(root, "top.json")), storage.exists(storage.join(root, "no.json"))) == (
        True, False)

    storage.remove(storage.join(root, "a"))
    storage.remove(storage.join(root, "a"))  # nothing there: nothing to do
    assert storage.find(root) == ["top.json"]


def test_an_atomic_write_replaces_the_file_whole_and_leaves_nothing_beside_it(root: str) -> None:
    target = storage.join(root, "runs", "LATEST")
    storage.write_atomically(target, "20260101T000000")
    storage.write_atomically(target, b"20260202T000000")
    assert storage.read_text(target) == "20260202T000000"
    assert storage.listdir(storage.join(root, "runs")) == ["LATEST"]  # no temporary file left


def test_a_folder_is_moved_whole_with_or_without_real_folders(root: str) -> None:
    """One rename on a local disk; object by object on a store without folders (memory://, as S3)."""
    source, target = storage.join(root, ".staging"), storage.join(root, "2026-03-01")
    storage.write_text(storage.join(source, "_export.json"), '{"pseudonymised": true}')
    storage.write_text(storage.join(source, "csv", "part-0.csv"), "user_id\na\n")
    fs, base = storage.filesystem(root)
    storage.move_folder(fs, storage.filesystem(source)[1], storage.filesystem(target)[1])
    assert storage.find(target) == ["_export.json", "csv/part-0.csv"]
    assert storage.read_text(storage.join(target, "csv", "part-0.csv")) == "user_id\na\n"
    assert (storage.exists(source), storage.listdir(root)) == (False, ["2026-03-01"])
    assert storage.renames(fs) == (not root.startswith("memory://"))


def test_on_a_local_disk_the_atomic_write_is_a_rename_over_the_old_file(tmp_path: Path) -> None:
    """A new file renamed over the old one (a new inode), never the old one truncated and rewritten."""
    target = tmp_path / "LATEST"
    storage.write_atomically(f"file://{target}", "old")
    before = os.stat(target).st_ino
    storage.write_atomically(f"file://{target}", "new")
    assert (target.read_text(), os.stat(target).st_ino != before) == ("new", True)
    storage.write_text(str(target), "rewritten")  # the plain write, for contrast: the same file
    assert (target.read_text(), os.stat(target).st_ino) == ("rewritten", os.stat(target).st_ino)


def test_a_folder_is_copied_between_filesystems_and_downloaded_for_local_only_libraries(tmp_path: Path) -> None:
    source = f"memory://copy-{uuid.uuid4().hex}/report"
    files = {"metrics.json": b'{"auc": 0.8}', "plots/roc.png": b"\x89PNG"}
    for name, data in files.items():
        storage.write_bytes(storage.join(source, name), data)

    target = f"file://{tmp_path}/latest"
    storage.copy_folder(source, target)
    assert {n: (tmp_path / "latest" / n).read_bytes() for n in storage.find(target)} == files

    with storage.local_copy(source) as local:
        copied = {str(p.relative_to(local)): p.read_bytes() for p in Path(local).rglob("*") if p.is_file()}
        assert (Path(local).name, copied) == ("report", files)
    assert not Path(local).exists()  # the temporary copy is gone
    with storage.local_copy(storage.join(source, "metrics.json")) as local:
        assert Path(local).read_bytes() == files["metrics.json"]
    with storage.local_copy(target) as local:  # already local: the folder itself, not a copy
        assert local == str(tmp_path / "latest")


def test_a_bundle_round_trips_through_an_in_memory_store() -> None:
    from tests.test_score import A, B, frame, lr_bundle

    uri = f"memory://bundles-{uuid.uuid4().hex}/run/lr.pt"
    lr_bundle().save(uri)
    loaded = Bundle.load(uri)
    assert (loaded.kind, loaded.threshold) == ("lr", 0.5)
    assert loaded.predict_proba(frame([A, B])) == pytest.approx([1 / (1 + math.exp(-5.3)), 1 / (1 + math.exp(4.7))])
    assert storage.listdir(uri.rsplit("/", 1)[0]) == ["lr.pt"]


def test_local_paths_of_locations() -> None:
    assert storage.local_path("file:///abs/x") == "/abs/x"
    assert storage.local_path("file:/abs/x") == "/abs/x"
    assert storage.local_path("dbfs:/churn/lakehouse") == "/dbfs/churn/lakehouse"  # Databricks' FUSE mount
    assert storage.local_path("/Volumes/main/churn/files") == "/Volumes/main/churn/files"
    assert storage.local_path("relative/x") == "relative/x"
    assert [storage.local_path(u) for u in ("s3a://b/x", "hdfs:///x", "abfss://c@a.dfs.core.windows.net/x")] == [
        None, None, None]


def test_every_spelling_of_a_local_lakehouse_is_one_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spellings = [f"file://{tmp_path}/lakehouse", f"file:{tmp_path}/lakehouse", f"{tmp_path}/lakehouse",
                 "lakehouse", "./lakehouse/", f"file://{tmp_path}/lakehouse/"]
    for spelling in spellings:
        config = load_config(ROOT / "conf" / "local.yaml", [f"lakehouse={spelling}", f"landing={spelling}"])
        assert (config.location("events"), config.table("quarantine"), config.landing_location("demo")) == (
            f"file:{tmp_path}/lakehouse/events", f"file:{tmp_path}/lakehouse/quarantine",
            f"file:{tmp_path}/lakehouse/demo"), spelling
    for remote in ("s3a://bucket/churn/", "hdfs:///data/churn", "dbfs:/churn", "/Volumes/main/churn/files"):
        config = load_config(ROOT / "conf" / "local.yaml", [f"lakehouse={remote}"])
        assert config.location("models") == remote.rstrip("/") + "/models"


def test_delta_takes_a_file_uri_lakehouse_and_its_plain_path_as_one_table(spark: SparkSession, tmp_path: Path) -> None:
    """Delta refused ``file:///x`` (DELTA_AMBIGUOUS_PATHS_IN_CREATE_TABLE): it records ``file:/x``."""
    for spelling in (f"file://{tmp_path}/lakehouse", str(tmp_path / "lakehouse")):
        config = load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, f"lakehouse={spelling}"])
        tables.ensure_table(spark, config, "first_events")
        assert tables.read_table(spark, config, "first_events").count() == 0
    assert storage.listdir(str(tmp_path / "lakehouse")) == ["first_events"]


def test_object_store_options_come_from_the_spark_settings_that_reach_the_same_bucket() -> None:
    config = load_config(ROOT / "conf" / "local.yaml", [
        "spark.settings.spark.hadoop.fs.s3a.endpoint=127.0.0.1:9000",
        "spark.settings.spark.hadoop.fs.s3a.connection.ssl.enabled=false",
        "spark.settings.spark.hadoop.fs.s3a.access.key=churn",
        "spark.settings.spark.hadoop.fs.s3a.secret.key=secret",
        "spark.settings.spark.hadoop.fs.s3a.path.style.access=true",
    ])
    expected = {"endpoint_url": "http://127.0.0.1:9000", "key": "churn", "secret": "secret",
                "config_kwargs": {"s3": {"addressing_style": "path"}}}
    assert storage.storage_options("s3a://bucket/churn", config) == expected
    assert storage.storage_options("s3://bucket/churn", config) == expected
    assert storage.storage_options("hdfs:///data/churn", config) == {}  # the environment's defaults
    assert storage.storage_options("s3a://bucket/churn", None) == {}
    tls = load_config(ROOT / "conf" / "local.yaml", ["spark.settings.spark.hadoop.fs.s3a.endpoint=minio:9000"])
    assert storage.storage_options("s3a://b/x", tls) == {"endpoint_url": "https://minio:9000"}


# --- No local-file API on a lakehouse location --------------------------------------------------

# The uses of local-file APIs that are not about lakehouse locations, by (file, function). Any
# other use in the library fails the scan: files under the lakehouse go through storage.py.
ALLOWED = {
    # Reading the YAML configuration, mapping files and the docs' examples: files of the checkout.
    ("churn_spark/config.py", "<module>"): "DEFAULT_CONF = Path('conf/local.yaml')",
    ("churn_spark/config.py", "load_config"): "the YAML file named by --conf",
    ("churn_spark/sources.py", "<module>"): "SOURCES_DIR = Path('conf/sources')",
    ("churn_spark/sources.py", "load_source_file"): "a mapping file named by --source-file",
    ("churn_spark/docs.py", "<module>"): "pathlib, for the YAML examples quoted in the docs",
    ("churn_spark/docs.py", "mapping_examples_markdown"): "reads conf/sources/*.yaml into the docs",
    # Spark's console output: a file of this process under the system temp folder; the JDK.
    ("churn_spark/cli.py", "main"): "says where the console log is",
    ("churn_spark/cli.py", "_console_log"): "names the console log",
    ("churn_spark/spark.py", "_console_to"): "opens the console log",
    ("churn_spark/spark.py", "_ensure_supported_java"): "looks for a JDK 17/21 on this machine",
    ("churn_spark/spark.py", "hadoop_aws_package"): "reads the Hadoop version off pyspark's installed jars",
    # torchrun's launcher hands its ranks their parameters as pickles in a local temp folder.
    ("churn_spark/train/distributed.py", "_torchrun"): "writes the pickles, reads the result",
    ("churn_spark/train/distributed.py", "<module>"): "a rank reads them (python -m ... PARAMS RESULT)",
}
_MODULES = {"pathlib", "shutil"}
_CALLS = {"open", "Path"}
_OS = {"path", "makedirs", "mkdir", "replace", "rename", "remove", "unlink", "rmdir", "listdir", "scandir",
       "walk", "open", "access", "chmod"}


def local_file_uses(source: str) -> list[tuple[str, int, str]]:
    """(enclosing function, line, what) of each local-file API used in ``source``."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = node.name
        what = None
        if isinstance(node, ast.Import):
            what = next((a.name for a in node.names if a.name.split(".")[0] in _MODULES | {"os.path"}), None)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _MODULES or node.module == "os.path":
                what = f"from {node.module} import"
            elif node.module == "os" and any(a.name in _OS for a in node.names):
                what = "from os import"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
            what = f"{node.func.id}("
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
              and node.attr in _OS):
            what = f"os.{node.attr}"
        if what is not None:
            found.append((scope, node.lineno, what))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), "<module>")
    return found


def _library_uses() -> dict[tuple[str, str], list[str]]:
    uses: dict[tuple[str, str], list[str]] = {}
    package = Path(churn_spark.__file__).parent  # the installed package (CI runs the wheel's)
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package.parent).as_posix()
        if name == "churn_spark/storage.py":
            continue
        for scope, line, what in local_file_uses(path.read_text()):
            uses.setdefault((name, scope), []).append(f"{name}:{line} {what}")
    return uses


def test_the_scan_finds_each_kind_of_local_file_api() -> None:
    source = ("import shutil\nfrom pathlib import Path\n\n"
              "def report(config):\n    reports = Path(config.location('reports'))\n"
              "    with open(reports) as f:\n        pass\n    os.makedirs(reports)\n    os.path.join(reports, 'x')\n"
              "    fs.open(reports)\n    storage.exists(reports)\n")
    assert local_file_uses(source) == [
        ("<module>", 1, "shutil"), ("<module>", 2, "from pathlib import"), ("report", 5, "Path("),
        ("report", 6, "open("), ("report", 8, "os.makedirs"), ("report", 9, "os.path")]


def test_no_local_file_api_outside_storage_and_the_allowed_uses() -> None:
    uses = _library_uses()
    forbidden = [hit for key, hits in uses.items() if key not in ALLOWED for hit in hits]
    assert forbidden == [], "use churn_spark.storage for files under the lakehouse:\n" + "\n".join(forbidden)
    assert sorted(set(ALLOWED) - set(uses)) == []  # every allowance is still needed
