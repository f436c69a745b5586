"""docker-compose.yml, its Dockerfile and .env.example, checked without Docker (no engine
runs on these machines): the file parses, every service the deployment needs is there
with a health check, and every variable it sets or interpolates is one that Airflow or
lpmon actually reads (a typo in AIRFLOW__SECTION__KEY is silently ignored otherwise)."""

import re
from pathlib import Path

import pytest
import yaml
from support import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = [name for name in SERVICES if name.startswith("airflow-")]


def env_example() -> dict[str, str]:
    """Variables of .env.example, each with the comment above it."""
    out, comment = {}, []
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.startswith("#"):
            comment.append(line)
        elif "=" in line:
            out[line.split("=", 1)[0]] = " ".join(comment)
        else:
            comment = []
    return out


def test_the_deployment_has_every_service_with_health_checks():
    assert set(SERVICES) == {"postgres", "redis", "mailpit", "airflow-init", "airflow-apiserver",
                             "airflow-scheduler", "airflow-dag-processor", "airflow-worker"}
    for name, service in SERVICES.items():
        if name != "airflow-init":
            assert "healthcheck" in service, name
    for name in AIRFLOW_SERVICES:
        service = SERVICES[name]
        assert service["build"] == "." and service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert {"/data/traffic", "/data/models", "/data/work", "/data/plans"} <= mounts, name
    assert "ports" not in SERVICES["airflow-worker"]  # scalable: docker compose up --scale airflow-worker=N
    assert set(COMPOSE["volumes"]) == {"postgres", "traffic", "models", "work", "plans"}


def test_every_interpolated_variable_is_documented_in_env_example():
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}", text))
    documented = env_example()
    assert used == set(documented), (used ^ set(documented))
    assert all(comment for comment in documented.values())


def test_every_airflow_and_lpmon_variable_is_one_they_read():
    from airflow.configuration import conf

    conf.load_providers_configuration()  # the celery provider's options (result_backend, ...)
    known = conf.configuration_description
    sources = "\n".join(p.read_text() for p in (REPO / "lpmon").rglob("*.py"))
    environment = SERVICES["airflow-scheduler"]["environment"]
    for name in environment:
        if name.startswith("AIRFLOW__"):
            _, section, key = name.split("__", 2)
            options = known.get(section.lower(), {}).get("options", {})
            assert key.lower() in options, f"{name}: Airflow has no [{section.lower()}] {key.lower()}"
        elif name.startswith("LPMON_"):
            read = f'"{name}"' in sources or (name in ("LPMON_WORK_DIR", "LPMON_PLANS_DIR")
                                                and 'f"LPMON_{key.upper()}"' in sources)
            assert read, f"{name}: lpmon does not read it"
    assert environment["AIRFLOW_CONN_SMTP_DEFAULT"].startswith("smtp://mailpit:1025/")


def test_the_deployed_lpmon_config_loads_with_the_compose_environment():
    from lpmon.config import load

    environment = SERVICES["airflow-scheduler"]["environment"]
    env = {k: re.sub(r"\$\{[A-Z_]+\}", "x", str(v)) for k, v in environment.items() if k.startswith("LPMON_")}
    config = load(REPO / "deploy" / "lpmon.toml", environ=env)
    assert config.store.startswith("postgresql+psycopg://") and config.store.endswith("@postgres:5432/lpmon")
    assert str(config.work_dir) == "/data/work" and str(config.plans_dir) == "/data/plans"
    assert all(m.traffic.startswith("/data/traffic/") and m.snapshot.startswith("/data/models/")
               for m in config.models.values())


def test_the_image_is_the_pinned_airflow_with_lpmon_and_its_dags():
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert f"FROM apache/airflow:{pinned}-python3.11" in dockerfile
    assert "COPY --chown=airflow:root dags/ /opt/airflow/dags/" in dockerfile
    assert '"/opt/lpmon/src[airflow]"' in dockerfile and "constraints.txt" in dockerfile
    assert (REPO / "deploy" / "postgres-init.sql").read_text().count("CREATE DATABASE lpmon") == 1


@pytest.mark.skipif(not Path("/usr/bin/docker-compose").exists(), reason="Debian's docker-compose is not installed")
def test_docker_compose_config_accepts_the_file(tmp_path):
    import shutil
    import subprocess

    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    subprocess.run(["docker-compose", "--project-directory", str(REPO), "--env-file", str(tmp_path / ".env"),
                    "-f", str(REPO / "docker-compose.yml"), "config", "-q"], check=True)
