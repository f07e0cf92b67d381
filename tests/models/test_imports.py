"""Imports that leave a package out: only within the block, and an LSTM trains without triton."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from trading_ml.models.imports import GPU_KERNEL_COMPILER, shim_left_out

# A small LSTM fit in a fresh process: which of triton and torch's compiler stack it loaded, and its weights.
TRAIN_A_SMALL_LSTM = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd, torch
    {preload}
    from trading_ml.models import lstm
    from trading_ml.models.base import LSTMParams
    stamps = pd.date_range("2020-01-01", periods=80, tz="UTC")
    table = pd.DataFrame(index=pd.MultiIndex.from_product([stamps, ["A", "B"]], names=["timestamp", "symbol"]))
    values = np.random.default_rng(0).normal(size=(len(table), 3)).astype(np.float32)
    sequences = lstm.Sequences(table, 5, lambda rows: values[rows])
    targets = torch.from_numpy(values[sequences.row_of, :1].copy())
    lstm.seed_everything(0)
    net = lstm.LSTMNet(3, 4, 1)
    positions = np.arange(len(sequences.row_of))
    params = LSTMParams(sequence_length=5, hidden=4, epochs=2, batch=16)
    lstm.fit(net, sequences, targets, positions[:100], positions[100:], torch.nn.MSELoss(), params, seed=0)
    weights = sum(float(p.double().abs().sum()) for p in net.parameters())
    print("{gpu}" in sys.modules, "torch._dynamo" in sys.modules, repr(weights))
    """
)


def small_lstm_fit(preload: str = "") -> list[str]:
    script = TRAIN_A_SMALL_LSTM.format(preload=preload, gpu=GPU_KERNEL_COMPILER)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_an_lstm_trains_without_loading_triton_and_learns_what_it_learns_with_it():
    loaded_gpu_compiler, loaded_compiler_stack, weights = small_lstm_fit()
    assert (loaded_gpu_compiler, loaded_compiler_stack) == ("False", "True")
    if importlib.util.find_spec(GPU_KERNEL_COMPILER) is None:
        pytest.skip(f"{GPU_KERNEL_COMPILER} is not installed: nothing to compare with")
    with_it = small_lstm_fit(preload=f"import {GPU_KERNEL_COMPILER}")
    assert with_it == ["True", "True", weights]


def test_a_left_out_module_fails_to_import_only_within_the_block(tmp_path, monkeypatch):
    (tmp_path / "left_out_probe.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with shim_left_out("left_out_probe"), pytest.raises(ImportError):
        import left_out_probe  # noqa: F401
    with shim_left_out("left_out_probe"):
        assert importlib.util.find_spec("left_out_probe") is None
    import left_out_probe

    assert left_out_probe.VALUE == 1
    with shim_left_out("left_out_probe"):  # already imported: left as it is
        assert sys.modules["left_out_probe"] is left_out_probe
    monkeypatch.delitem(sys.modules, "left_out_probe")
