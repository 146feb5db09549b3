"""Every file under the lakehouse and the landing folder, through one filesystem layer (fsspec).

A location is a local path, a ``file:`` URI or a remote URI (``s3a://``, ``hdfs://``,
``abfss://``, ``dbfs:/``, ``memory://``), and every function here takes any of them the same
way: ``filesystem(uri)`` resolves it to an fsspec filesystem and the path on it, and the
other functions are the handful of operations the pipeline needs on files (read, write whole,
write-then-rename, list, copy, remove) and a local copy for libraries that read local files
only (MLflow's ``log_artifacts``). ``dbfs:/x`` is read through the Databricks FUSE mount
``/dbfs/x`` (Spark keeps ``dbfs:/x``); ``/Volumes/...`` is a plain path on Databricks.

Why fsspec and not ``pyarrow.fs``: petastorm and ``churn_spark.exports`` already use fsspec,
and its registry covers every scheme the lakehouse may have: ``s3``/``s3a`` (s3fs), ``hdfs``
(pyarrow underneath), ``abfs``/``abfss`` (adlfs), and a real in-memory filesystem
(``memory://``) for tests. ``pyarrow.fs.FileSystem.from_uri`` knows neither ``s3a`` nor
``memory`` nor, in pyarrow 14, Azure, and ties the storage code to the pyarrow line that
petastorm freezes. ``pyarrow.dataset`` takes an fsspec filesystem as it is, and petastorm and
pandas take the same ``storage_options`` dict, so a training rank reaches the training cache with
the options the driver used (``storage_options``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlparse

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import known_implementations

if TYPE_CHECKING:
    from churn_spark.config import Config

# A Config (options from its Spark settings), the options ``storage_options`` returned (what a
# training rank is handed: it has no Config), or None (the environment's defaults).
Where = Union["Config", Mapping[str, Any], None]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_RENAMING = {"file", "local", "hdfs", "viewfs"}  # filesystems whose rename is atomic (or nearly: HDFS)
_LOCAL = LocalFileSystem()
if "abfss" not in known_implementations:  # adlfs serves abfss:// as it does abfs://
    fsspec.register_implementation("abfss", "adlfs.AzureBlobFileSystem",
                                   errtxt="Install adlfs to access abfss:// locations")


def is_uri(location: str) -> bool:
    """Whether ``location`` names a scheme (``file:``, ``s3a:``, ...) rather than a plain path."""
    return bool(_SCHEME.match(location))


def canonical(location: str) -> str:
    """The one spelling of ``location`` that Spark, Delta and this module all use.

    ``file:///abs/x``, ``file:/abs/x``, ``/abs/x`` and a relative path become ``file:/abs/x``
    (Hadoop's own spelling, the one Delta records: two spellings of one folder make Delta refuse
    a CREATE TABLE); ``/Volumes/...`` stays a plain path (Databricks reads it as is); any other
    URI is kept. A trailing ``/`` is dropped.
    """
    location = location.rstrip("/") or "/"
    if location.startswith("/Volumes/"):
        return location
    if location.startswith("file:"):
        location = urlparse(location).path
    elif is_uri(location):
        return location
    return "file:" + os.path.abspath(location)


def local_path(uri: str) -> str | None:
    """The local path of ``uri`` (``file:`` URIs, plain paths, ``dbfs:/`` through its FUSE
    mount), or None for a remote URI."""
    if uri.startswith("file:"):
        return urlparse(uri).path
    if uri.startswith("dbfs:"):
        return "/dbfs/" + uri[len("dbfs:"):].lstrip("/")
    return None if is_uri(uri) else uri


def join(uri: str, *names: str) -> str:
    """``uri`` with ``names`` appended, ``/``-separated (``join("s3a://b/x", "y")``)."""
    return "/".join([uri.rstrip("/"), *names])


def storage_options(uri: str, config: Config | None = None) -> dict[str, Any]:
    """The fsspec options for ``uri``: for ``s3``/``s3a``, the endpoint, keys and path-style
    access of the Spark settings ``spark.hadoop.fs.s3a.*`` (so Python reaches the bucket Spark
    does); otherwise, or where they are not set, the filesystem's defaults from the environment."""
    if config is None or urlparse(uri).scheme not in ("s3", "s3a"):
        return {}
    settings = {k.removeprefix("spark.hadoop.fs.s3a."): v for k, v in config.spark.settings.items()
                if k.startswith("spark.hadoop.fs.s3a.")}
    options: dict[str, Any] = {}
    if "endpoint" in settings:
        endpoint = settings["endpoint"]
        if "://" not in endpoint:  # Hadoop takes host:port, with TLS unless turned off
            tls = settings.get("connection.ssl.enabled", "true") != "false"
            endpoint = f"{'https' if tls else 'http'}://{endpoint}"
        options["endpoint_url"] = endpoint
    if "access.key" in settings and "secret.key" in settings:
        options["key"], options["secret"] = settings["access.key"], settings["secret.key"]
    if settings.get("path.style.access") == "true":
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def filesystem(uri: str, config: Where = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem holding ``uri`` and the path on it."""
    local = local_path(uri)
    if local is not None:
        return _LOCAL, os.path.abspath(local)
    options = dict(config) if isinstance(config, Mapping) else storage_options(uri, config)
    return fsspec.core.url_to_fs(uri, **options)


def read_bytes(uri: str, config: Where = None) -> bytes:
    fs, path = filesystem(uri, config)
    return fs.cat_file(path)


def read_text(uri: str, config: Where = None) -> str:
    return read_bytes(uri, config).decode("utf-8")


def write_bytes(uri: str, data: bytes, config: Where = None) -> None:
    """Write ``data`` to ``uri``, making the folders above it where the filesystem has folders."""
    fs, path = filesystem(uri, config)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, data)


def write_text(uri: str, text: str, config: Where = None) -> None:
    write_bytes(uri, text.encode("utf-8"), config)


def renames(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` has real folders and renames (a local disk, HDFS) rather than objects."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & _RENAMING)


def move_folder(fs: AbstractFileSystem, source: str, target: str) -> None:
    """Move folder ``source`` to ``target`` on ``fs``: one rename where folders are real; on an
    object store, which has neither folders nor renames, each object is copied and then the
    source deleted (Spark's folder-marker objects, which s3fs cannot move, are left to go with it)."""
    if renames(fs):
        fs.mv(source, target, recursive=True)
        return
    base = source.rstrip("/") + "/"
    for path in fs.find(source):
        if path.startswith(base) and not path.endswith("/"):
            fs.copy(path, target.rstrip("/") + "/" + path[len(base):])
    fs.rm(source, recursive=True)


def write_atomically(uri: str, data: str | bytes, config: Where = None) -> None:
    """Write ``data`` so that readers see the old content or the new, never a part: a temporary
    file beside ``uri`` renamed over it where renames are atomic (a local disk, HDFS); one PUT
    of the whole object on an object store, which replaces an object whole."""
    fs, path = filesystem(uri, config)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if not renames(fs):
        fs.pipe_file(path, payload)
        return
    folder = posixpath.dirname(path)
    fs.makedirs(folder, exist_ok=True)
    temporary = posixpath.join(folder, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    fs.pipe_file(temporary, payload)
    fs.mv(temporary, path)


def exists(uri: str, config: Where = None) -> bool:
    fs, path = filesystem(uri, config)
    return fs.exists(path)


def isdir(uri: str, config: Where = None) -> bool:
    fs, path = filesystem(uri, config)
    return fs.isdir(path)


def listdir(uri: str, config: Where = None) -> list[str]:
    """The names in folder ``uri``, sorted; none where there is no such folder."""
    fs, path = filesystem(uri, config)
    if not fs.isdir(path):
        return []
    return sorted(posixpath.basename(entry.rstrip("/")) for entry in fs.ls(path, detail=False))


def find(uri: str, config: Where = None) -> list[str]:
    """Every file under folder ``uri`` (at any depth), as paths relative to it, sorted."""
    fs, path = filesystem(uri, config)
    base = path.rstrip("/") + "/"
    return sorted(entry[len(base):] for entry in fs.find(path) if entry.startswith(base))


def makedirs(uri: str, config: Where = None) -> None:
    fs, path = filesystem(uri, config)
    fs.makedirs(path, exist_ok=True)


def remove(uri: str, config: Where = None) -> None:
    """Delete the file or folder tree at ``uri``; nothing where there is none."""
    fs, path = filesystem(uri, config)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def copy_folder(source: str, target: str, config: Where = None) -> None:
    """Copy every file under ``source`` to the same place under ``target`` (any two filesystems)."""
    for name in find(source, config):
        write_bytes(join(target, name), read_bytes(join(source, name), config), config)


@contextlib.contextmanager
def local_copy(uri: str, config: Where = None) -> Iterator[str]:
    """A local path holding the file or folder ``uri``, for libraries that read local files only:
    the path itself where it is local, else a copy in a temporary folder, removed afterwards."""
    local = local_path(uri)
    if local is not None:
        yield os.path.abspath(local)
        return
    fs, path = filesystem(uri, config)
    with tempfile.TemporaryDirectory(prefix="churn-spark-") as folder:
        target = os.path.join(folder, posixpath.basename(path.rstrip("/")))
        if not fs.isdir(path):
            fs.get_file(path, target)
            yield target
            return
        os.makedirs(target)
        for name in find(uri, config):
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            fs.get_file(posixpath.join(path, name), os.path.join(target, name))
        yield target


def nearest_existing(path: str) -> str:
    """``path`` or the nearest folder above it that exists (a local path)."""
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def writable(path: str) -> bool:
    """Whether the local folder ``path`` can be written (``os.access`` reports a read-only file
    system even to root, unlike permission bits)."""
    return os.access(path, os.W_OK | os.X_OK)
