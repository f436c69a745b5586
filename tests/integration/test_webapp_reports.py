"""The lpmon web app serves the day reports that alert mails link to."""

import pytest

from lpmon.config import load
from lpmon.report.day import links
from support.world import dag_world


@pytest.fixture
def client(tmp_path):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from lpmon.airflow.webapp import create_app

    config = load(dag_world(tmp_path, ["stable"], days=1), environ={})
    app = create_app(lambda: config)
    app.dependency_overrides[get_user] = lambda: None  # Airflow's login is tested in test_airflow_stack
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
    from airflow.api_fastapi.core_api.security import get_user
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
    app.dependency_overrides[get_user] = lambda: None
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
