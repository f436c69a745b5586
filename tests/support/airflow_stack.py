"""A real Airflow deployment for tests: api-server, scheduler, dag-processor (and
Celery workers), each its own process on a fresh PostgreSQL metadata database,
stopped by pid when the test ends, also when it fails."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

AIRFLOW = str(Path(sys.executable).parent / "airflow")


class Stack:
    def __init__(self, home: Path, metadata_url: str, port: int, env: dict, executor: str = "LocalExecutor"):
        self.home, self.port = home, port
        self.base = f"http://127.0.0.1:{port}"
        home.mkdir(parents=True, exist_ok=True)
        self.admin_password = secrets.token_urlsafe(12)  # a throwaway stack's login, made per run
        (home / "passwords.json").write_text(json.dumps({"admin": self.admin_password}))
        self.env = dict(
            os.environ,
            **env,
            **{
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                "AIRFLOW__API__BASE_URL": self.base,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "PYTHONWARNINGS": "ignore",
            },
        )
        self.processes: list[subprocess.Popen] = []
        self._token = None

    def airflow(self, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self, *components: tuple[str, ...]) -> None:
        self.airflow("db", "migrate")
        for args in components:
            log = open(self.home / f"{'-'.join(args[:2])}.log", "ab")
            self.processes.append(
                subprocess.Popen(
                    [AIRFLOW, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        self.wait(lambda: self._get("/api/v2/monitor/health", auth=False) is not None, 120, "api-server health")

    def stop(self) -> None:
        """TERM each component's process group, wait, then KILL what is left."""
        for p in self.processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        self.processes.clear()

    # --- REST API -------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.admin_password}).encode()
            request = urllib.request.Request(f"{self.base}/auth/token", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                self._token = json.loads(response.read())["access_token"]
        return self._token

    def _get(self, path: str, auth: bool = True):
        headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.base + path, headers=headers), timeout=10) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def get(self, path: str):
        return self._get(path)

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(
            self.base + path,
            json.dumps(payload).encode(),
            {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait(self, ready, timeout: float, what: str, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.processes:
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{p.args[1:3]} exited with {p.returncode} while waiting for {what}; logs in {self.home}"
                    )
            value = ready()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{what}: not ready after {timeout} s; logs in {self.home}")

    @staticmethod
    def backfill_command(dag_id: str, start: str, end: str, reprocess: str | None = None) -> list[str]:
        """`airflow backfill create` as the README prints it: no flag it does not show
        (Airflow's defaults: all the days' runs start at once)."""
        command = ["backfill", "create", "--dag-id", dag_id, "--from-date", start, "--to-date", end]
        return command + (["--reprocess-behavior", reprocess] if reprocess else [])

    def backfill(self, dag_id: str, start: str, end: str, reprocess: str | None = None, timeout: float = 600) -> dict:
        """`airflow backfill create`, then wait through the REST API until it completes."""
        self.wait(lambda: self.get(f"/api/v2/dags/{dag_id}"), 120, f"{dag_id} parsed")
        self.airflow("dags", "unpause", dag_id)  # the scheduler runs no task of a paused DAG, backfills included
        known = {b["id"] for b in (self.get(f"/api/v2/backfills?dag_id={dag_id}") or {}).get("backfills", [])}
        self.airflow(*self.backfill_command(dag_id, start, end, reprocess))
        backfills = self.get(f"/api/v2/backfills?dag_id={dag_id}")["backfills"]
        (new,) = [b for b in backfills if b["id"] not in known]
        return self.wait(
            lambda: (lambda b: b if b and b.get("completed_at") else None)(self.get(f"/api/v2/backfills/{new['id']}")),
            timeout,
            f"backfill {new['id']}",
        )

    def runs(self, dag_id: str, run_type: str | None = "backfill") -> list[dict]:
        runs = self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]
        return [r for r in runs if run_type is None or r["run_type"] == run_type]
