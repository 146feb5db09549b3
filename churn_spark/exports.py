"""Files handed to the operations team: staged, swapped in whole, readable by the owner alone.

Every file operation on ``<lakehouse>/exports`` lives here, on the filesystem that
``churn_spark.storage`` resolves the location to (any URI it takes). An export of one snapshot
date is a folder ``<root>/<date>/`` holding ``csv/``, ``jsonl/`` and ``_export.json`` (how it
was written: pseudonymised or raw user ids). It is written into a hidden staging folder first
and then swapped in with two moves (renames where folders are real; on an object store each
move copies the objects, then deletes the source):

1. ``<date>`` -> ``.<date>.previous`` (when there is one),
2. ``.<date>.staging-<token>`` -> ``<date>``,
3. ``.<date>.previous`` deleted.

A kill at any point leaves either the old export or the new one under ``<date>`` (or, between
the two renames, the old one under ``.<date>.previous``); ``recover`` puts that back before the
next write, and deletes what a killed write left (a staging folder, Spark's ``_temporary``).
A write that fails removes its staging folder and leaves the old export as it was. Files are
600 and folders 700 (on a local filesystem, where POSIX modes apply).
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from churn_spark import storage

log = logging.getLogger(__name__)

MANIFEST = "_export.json"
FILE_MODE, FOLDER_MODE = 0o600, 0o700


@dataclass(frozen=True)
class ExportInfo:
    """What ``_export.json`` says about one date's export (``None``: written before it existed)."""

    name: str
    pseudonymised: bool | None


def swap_in(root: str, name: str, write: Callable[[str], None], pseudonymised: bool,
            config: storage.Where = None) -> str:
    """Write ``<root>/<name>`` through ``write(staging_folder)`` and swap it in whole; its location.

    Parameters
    ----------
    root
        The folder of all exports of one kind (a path or URI); it and the folder above it (the
        exports folder) are made 700.
    name
        The export's folder name (a snapshot date).
    write
        Writes the export's files under the folder it is given (which does not exist yet).
    pseudonymised
        Whether the export's user ids are pseudonymised, recorded in ``_export.json``.
    config
        Gives an object store's endpoint and keys (see ``churn_spark.storage``).
    """
    fs, base = storage.filesystem(root, config)
    _make_private_folder(fs, posixpath.dirname(base.rstrip("/")))
    _make_private_folder(fs, base)
    recover(root, name, config)
    final = posixpath.join(base, name)
    staging = posixpath.join(base, f".{name}.staging-{uuid.uuid4().hex[:12]}")
    _make_private_folder(fs, staging)  # 700 before anything is written into it
    try:
        write(_unstrip(root, base, staging))
        with fs.open(posixpath.join(staging, MANIFEST), "w") as out:
            json.dump({"pseudonymised": pseudonymised}, out)
        _restrict(fs, staging)
    except BaseException:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            fs.rm(staging, recursive=True)
        raise
    previous = posixpath.join(base, f".{name}.previous")
    if fs.exists(final):
        storage.move_folder(fs, final, previous)
    storage.move_folder(fs, staging, final)
    if fs.exists(previous):
        fs.rm(previous, recursive=True)
    return _unstrip(root, base, final)


def recover(root: str, name: str, config: storage.Where = None) -> None:
    """Undo what a killed ``swap_in`` of ``name`` left: the old export back in place (killed
    between the two renames), the previous copy or a staging folder deleted."""
    fs, base = storage.filesystem(root, config)
    if not fs.exists(base):
        return
    final, previous = posixpath.join(base, name), posixpath.join(base, f".{name}.previous")
    if fs.exists(previous):
        if fs.exists(final):
            fs.rm(previous, recursive=True)
        else:
            log.warning("%s: restoring the export a killed run had moved aside", final)
            storage.move_folder(fs, previous, final)
    for entry in fs.ls(base, detail=False):
        if posixpath.basename(entry.rstrip("/")).startswith(f".{name}.staging-"):
            log.warning("%s: removing what a killed export left", entry)
            fs.rm(entry, recursive=True)


def exported(root: str, config: storage.Where = None) -> list[ExportInfo]:
    """The exports under ``root``, by name, each with how its user ids were written (one that a
    killed swap left moved aside counts: the next write of it puts it back first)."""
    fs, base = storage.filesystem(root, config)
    if not fs.exists(base):
        return []
    folders = {posixpath.basename(e.rstrip("/")): e for e in fs.ls(base, detail=False) if fs.isdir(e)}
    aside = {n[1:-len(".previous")]: e for n, e in folders.items() if n.startswith(".") and n.endswith(".previous")}
    found = {n: e for n, e in folders.items() if not n.startswith(".")}
    found.update({n: e for n, e in aside.items() if n not in found})
    return [ExportInfo(name, _pseudonymised(fs, found[name])) for name in sorted(found)]


def _pseudonymised(fs: AbstractFileSystem, folder: str) -> bool | None:
    manifest = posixpath.join(folder, MANIFEST)
    return json.loads(fs.cat_file(manifest))["pseudonymised"] if fs.exists(manifest) else None


def _make_private_folder(fs: AbstractFileSystem, path: str) -> None:
    fs.makedirs(path, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        fs.chmod(path, FOLDER_MODE)


def _restrict(fs: AbstractFileSystem, folder: str) -> None:
    """Files 600, folders 700 under ``folder`` (POSIX modes: local filesystems only)."""
    if not isinstance(fs, LocalFileSystem):
        return
    for path, info in fs.find(folder, withdirs=True, detail=True).items():
        fs.chmod(path, FOLDER_MODE if info["type"] == "directory" else FILE_MODE)


def _unstrip(root: str, base: str, path: str) -> str:
    """``path`` (as fsspec names it) in the form ``root`` was given: a URI stays a URI."""
    return root.rstrip("/") + path[len(base.rstrip("/")):]
