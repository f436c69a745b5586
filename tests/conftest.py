import pytest

from lpmon._kernels import logloss as logloss_kernel


@pytest.fixture(params=logloss_kernel.available_isas())
def isa(request):
    """Run a test once per instruction-set copy of the kernels this machine can run."""
    previous = logloss_kernel.current_isa()
    logloss_kernel.use_isa(request.param)
    yield request.param
    logloss_kernel.use_isa(previous)
