"""TorchRec in CI: `make test` installs it, pinned, and its tests fail rather than skip without it."""

import re
import sys

import pytest

from support import REPO
from support.torchrec_models import require_torchrec


def test_make_test_installs_pinned_torchrec_and_requires_it():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(TORCHREC_STAMP): $(STAMP)\n", 1)[1].split("\n\n", 1)[0]
    assert "$(PIP) --no-deps fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0" in recipe
    assert "$(PIP) tensordict==0.15.3 torchmetrics==1.0.3 tqdm pyre-extensions" in recipe
    assert recipe.index("--no-deps") < recipe.index("tensordict")  # torch is never replaced
    for target in ("test", "test-fast", "install"):
        line = re.search(rf"^{target}:(.*)$", makefile, re.M).group(1)
        assert "$(TORCHREC_STAMP)" in line, target
    test = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert test.count("LPMON_REQUIRE_TORCHREC=1 $(BIN)/pytest") == 2


def test_without_torchrec_tests_skip_unless_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchrec", None)  # import torchrec raises ImportError
    monkeypatch.delenv("LPMON_REQUIRE_TORCHREC", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make install-torchrec"):
        require_torchrec()
    monkeypatch.setenv("LPMON_REQUIRE_TORCHREC", "1")
    with pytest.raises(ImportError):
        require_torchrec()
