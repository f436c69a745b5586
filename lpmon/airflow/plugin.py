"""The Airflow plugin (entry point `airflow.plugins`): mounts lpmon's page and API
at /lpmon in the api-server and adds an "lpmon" entry to the UI's navigation."""

from __future__ import annotations

from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin

from lpmon.airflow.webauth import MONITOR_DAG


def monitor_run_links(days: list[str]) -> dict[str, str]:
    """UI links to the lpmon_monitor runs of these days (the latest run per day: the
    one whose data interval starts on the day, in [airflow] timezone), from
    Airflow's metadata database."""
    if not days:
        return {}
    import zoneinfo

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from lpmon.config import airflow_settings

    zone = zoneinfo.ZoneInfo(airflow_settings().timezone)
    wanted, links = set(days), {}
    with create_session() as session:
        runs = session.execute(
            select(DagRun.run_id, DagRun.data_interval_start)
            .where(DagRun.dag_id == MONITOR_DAG, DagRun.data_interval_start.is_not(None))
            .order_by(DagRun.id)
        ).all()
    for run_id, start in runs:
        day = start.astimezone(zone).date().isoformat()
        if day in wanted:
            links[day] = f"/dags/{MONITOR_DAG}/runs/{quote(run_id, safe='')}"
    return links


def _app():
    from lpmon.airflow.webapp import create_app

    return create_app(run_links=monitor_run_links)


class LpmonPlugin(AirflowPlugin):
    name = "lpmon"
    fastapi_apps = [{"app": _app(), "url_prefix": "/lpmon", "name": "lpmon"}]
    external_views = [{"name": "lpmon", "href": "/lpmon/", "destination": "nav", "url_route": "lpmon"}]
