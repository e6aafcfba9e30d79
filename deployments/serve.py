"""Serve circhub's deployments: a Prefect server, the process work pool, limits, automations,
the deployments of `prefect.yaml`, and a worker.

`circhub serve` runs all of it on one machine (server on SQLite under `var/prefect`, telemetry
off). In production the pieces split: a Prefect server on PostgreSQL, `prepare()` plus
`apply_deployments()` from CI or an admin host, and `prefect worker start --pool circhub` on
worker hosts. Tests use the same functions against a throwaway server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

SPEC = Path(__file__).with_name("prefect.yaml")
POOL = "circhub"
BIN = Path(sys.executable).parent  # the prefect CLI of this environment


class ServeError(RuntimeError):
    """A piece of the local stack did not come up; the message says which and why."""


def prefect_env(api_url: str, home: Path | None = None, config: str | None = None) -> dict:
    """Environment for the prefect CLI, server and worker processes circhub starts."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_CLI_PROMPT": "false"}
    if home:
        env["PREFECT_HOME"] = str(home)
    if config:
        env["CIRCHUB_CONFIG"] = str(Path(config).resolve())
    return env


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(env: dict, port: int, log: Path, timeout: float = 90) -> subprocess.Popen:
    """`prefect server start` (UI included) on 127.0.0.1:port; waits until the API answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not healthy(env["PREFECT_API_URL"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise ServeError(f"Prefect server did not start on port {port}; see {log}")
        time.sleep(0.5)
    return proc


def start_worker(env: dict, log: Path, run_once: bool = False) -> subprocess.Popen:
    args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process",
            "--name", f"circhub-{os.getpid()}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(args + (["--run-once"] if run_once else []), env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen | None, grace: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_pool(name: str = POOL) -> None:
    """The process work pool, created with the process worker's default job template."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    # An existing pool is kept as its operators left it (concurrency, paused or not).
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                               base_job_template=template))


def deployable(spec: Path = SPEC) -> tuple[list[str], list[str]]:
    """`flow/deployment` names whose flow module exists here, and the entrypoints that do not.

    Deploying imports the flow; one missing module (a flow still being written) should not
    stop the others from being applied.
    """
    from prefect.flows import load_flow_from_entrypoint

    ready, missing = [], []
    for dep in yaml.safe_load(spec.read_text())["deployments"]:
        module = dep["entrypoint"].split(":")[0]
        if importlib.util.find_spec(module) is None:
            missing.append(dep["entrypoint"])
            continue
        ready.append(f"{load_flow_from_entrypoint(dep['entrypoint']).name}/{dep['name']}")
    return ready, missing


def apply_deployments(env: dict, names: list[str], spec: Path = SPEC) -> str:
    """`prefect deploy` of the named deployments of `prefect.yaml`; returns its output."""
    args = [str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(spec)]
    for name in names:
        args += ["--name", name]
    done = subprocess.run(args, env=env, cwd=spec.parent, capture_output=True, text=True,
                          timeout=300)
    if done.returncode:
        raise ServeError(f"prefect deploy failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare(consortium, alert_webhook: str | None = None) -> None:
    """What must exist on the server before runs: pool, concurrency limits, automations."""
    from circhub.flows.alerts import ensure_automations, save_alert_webhook
    from circhub.flows.slots import ensure_limits

    ensure_pool()
    ensure_limits(consortium)
    if alert_webhook:
        save_alert_webhook(alert_webhook)
    ensure_automations()
