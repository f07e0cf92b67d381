"""Imports that leave out a package a library would load only for a feature this code never uses:
torch through scikit-learn's array-API shim (skops' import), triton through torch's compiler stack
(an LSTM's training). Each is hundreds of MB in a training process."""

from __future__ import annotations

import sys
from contextlib import contextmanager

# torch imports its compiler stack (torch._dynamo, for torch.compile) when an optimizer is made or
# deterministic algorithms are turned on, and that stack imports triton, the GPU kernel compiler,
# wherever it is installed (CUDA builds of torch install it): 0.2 GB of each LSTM's training process
# at 500 symbols, for kernels an eager training on the CPU never compiles.
GPU_KERNEL_COMPILER = "triton"


@contextmanager
def shim_left_out(package: str):
    """While in the block, importing ``package`` (not yet imported) fails with ImportError, and
    ``importlib.util.find_spec`` finds nothing, as if it were not installed; afterwards it imports
    as usual."""
    if package in sys.modules:
        yield
        return
    sys.modules[package] = None  # type: ignore[assignment]  # Python's own marker: "import fails"
    try:
        yield
    finally:
        if sys.modules.get(package, "") is None:
            del sys.modules[package]


def import_torch_compiler_without_triton() -> None:
    """torch's compiler stack imported now, as if triton were not installed (:data:`GPU_KERNEL_COMPILER`);
    nothing when the stack or triton is already loaded."""
    with shim_left_out(GPU_KERNEL_COMPILER):
        import torch._dynamo  # noqa: F401
