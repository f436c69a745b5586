"""Who may see lpmon's pages in the Airflow api-server: Airflow's auth manager
decides. A plugin's app is not protected by Airflow, so every route of it
(its OpenAPI schema included) depends on `reader()`: a valid Airflow token
(Authorization: Bearer, or the UI's session cookie; else 401, a bad one 403),
and the auth manager's yes to reading the lpmon_monitor DAG, whose runs the
pages show (else 403). A browser that is not logged in (a link from an alert
mail) is sent to Airflow's login page, which brings it back (next=)."""

from __future__ import annotations

MONITOR_DAG = "lpmon_monitor"


def reader():
    """The FastAPI dependency every route has: Airflow's user, allowed to read MONITOR_DAG."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException

    def may_read_monitor(user=Depends(get_user)) -> None:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

        details = DagDetails(id=MONITOR_DAG, team_name=_team_name())
        if not get_auth_manager().is_authorized_dag(method="GET", details=details, user=user):
            raise HTTPException(
                status_code=403,
                detail=f"Forbidden: this user may not read the {MONITOR_DAG} DAG, whose runs lpmon's pages show",
            )

    return may_read_monitor


def _team_name() -> str | None:
    """The monitor DAG's team, when Airflow runs with teams ([core] multi_team)."""
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(MONITOR_DAG)


async def login_redirect(request, error):
    """Airflow's answer to an HTTPException, except that a browser without a login
    (a GET asking for HTML, answered 401) goes to the login page and back."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import RedirectResponse

    wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
    if error.status_code == 401 and wants_page:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return await http_exception_handler(request, error)
