"""A Spark standalone cluster on 127.0.0.1, and the churn pipeline run on it with spark-submit.

Proves that the jobs in ``jobs/`` run on a real cluster, not only on ``local[*]``: a master and
two workers (1 core, 2g each) on free loopback ports, the project's wheel shipped with
``--py-files`` (as ``churn_spark.zip``: Spark puts only .zip/.egg/.py files on the executors'
path, never a .whl), Delta's jars with ``--packages`` (from the local Ivy cache once downloaded),
the executors running this interpreter (``spark.pyspark.python``), and training as
TorchDistributor barrier tasks on the executors (``train.local_mode=false``), one DDP rank per
worker core::

    .venv/bin/python scripts/standalone_cluster.py --work /tmp/churn-cluster [--users 150]

``conf/cluster.yaml`` is used as it is, with the lakehouse, landing and MLflow store moved under
``--work`` and Delta folders instead of metastore tables. Every spark-submit's driver log goes to
``<work>/logs/<job>.log`` (executor logs: ``<work>/workers/<n>/<app>/<executor>/stderr``) and a
failed job raises :class:`SubmitError` with the log's tail.

The master, the workers and every spark-submit run in process groups of their own, killed
however the run ends: on leaving the ``with`` (an error included), on SIGTERM (turned into
KeyboardInterrupt while the cluster is up, so ``finally`` blocks and pytest's finalizers run),
at interpreter exit (``atexit``, should a second signal cut the first cleanup short), and when
this process dies outright, SIGKILL included (a parent-death signal, through ``setpriv``). Every JVM started here has
``-Dchurn.standalone=<marker>`` on its command line, ``Cluster.marker``, to find them by.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark

from churn_spark.config import load_config
from churn_spark.spark import _ensure_supported_java

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.0"
CLUSTER_CONF = ROOT / "conf" / "cluster.yaml"
# Short-lived JVMs on a small machine: C1-only JIT and the serial GC spend far less CPU on the
# JVM itself; peak speed does not matter for a few thousand rows.
_LEAN_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# TorchDistributor with local_mode=false: one barrier task (one DDP rank) per executor core.
TRAIN_SETTINGS = ("train.launcher=torchdistributor", "train.local_mode=false", "train.num_processes=2",
                  "train.use_gpu=false", "train.epochs=2")


logger = logging.getLogger("standalone_cluster")


class ClusterError(RuntimeError):
    """The master or a worker did not start, or the workers did not register in time."""


class SubmitError(RuntimeError):
    """A spark-submit failed or ran past its time; the message ends with its driver log's tail."""


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster: where to submit, its web UI, and the environment to use."""

    master_url: str
    web_ui: str
    work: Path
    env: dict[str, str]
    marker: str  # on the command line of every JVM of this cluster: -Dchurn.standalone=<marker>

    def state(self) -> dict[str, Any]:
        """The master's JSON status: workers, active and completed applications."""
        with urllib.request.urlopen(f"{self.web_ui}/json/", timeout=10) as response:
            return json.load(response)


@dataclass
class PipelineRun:
    """What ``run_pipeline`` did: the overrides every job got, the dates, and each job's app."""

    overrides: list[str]
    featured: list[dt.date]
    labelled: list[dt.date]
    scored: dt.date
    logs: dict[str, Path] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)  # job -> the master's record of its app


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spark_env(work: Path, marker: str, python: str = sys.executable) -> dict[str, str]:
    """This process's environment for Spark's daemons and drivers: a JDK 17/21, loopback only,
    scratch space under ``work/local``, ``python`` for drivers and executors, ``marker`` on the
    daemons' command lines, and no pointer to another driver's gateway."""
    _ensure_supported_java()  # sets JAVA_HOME where the default java is one Spark 4.0 cannot run on
    (work / "local").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "_PYSPARK"))}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="127.0.0.1",
               SPARK_LOCAL_DIRS=str(work / "local"), PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python,
               SPARK_DAEMON_JAVA_OPTS=f"{_LEAN_JVM} -Dchurn.standalone={marker}", SPARK_DAEMON_MEMORY="512m")
    return env


@contextmanager
def standalone_cluster(work: Path, workers: int = 2, cores: int = 1, memory: str = "2g",
                       timeout: float = 180.0) -> Iterator[Cluster]:
    """Start a master and ``workers`` workers on 127.0.0.1; stop them all on exit.

    Parameters
    ----------
    work
        Folder for the daemons' logs (``logs/``) and the workers' work dirs (``workers/<n>``).
    workers, cores, memory
        How many workers, and the cores and memory (``2g``) each offers.
    timeout
        Seconds to wait for every worker to register with the master.

    Raises
    ------
    ValueError
        If ``workers`` or ``cores`` is below 1.
    ClusterError
        If a daemon exits or the workers are not all registered within ``timeout``; the message
        holds the tail of each daemon's log.
    """
    if workers < 1 or cores < 1:
        raise ValueError(f"workers and cores must be >= 1, got {workers}, {cores}")
    marker = f"churn-{secrets.token_hex(6)}"
    env, logs = spark_env(work, marker), work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port, ui = free_port(), free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", work, env, marker)
    with ExitStack() as daemons:
        daemons.enter_context(_sigterm_as_interrupt())
        started = [daemons.enter_context(_daemon(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(ui)], logs / "master.log", env))]
        for n in range(1, workers + 1):
            folder = work / "workers" / str(n)
            folder.mkdir(parents=True, exist_ok=True)
            started.append(daemons.enter_context(_daemon(
                ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--webui-port", str(free_port()),
                 "--cores", str(cores), "--memory", memory, "--work-dir", str(folder), cluster.master_url],
                logs / f"worker-{n}.log", env)))
        _wait_for_workers(cluster, workers, started, timeout)
        yield cluster


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside: SIGTERM raises KeyboardInterrupt, as SIGINT does, so that the cleanup runs.

    Python's default for SIGTERM is to die at once, ``finally`` blocks, pytest's finalizers and
    ``atexit`` unrun: the daemons, in sessions of their own, would outlive it. Signal handlers
    can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# util-linux's setpriv gives the process it execs a parent-death signal (Linux's
# PR_SET_PDEATHSIG): SIGTERM when this process dies, even by SIGKILL. It is done by a program
# rather than a preexec_fn, which would run Python in the child of a process with threads
# (moto's server thread in the tests).
_SETPRIV = shutil.which("setpriv")


def _dying_with_this_process(command: list[str]) -> list[str]:
    return [_SETPRIV, "--pdeathsig", "TERM", *command] if _SETPRIV else command


# Every process group started here and not yet killed: killed at exit, whatever the path to it.
_LIVE: set[subprocess.Popen] = set()


def _start(command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """``command`` in a session (process group) of its own, its output to ``log``; in ``_LIVE``
    until ``_kill_group``."""
    with open(log, "wb") as out:
        process = subprocess.Popen(_dying_with_this_process(command), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    _LIVE.add(process)
    return process


@atexit.register
def _kill_live() -> None:
    for process in list(_LIVE):
        _kill_group(process, grace=5.0)


@contextmanager
def _daemon(args: list[str], log: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``spark-class ARGS`` in a process group of its own (executors and Python workers join it)."""
    spark_class = SPARK_HOME / "bin" / "spark-class"
    try:
        process = _start([str(spark_class), *args], log, env)
    except OSError as err:
        raise ClusterError(f"cannot start {spark_class}: {err}") from None
    try:
        yield process, log
    finally:
        _kill_group(process)


def _kill_group(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process's group, then SIGKILL whatever is left of it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(process.pid):
            process.poll()  # reap the leader, or the group never looks empty
            time.sleep(0.2)
        if not _group_alive(process.pid):
            break
    process.poll()
    _LIVE.discard(process)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_workers(cluster: Cluster, count: int, daemons: list[tuple[subprocess.Popen, Path]],
                      timeout: float) -> None:
    deadline, alive = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        exited = [log for process, log in daemons if process.poll() is not None]
        if exited:
            raise ClusterError(f"{exited[0].stem} exited while the cluster started\n" + _tails(daemons))
        try:
            alive = sum(w["state"] == "ALIVE" for w in cluster.state()["workers"])
        except (OSError, ValueError):  # the master's web UI is not up yet
            alive = 0
        if alive >= count:
            return
        time.sleep(1.0)
    raise ClusterError(f"{alive} of {count} workers registered with {cluster.master_url} in {timeout:.0f}s\n"
                       + _tails(daemons))


def _tails(daemons: list[tuple[subprocess.Popen, Path]]) -> str:
    return "\n".join(f"--- {log} ---\n{tail(log, 15)}" for _, log in daemons)


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ('' where there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def build_package(out: Path, python: str = sys.executable) -> Path:
    """Build this checkout's wheel (no dependencies) into ``out`` and return a copy of it named
    ``churn_spark.zip``, the file to give ``--py-files``.

    A pure-Python wheel is a zip with the package at its top, but Spark adds only .zip, .egg and
    .py files to the executors' ``sys.path``: a .whl given to ``--py-files`` is shipped and then
    never imported.

    Raises
    ------
    RuntimeError
        If pip cannot build the wheel (with pip's last lines).
    """
    built = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out), str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    if built.returncode != 0:
        raise RuntimeError(f"pip wheel failed in {ROOT}:\n{built.stderr[-3000:]}")
    (wheel,) = sorted(out.glob("churn_spark-*.whl"))
    package = out / "churn_spark.zip"
    shutil.copyfile(wheel, package)
    return package


def submit(cluster: Cluster, job: str, args: Sequence[str], package: Path, log: Path,
           env: dict[str, str] | None = None, timeout: float = 600.0, packages: Sequence[str] = ()) -> None:
    """spark-submit ``jobs/<job>.py ARGS`` to the cluster with ``package`` (from ``build_package``),
    the driver's output to ``log``; ``env`` adds to the driver's environment, ``packages`` (Maven
    coordinates: hadoop-aws for ``s3a://``) to Delta's.

    Raises
    ------
    SubmitError
        If the job exits non-zero or runs past ``timeout`` seconds (then its group is killed).
    """
    python = cluster.env["PYSPARK_PYTHON"]
    command = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.master_url,
               "--packages", ",".join([DELTA_PACKAGE, *packages]), "--py-files", str(package)]
    for key, value in _submit_settings(cluster, python, package.name).items():
        command += ["--conf", f"{key}={value}"]
    command += [str(ROOT / "jobs" / f"{job}.py"), *args]
    for folder in (log.parent, cluster.work / "eventlog"):
        folder.mkdir(parents=True, exist_ok=True)
    process = _start(command, log, {**cluster.env, **(env or {})}, cwd=ROOT)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise SubmitError(f"{job}: still running after {timeout:.0f}s; {log} ends:\n{tail(log)}") from None
    finally:  # a timeout, an interrupt, or the driver's own exit (its group may hold a leftover)
        _kill_group(process, grace=5.0)
    if code != 0:
        raise SubmitError(f"{job}: spark-submit exited with {code}; {log} ends:\n{tail(log)}")


def _submit_settings(cluster: Cluster, python: str, package: str) -> dict[str, str]:
    work, jvm = cluster.work, f"{_LEAN_JVM} -Dchurn.standalone={cluster.marker}"
    return {
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
        # TorchDistributor's ranks are processes of their own (torchrun's), which see PYTHONPATH
        # but not --py-files: the shipped package lies in each executor's working directory.
        "spark.executorEnv.PYTHONPATH": package,
        "spark.executor.cores": "1",
        "spark.executor.memory": "1g",
        "spark.driver.memory": "1g",
        "spark.driver.extraJavaOptions": jvm,
        "spark.executor.extraJavaOptions": jvm,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
        # Kept so that the train job's barrier stage can be inspected (see barrier_tasks).
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (work / "eventlog").as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",  # one file per application, named by its id
    }


def pipeline_overrides(work: Path, users: int = 150, days: int = 180) -> list[str]:
    """``--set`` values every job gets: conf/cluster.yaml's storage put on this machine under
    ``work`` (Delta folders, a local MLflow store), few partitions, and the demo data's size."""
    return [f"lakehouse={work / 'lakehouse'}", f"landing={work / 'landing'}", "storage.kind=path",
            f"mlflow.tracking_uri={work / 'mlruns'}", "spark.settings.spark.sql.shuffle.partitions=4",
            "spark.settings.spark.databricks.delta.snapshotPartitions=2", "generate.partitions=2",
            f"generate.users={users}", f"generate.days={days}"]


def run_pipeline(cluster: Cluster, package: Path, users: int = 150, days: int = 180, generate: bool = True,
                 timeout: float = 600.0, extra: Sequence[str] = (), packages: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> PipelineRun:
    """generate, ingest, features, labels, train (2 ranks on the executors) and score, each one
    spark-submit to ``cluster`` with conf/cluster.yaml, ``pipeline_overrides`` and then ``extra``.

    Snapshots follow ``churn_spark.pipeline.demo_snapshots``: every 14 days from day 56; the
    training set takes those whose label window ends inside the data; the last one is scored.

    Parameters
    ----------
    generate
        Submit the generate job first; ``False`` when the landing folder already holds the
        events/ and users/ Parquet files (``churn_spark.pipeline.generate_landing`` with the
        same overrides writes them).
    extra, packages, env
        More ``--set`` values, after ``pipeline_overrides`` (``lakehouse=s3a://...`` and its
        ``spark.hadoop.fs.s3a.*`` settings), Maven packages for every spark-submit
        (``churn_spark.spark.hadoop_aws_package()`` for ``s3a://``), and variables for every
        driver's environment.

    Raises
    ------
    SubmitError
        For the first job that fails, with the tail of its driver log.
    """
    from churn_spark.pipeline import demo_snapshots

    work = cluster.work
    overrides = [*pipeline_overrides(work, users, days), *extra]
    config = load_config(CLUSTER_CONF, overrides)
    landing = config.landing.rstrip("/")
    featured, labelled = demo_snapshots(config)
    run = PipelineRun(overrides, featured, labelled, featured[-1])
    steps = _steps(landing, run, generate)
    # conf/cluster.yaml pseudonymises the exports: every driver gets a salt.
    driver_env = {**(env or {}), "CHURN_EXPORT_SALT": secrets.token_hex(16)}
    for job, args, own in steps:
        run.logs[job] = work / "logs" / f"{job}.log"
        settings = [*overrides, *own, f"spark.app_name=churn-spark-{job}"]
        began = time.perf_counter()
        submit(cluster, job, [*args, "--conf", str(CLUSTER_CONF), *_as_set(settings)], package, run.logs[job],
               driver_env, timeout, packages)
        logger.info("%s: done on %s in %.0fs", job, cluster.master_url, time.perf_counter() - began)
    finished = {app["name"]: app for app in cluster.state()["completedapps"]}
    run.apps = {job: finished[f"churn-spark-{job}"] for job, _, _ in steps if f"churn-spark-{job}" in finished}
    return run


def _steps(landing: str, run: PipelineRun, generate: bool) -> list[tuple[str, list[str], list[str]]]:
    """(job, its arguments, its own --set values) in order; ``landing`` a folder or URI."""
    steps = [("generate", ["--out", landing, "--format", "parquet"], [])] if generate else []
    return steps + [
        ("ingest", ["--events", f"{landing}/events", "--users", f"{landing}/users", "--format", "parquet"], []),
        ("features", ["--as-of", ",".join(map(str, run.featured))], []),
        ("labels", ["--as-of", ",".join(map(str, run.labelled))], []),
        ("train", [], list(TRAIN_SETTINGS)),
        ("score", ["--as-of", str(run.scored)], []),
        ("stream", ["--trigger", "available-now"], ["stream.clock=events"]),
    ]


def _as_set(settings: Sequence[str]) -> list[str]:
    return [arg for item in settings for arg in ("--set", item)]


def barrier_tasks(work: Path, app_id: str) -> list[dict[str, Any]]:
    """The finished tasks of application ``app_id``'s barrier stages (TorchDistributor's ranks),
    from its event log: each task's ``Executor ID``, ``Host`` and ``Failed`` flag."""
    events = [json.loads(line) for line in (work / "eventlog" / app_id).read_text().splitlines() if line]
    barrier = {e["Stage Info"]["Stage ID"] for e in events if e["Event"] == "SparkListenerStageCompleted"
               and any(rdd.get("Barrier") for rdd in e["Stage Info"]["RDD Info"])}
    return [e["Task Info"] for e in events if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in barrier]


def main(argv: Sequence[str] | None = None) -> int:
    """Start the loopback cluster, run the pipeline on it, print where everything is, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the cluster, logs and lakehouse")
    parser.add_argument("--users", type=int, default=150, help="synthetic users (default 150)")
    parser.add_argument("--days", type=int, default=180, help="days of events from 2026-01-01 (default 180)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = args.work.resolve()
    began = time.perf_counter()
    try:
        package = build_package(work / "dist")
        with standalone_cluster(work) as cluster:
            logger.info("cluster up: %s (web UI %s)", cluster.master_url, cluster.web_ui)
            run = run_pipeline(cluster, package, args.users, args.days)
    except (ClusterError, SubmitError, RuntimeError) as err:
        print(f"standalone_cluster: error: {err}", file=sys.stderr)
        return 1
    ranks = barrier_tasks(work, run.apps["train"]["id"])
    print(f"pipeline done in {time.perf_counter() - began:.0f}s; lakehouse {work / 'lakehouse'}; "
          f"training ranks on executors {sorted(t['Executor ID'] for t in ranks)}; logs {work / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
