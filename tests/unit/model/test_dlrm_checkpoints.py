"""Checkpoints written by the real facebookresearch/dlrm dlrm_s_pytorch.py --save-model
(tests/fixtures/dlrm, made by make_fixtures.py there): imported, they predict as DLRM's
own forward did on the same inputs; what lpmon cannot read is refused in one line."""

import numpy as np
import pytest

from lpmon.cli import main
from lpmon.model import SpecError, forward_fp32
from lpmon.model.batch import Batch, SparseFeature
from lpmon.model.dlrm_import import import_dlrm
from support import REPO

pytest.importorskip("torch")
FIXTURES = REPO / "tests" / "fixtures" / "dlrm"


def dlrm_inputs(name):
    stored = np.load(FIXTURES / name)
    tables = sorted(int(k.split("_")[1]) for k in stored.files if k.startswith("ids_"))
    features = tuple(SparseFeature(stored[f"ids_{t}"], stored[f"offsets_{t}"]) for t in tables)
    return Batch(stored["dense"], features), stored["probabilities"]


@pytest.mark.parametrize(
    ("checkpoint", "predictions", "interaction"),
    [
        ("np1_dot.pt", "np1_dot.predictions.npz", "dot"),  # numpy 1's numpy.core scalar names
        ("np2_cat.pt", "np2_cat.predictions.npz", "cat"),  # numpy 2's numpy._core names, adagrad state
        ("data_parallel.pt", "np1_dot.predictions.npz", "dot"),  # module. prefixes
    ],
)
def test_real_dlrm_checkpoint_predicts_as_dlrm(tmp_path, checkpoint, predictions, interaction):
    model = import_dlrm(FIXTURES / checkpoint, out=tmp_path / "snapshot")
    assert model.spec.interaction == interaction
    assert [t.rows for t in model.spec.tables] == [20, 12, 9]
    batch, expected = dlrm_inputs(predictions)
    np.testing.assert_allclose(forward_fp32(model, batch).probabilities, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("checkpoint", "says"),
    [
        ("itself.pt", "--arch-interaction-itself"),
        ("qr.pt", "--qr-flag"),
        ("md.pt", "--md-flag"),
        ("module.pt", r"pickled Python object \(dlrm_s_pytorch.DLRM_Net\).*torch.save\(model.state_dict\(\)"),
        ("torchscript.pt", r"TorchScript model.*torch.save\(model.state_dict\(\)"),
    ],
)
def test_what_cannot_be_read_is_named(checkpoint, says):
    with pytest.raises(SpecError, match=says):
        import_dlrm(FIXTURES / checkpoint)


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["import-dlrm", str(FIXTURES / "module.pt"), "--out", str(tmp_path / "snap")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lpmon import-dlrm: ") and "state_dict()" in err
    assert not (tmp_path / "snap").exists()


def test_other_pickled_objects_are_never_unpickled(tmp_path):
    """A global beyond the numpy scalar types is refused before anything of it runs."""
    torch = pytest.importorskip("torch")
    ran = tmp_path / "ran"
    torch.save({"state_dict": {}, "hook": Exploit(str(ran))}, tmp_path / "evil.pt")
    with pytest.raises(SpecError, match=r"pickled Python object \(io.open\)"):
        import_dlrm(tmp_path / "evil.pt")
    assert not ran.exists()


class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
