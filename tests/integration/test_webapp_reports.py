"""The lpmon web app serves the day reports that alert mails link to."""

import pytest

from lpmon.config import load
from lpmon.report.day import links
from support.world import dag_world


def as_admin(app) -> None:
    """The caller is an Airflow admin (the simple auth manager decides)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user

    create_auth_manager()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="ADMIN")


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from lpmon.airflow.webapp import create_app

    config = load(dag_world(tmp_path, ["stable"], days=1), environ={})
    app = create_app(lambda: config)
    as_admin(app)  # Airflow's login is tested in test_airflow_stack, the auth manager's say below
    report = config.work_dir / "reports" / "stable" / "2026-11-01.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><body>the report of 2026-11-01</body></html>")
    return TestClient(app), config


def test_a_mail_links_the_report_the_app_serves(client):
    http, config = client
    url = links(config, "stable", "2026-11-01")["report_url"]
    assert url == "http://airflow.test/lpmon/models/stable/reports/2026-11-01.html"
    answer = http.get("/models/stable/reports/2026-11-01.html")
    assert answer.status_code == 200 and "the report of 2026-11-01" in answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/models/stable/reports/2026-11-02.html",
        "/models/stable/reports/2026-13-01.html",
        "/models/stable/reports/..%2F..%2Flpmon.toml.html",
        "/models/nope/reports/2026-11-01.html",
    ],
)
def test_missing_or_hostile_report_paths_are_404(client, path):
    http, _ = client
    assert http.get(path).status_code == 404


def test_the_app_opens_one_store_and_disposes_it_at_shutdown(tmp_path, monkeypatch):
    """An engine per request left a connection pool behind each one: the app keeps one
    store, reopens it when the configured store changes or a request failed on it."""
    from fastapi.testclient import TestClient

    import lpmon.pipeline
    from lpmon.airflow.webapp import create_app
    from lpmon.store import init_store

    config = load(dag_world(tmp_path, ["stable"], days=1), environ={})
    init_store(config.store)
    engines = []
    open_store = lpmon.pipeline.open_store
    monkeypatch.setattr(lpmon.pipeline, "open_store", lambda c: engines.append(open_store(c)) or engines[-1])
    app = create_app(lambda: config)
    as_admin(app)
    disposed = []
    with TestClient(app) as http:
        for path in ("/api/models", "/api/models/stable", "/", "/models/stable", "/api/models"):
            assert http.get(path).status_code == 200, path
        assert len(engines) == 1 and app.state.stores.open
        store = engines[0]
        real = store.db.engine.dispose
        monkeypatch.setattr(store.db.engine, "dispose", lambda: disposed.append(True) or real())
        monkeypatch.setattr(store, "latest_day", lambda m: 1 / 0)  # a request fails on the store
        with pytest.raises(ZeroDivisionError):
            http.get("/api/models")
        assert disposed == [True] and not app.state.stores.open
        assert http.get("/api/models").status_code == 200 and len(engines) == 2  # reopened
        last = engines[1].db.engine.dispose
        monkeypatch.setattr(engines[1].db.engine, "dispose", lambda: disposed.append("shutdown") or last())
    assert disposed == [True, "shutdown"] and not app.state.stores.open


# --- who may see the pages: Airflow's auth manager decides (issue 28, point 3) ------------------


@pytest.fixture
def authed(tmp_path):
    """The app as the api-server mounts it, with the simple auth manager deciding; the
    caller is the user `who` names (None: anonymous, Airflow's own get_user runs)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from lpmon.airflow.webapp import create_app

    create_auth_manager()
    config = load(dag_world(tmp_path, ["stable"], days=1), environ={})
    from lpmon.store import init_store

    init_store(config.store)
    app = create_app(lambda: config)

    def client(role: str | None, *, anonymous: bool = False) -> TestClient:
        app.dependency_overrides.clear()
        if not anonymous:
            user = SimpleAuthManagerUser(username=f"u-{role}", role=role)
            app.dependency_overrides[get_user] = lambda: user
        return TestClient(app, follow_redirects=False)

    return client


ROUTES = ["/", "/models/stable", "/api/models", "/api/models/stable", "/openapi.json"]


@pytest.mark.parametrize("path", ROUTES + ["/models/stable/reports/2026-11-01.html"])
def test_anonymous_clients_get_401_on_every_route_openapi_included(authed, path):
    answer = authed(None, anonymous=True).get(path, headers={"Accept": "application/json"})
    assert answer.status_code == 401, (path, answer.status_code, answer.text[:200])


def test_the_schema_lists_the_routes_for_a_reader_and_there_is_no_docs_page(authed):
    http = authed("VIEWER")
    schema = http.get("/openapi.json").json()
    assert {"/api/models", "/api/models/{model_id}"} <= set(schema["paths"])
    assert http.get("/docs").status_code == 404 and http.get("/redoc").status_code == 404


@pytest.mark.parametrize("path", ROUTES)
def test_only_users_who_may_read_the_monitor_dag_see_the_pages(authed, path):
    assert authed("VIEWER").get(path).status_code == 200, path
    assert authed("ADMIN").get(path).status_code == 200, path
    denied = authed(None).get(path)  # a user without a role: the auth manager says no
    assert denied.status_code == 403 and "lpmon_monitor" in denied.json()["detail"], path


def test_the_auth_manager_is_asked_about_the_monitor_dag(authed, monkeypatch):
    from airflow.api_fastapi.app import get_auth_manager

    asked = []
    manager = get_auth_manager()
    monkeypatch.setattr(
        manager, "is_authorized_dag", lambda **kw: asked.append((kw["method"], kw["details"].id)) or False
    )
    assert authed("ADMIN").get("/api/models").status_code == 403
    assert asked == [("GET", "lpmon_monitor")]


def test_a_link_from_a_mail_opened_while_logged_out_leads_to_the_login_and_back(authed):
    from urllib.parse import parse_qs, urlsplit

    path = "/models/stable/reports/2026-11-01.html?x=1"
    answer = authed(None, anonymous=True).get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert answer.status_code in (302, 303, 307), (answer.status_code, answer.text[:200])
    target = urlsplit(answer.headers["location"])
    assert target.path == "/auth/login"
    assert parse_qs(target.query)["next"] == ["http://testserver" + path]
