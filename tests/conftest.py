import pytest

from lpmon._kernels import logloss as logloss_kernel
from lpmon._kernels import rowwise as rowwise_kernel

PER_ISA_KERNELS = (logloss_kernel, rowwise_kernel)


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

    def drop():
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The URL of an empty database on each engine lpmon supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lpmon.db'}"
        return
    url, drop = _postgres_database()
    try:
        yield url
    finally:
        import gc

        gc.collect()  # close engines still referenced by the test
        drop()
