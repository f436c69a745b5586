"""The lpmon web app serves the day reports that alert mails link to."""

import pytest

from lpmon.config import load
from lpmon.report.day import links
from support.world import dag_world


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.core_api.security import get_user
    from lpmon.airflow.webapp import create_app

    config = load(dag_world(tmp_path, ["stable"], days=1), environ={})
    app = create_app(lambda: config)
    app.dependency_overrides[get_user] = lambda: None   # Airflow's login is tested in test_airflow_stack
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


@pytest.mark.parametrize("path", ["/models/stable/reports/2026-11-02.html", "/models/stable/reports/2026-13-01.html",
                                  "/models/stable/reports/..%2F..%2Flpmon.toml.html", "/models/nope/reports/2026-11-01.html"])
def test_missing_or_hostile_report_paths_are_404(client, path):
    http, _ = client
    assert http.get(path).status_code == 404
