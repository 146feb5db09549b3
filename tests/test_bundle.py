"""The schedule as configuration: the Databricks Asset Bundle and deploy/crontab.

No Spark: every task and crontab step is checked against the repository (its job file exists)
and against the real command line (its arguments parse, its config overrides validate), and the
two schedules are checked to run the same steps at the same times.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from churn_spark import monitor
from churn_spark.cli import build_parser
from churn_spark.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
SAMPLE_DAY = "2026-06-18"  # stands for every {{...}} dynamic value and every $(date ...)
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
JOBS: dict[str, dict[str, Any]] = {
    name: job
    for path in sorted(RESOURCES.glob("*.yml"))
    for name, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items()
}
EXPECTED = {
    "daily_scoring": ["ingest", "rollup", "features", "score", "monitor", "retrain_needed", "retrain_early"],
    "weekly_retrain": ["labels", "monitor", "policy", "retrain_needed", "train", "promote"],
    "warnings_continuous": ["stream"],
    "warnings_scheduled": ["stream"],
}


def job_command(job_file: Path) -> str:
    """The churn-spark command a jobs/*.py file wraps: ``main(["<command>", *sys.argv[1:]])``."""
    found = re.findall(r'main\(\["([a-z-]+)", \*sys\.argv\[1:\]\]\)', job_file.read_text())
    assert len(found) == 1, f"{job_file.name}: expected one main([\"<command>\", *sys.argv[1:]])"
    return found[0]


def task_order(job: dict[str, Any]) -> list[str]:
    """Task keys in dependency order; fails on an unknown dependency or a cycle."""
    depends = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in job["tasks"]}
    for key, needs in depends.items():
        unknown = set(needs) - set(depends)
        assert not unknown, f"task {key} depends on unknown task(s) {sorted(unknown)}"
    order: list[str] = []
    while len(order) < len(depends):
        ready = sorted(k for k, needs in depends.items() if k not in order and set(needs) <= set(order))
        assert ready, f"dependency cycle among {sorted(set(depends) - set(order))}"
        order.append(ready[0])
    return order


def target_variables(target: str) -> dict[str, str]:
    """Every bundle variable as the target sets it, ``${workspace.file_path}`` as the repository."""
    values = {name: spec.get("default") for name, spec in BUNDLE["variables"].items()}
    values.update(BUNDLE["targets"][target].get("variables", {}))
    missing = sorted(name for name, value in values.items() if value is None)
    assert not missing, f"target {target}: no value for variable(s) {missing}"
    return {name: str(value).replace("${workspace.file_path}", str(ROOT)) for name, value in values.items()}


def resolve(text: str, variables: dict[str, str]) -> str:
    text = re.sub(r"\$\{var\.(\w+)\}", lambda m: variables[m.group(1)], text)
    return re.sub(r"\{\{[^}]*\}\}", SAMPLE_DAY, text)


def all_tasks() -> list[tuple[str, dict[str, Any]]]:
    """Every task that runs a churn-spark job (not a condition, not a run of another job)."""
    return [(name, task) for name, job in JOBS.items() for task in job["tasks"] if "spark_python_task" in task]


# --- the bundle ----------------------------------------------------------------------------------


def test_bundle_builds_the_wheel_and_has_dev_and_prod_targets() -> None:
    assert BUNDLE["bundle"]["name"] == "churn-spark"
    assert BUNDLE["include"] == ["resources/*.yml"]
    [artifact] = BUNDLE["artifacts"].values()
    assert (artifact["type"], artifact["path"], artifact["build"]) == \
        ("whl", ".", "python -m pip wheel --no-deps -w dist .")
    assert set(BUNDLE["targets"]) == {"dev", "prod"}
    for target in BUNDLE["targets"]:
        assert {"landing_path", "lakehouse_path", "config_file"} <= set(target_variables(target))
    used = set()
    for path in [ROOT / "databricks.yml", *RESOURCES.glob("*.yml")]:
        used |= set(re.findall(r"\$\{var\.(\w+)\}", path.read_text()))
    assert used - set(BUNDLE["variables"]) == set()


def test_jobs_run_their_steps_in_order_on_a_utc_schedule() -> None:
    assert {name: task_order(job) for name, job in JOBS.items()} == EXPECTED
    scheduled = {name: job for name, job in JOBS.items() if "schedule" in job}
    assert {name: job["schedule"]["quartz_cron_expression"] for name, job in scheduled.items()} == {
        "daily_scoring": "0 0 3 * * ?", "weekly_retrain": "0 0 6 ? * SUN", "warnings_scheduled": "0 0/15 * * * ?"}
    assert {job["schedule"]["timezone_id"] for job in scheduled.values()} == {"UTC"}
    # One of the two warnings jobs is active: both resume the same checkpoint.
    assert JOBS["warnings_continuous"]["continuous"] == {"pause_status": "UNPAUSED"}
    assert JOBS["warnings_scheduled"]["schedule"]["pause_status"] == "PAUSED"
    for name, job in JOBS.items():
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in (t for t in job["tasks"] if "spark_python_task" in t):
            cluster = clusters[task["job_cluster_key"]]
            assert re.fullmatch(r"1[67]\.\d+\.x-(gpu-ml-)?scala2\.13", resolve(cluster["spark_version"],
                                                                             target_variables("prod")))
            assert task["libraries"] == [{"whl": "../dist/*.whl"}]


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_every_task_runs_an_existing_job_with_arguments_the_cli_accepts(target: str) -> None:
    variables = target_variables(target)
    for name, task in all_tasks():
        python_task = task["spark_python_task"]
        job_file = (RESOURCES / python_task["python_file"]).resolve()
        assert job_file.parent == ROOT / "jobs" and job_file.is_file(), python_task["python_file"]
        command = job_command(job_file)
        assert command == task["task_key"], f"{name}.{task['task_key']} runs {job_file.name} ({command})"
        args = build_parser().parse_args([command, *(resolve(p, variables) for p in python_task["parameters"])])
        config = load_config(args.conf, args.overrides)  # the config file exists and every --set is valid
        assert (config.lakehouse, config.landing) == (variables["lakehouse_path"], variables["landing_path"])
        if hasattr(args, "as_of"):
            assert args.as_of in (dt.date.fromisoformat(SAMPLE_DAY), [dt.date.fromisoformat(SAMPLE_DAY)])
        if command in ("score", "train", "promote", "monitor"):
            assert config.mlflow.model_name == variables["model_name"]


def test_training_runs_only_when_the_monitors_retrain_trigger_fires() -> None:
    """Both jobs read the task value jobs/monitor.py sets; the weekly job trains on its "true"
    outcome, and the daily job runs the weekly job then."""
    for name in ("daily_scoring", "weekly_retrain"):
        tasks = {t["task_key"]: t for t in JOBS[name]["tasks"]}
        assert tasks["retrain_needed"]["condition_task"] == {
            "op": "EQUAL_TO", "left": "{{tasks.monitor.values.retrain}}", "right": "true"}
        assert tasks["retrain_needed"]["depends_on"] == [{"task_key": "monitor"}]
    assert {t["task_key"]: t.get("depends_on") for t in JOBS["weekly_retrain"]["tasks"]}["train"] == [
        {"task_key": "retrain_needed", "outcome": "true"}]
    early = {t["task_key"]: t for t in JOBS["daily_scoring"]["tasks"]}["retrain_early"]
    assert early["depends_on"] == [{"task_key": "retrain_needed", "outcome": "true"}]
    assert early["run_job_task"] == {"job_id": "${resources.jobs.weekly_retrain.id}"}
    assert 'taskValues.set(key="retrain"' in inspect.getsource(monitor.exit_status)  # the key the conditions read


def test_job_parameters_referenced_by_tasks_are_declared() -> None:
    for name, job in JOBS.items():
        declared = {p["name"] for p in job.get("parameters", [])}
        used = set(re.findall(r"\{\{job\.parameters\.(\w+)\}\}", yaml.safe_dump(job["tasks"])))
        assert used <= declared, f"{name}: undeclared job parameter(s) {sorted(used - declared)}"
    ingest = next(t for t in JOBS["daily_scoring"]["tasks"] if t["task_key"] == "ingest")
    args = build_parser().parse_args(
        ["ingest", *(resolve(p, target_variables("prod")) for p in ingest["spark_python_task"]["parameters"])])
    assert (args.events, args.users) == (f"/Volumes/prod/churn/landing/{SAMPLE_DAY}/events",
                                         f"/Volumes/prod/churn/landing/{SAMPLE_DAY}/users")


def test_scheduled_runs_use_job_parameter_defaults_the_cli_accepts() -> None:
    for name, job in JOBS.items():
        defaults = {p["name"]: resolve(p["default"], {}) for p in job.get("parameters", [])}
        for task in (t for t in job["tasks"] if "spark_python_task" in t):
            params = [re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: defaults[m.group(1)], p)
                      for p in task["spark_python_task"]["parameters"]]
            command = job_command((RESOURCES / task["spark_python_task"]["python_file"]).resolve())
            build_parser().parse_args([command, *(resolve(p, target_variables("prod")) for p in params)])


# --- the crontab ---------------------------------------------------------------------------------

CRONTAB = (ROOT / "deploy" / "crontab").read_text().splitlines()
ENTRIES = [line for line in CRONTAB if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line)]
ENVIRONMENT = dict(line.split("=", 1) for line in CRONTAB if re.match(r"^\w+=", line))


def cron_steps(command: str) -> list[tuple[str, list[str]]]:
    """(job file, arguments) of every ``$SUBMIT jobs/<job>.py ...`` step of a crontab command."""
    command = re.sub(r"\$\(date [^)]*\)", SAMPLE_DAY, command.replace("\\%", "%"))
    command = re.sub(r"\$D\b", SAMPLE_DAY, command)
    steps = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if "$SUBMIT" not in words:
            continue
        job, *rest = words[words.index("$SUBMIT") + 1:]
        steps.append((job, rest[:next((i for i, w in enumerate(rest) if w.startswith((">", "2>"))), len(rest))]))
    return steps


def test_crontab_submits_with_delta_and_the_project_package() -> None:
    setup = (ROOT / "setup.py").read_text()
    delta = re.search(r'"delta-spark==([^"]+)"', setup).group(1)
    assert ENVIRONMENT["CRON_TZ"] == "UTC"
    assert shlex.split(ENVIRONMENT["SUBMIT"]) == [
        "spark-submit", "--packages", f"io.delta:delta-spark_2.13:{delta}",
        "--py-files", "dist/churn_spark.zip", "--conf", "spark.executorEnv.PYTHONPATH=churn_spark.zip"]


def test_crontab_runs_the_bundles_steps_at_the_same_times() -> None:
    schedule = {}
    for entry in ENTRIES:
        minute, hour, day, month, weekday, command = entry.split(maxsplit=5)
        assert all(re.fullmatch(r"\*(/\d+)?|\d+", f) for f in (minute, hour, day, month, weekday)), entry
        subprocess.run(["bash", "-n", "-c", command.replace("\\%", "%")], check=True)
        steps = [Path(job).stem for job, _ in cron_steps(command)]
        if "monitor" in steps:  # its exit status 3 (retrain) lets the rest run; 0 stops there
            assert "jobs/monitor.py --conf conf/cluster.yaml >> logs/monitor.log 2>&1; [ $? -eq 3 ]; }" in command
        schedule[tuple(steps)] = (minute, hour, day, month, weekday)
    # Quartz "0 0 3 * * ?" is cron "0 3 * * *"; "0 0 6 ? * SUN" is "0 6 * * 0".
    # monitor exits 3 when the retrain trigger fires: only then do the steps after it run.
    assert schedule == {("ingest", "rollup", "features", "score", "monitor", "labels", "train", "promote"):
                        ("0", "3", "*", "*", "*"),
                        ("labels", "monitor", "train", "promote"): ("0", "6", "*", "*", "0"),
                        ("policy",): ("0", "6", "*", "*", "0"),
                        ("stream",): ("*/15", "*", "*", "*", "*")}  # Quartz "0 0/15 * * * ?"


def test_every_crontab_step_runs_an_existing_job_with_arguments_the_cli_accepts() -> None:
    for entry in ENTRIES:
        for job, arguments in cron_steps(entry.split(maxsplit=5)[5]):
            job_file = ROOT / job
            assert job_file.parent == ROOT / "jobs" and job_file.is_file(), job
            command = job_command(job_file)
            args = build_parser().parse_args([command, *arguments])
            assert args.conf == "conf/cluster.yaml"
            load_config(ROOT / args.conf, args.overrides)
            if command == "ingest":
                assert (args.events, args.users, args.format) == (
                    f"hdfs:///data/churn/landing/{SAMPLE_DAY}/events",
                    f"hdfs:///data/churn/landing/{SAMPLE_DAY}/users", "parquet")
            if hasattr(args, "as_of"):
                assert args.as_of in (dt.date.fromisoformat(SAMPLE_DAY), [dt.date.fromisoformat(SAMPLE_DAY)])
