import pytest

from lpmon._kernels import affine as affine_kernel
from lpmon._kernels import calibrate as calibrate_kernel
from lpmon._kernels import int8gemm as int8gemm_kernel
from lpmon._kernels import interaction as interaction_kernel
from lpmon._kernels import logloss as logloss_kernel
from lpmon._kernels import rowwise as rowwise_kernel

PER_ISA_KERNELS = (affine_kernel, calibrate_kernel, int8gemm_kernel, interaction_kernel, logloss_kernel, rowwise_kernel)


@pytest.fixture(params=logloss_kernel.available_isas())
def isa(request):
    """Run a test once per instruction-set copy of the kernels this machine can run."""
    previous = [kernel.current_isa() for kernel in PER_ISA_KERNELS]
    for kernel in PER_ISA_KERNELS:
        kernel.use_isa(request.param)
    yield request.param
    for kernel, name in zip(PER_ISA_KERNELS, previous):
        kernel.use_isa(name)


# --- state store databases: SQLite always, the PostgreSQL service too ---

import os  # noqa: E402
import uuid  # noqa: E402

PG_ADMIN = os.environ.get("LPMON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_database():
    """A fresh, empty PostgreSQL database; returns (url, drop)."""
    import psycopg

    name = f"lpmon_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        if os.environ.get("CI"):
            raise  # CI starts the service: its absence is a failure, not a skip
        pytest.skip(f"PostgreSQL is not reachable ({err})")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    admin.close()

    def drop():  # a connection of its own: the server may have restarted since (tests/faults/test_faults.py)
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=30) as again:
            again.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The URL of an empty database on each engine lpmon supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lpmon.db'}"
        return
    yield from _postgres_url()


@pytest.fixture
def postgres_url():
    """The URL of an empty PostgreSQL database (for tests of PostgreSQL's own behaviour)."""
    yield from _postgres_url()


def _postgres_url():
    url, drop = _postgres_database()
    try:
        yield url
    finally:
        import gc

        gc.collect()  # close engines still referenced by the test
        drop()


# --- Airflow: its own home and metadata DB, set before anything imports airflow ---

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from support import REPO  # noqa: E402


def pytest_configure(config):
    home = Path(tempfile.mkdtemp(prefix="lpmon-airflow-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        }
    )


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite, in the session's AIRFLOW_HOME), migrated once."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


class Mailbox:
    """Mail received by an in-process SMTP server (aiosmtpd)."""

    def __init__(self):
        self.messages = []  # email.message.EmailMessage, with .envelope_to
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 mailbox unavailable (refused by the test)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message.envelope_to = list(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(monkeypatch):
    """A real SMTP server on a loopback port, wired up as Airflow's smtp_default."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.port = port
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        f"smtp://127.0.0.1:{port}/?disable_ssl=true&disable_tls=true&from_email=lpmon%40example.com&retry_limit=0",
    )
    try:
        yield box
    finally:
        controller.stop()


# --- scheduling: the longest files first, so that two workers finish together ---

LONGEST_FIRST = (
    "test_soak.py",
    "test_airflow_stack.py",
    "test_pipeline.py",
    "test_dags.py",
    "test_plan_lifecycle.py",
    "test_packaging.py",
)


def pytest_collection_modifyitems(config, items):
    """pytest-xdist hands out files in collection order: starting the longest ones
    first keeps one worker from getting a 15-minute file at the end."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def without_torch(monkeypatch):
    """Imports of torch fail, as on a machine without the lpmon[torch] extra; the
    lpmon modules that imported it are forgotten, so they are imported again."""
    import builtins
    import sys

    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    for name in ("lpmon.serving.torchscript", "lpmon.serving.torchmodule", "lpmon.torch_backend"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        package, _, module = name.rpartition(".")
        if hasattr(sys.modules.get(package), module):
            monkeypatch.delattr(sys.modules[package], module)


@pytest.fixture
def dagbag(airflow_db, monkeypatch, tmp_path):
    """Parse the DAG folder with LPMON_CONFIG pointing at the test's world (set it first)."""

    def parse(config_path):
        from airflow.dag_processing.dagbag import DagBag

        monkeypatch.setenv("LPMON_CONFIG", str(config_path))
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        return bag

    return parse
