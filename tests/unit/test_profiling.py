import torch

from lpt_probe.runs.profiling import tensor_memory


def test_tensor_memory_is_the_peak_of_live_tensors_created_in_the_block():
    held = torch.zeros(2**20)  # 4 MiB from before: not counted
    with tensor_memory() as mem:
        a = torch.zeros(2**20)  # 4 MiB
        b = torch.zeros(2**21)  # + 8 -> 12 MiB, the peak
        del a
        c = torch.zeros(2**19)  # 8 + 2 = 10 MiB
        del b, c
    assert abs(mem["peak_mb"] - 12.0) < 0.01
    assert held.numel() == 2**20


def test_tensor_memory_sees_what_backward_keeps():
    w = torch.randn(256, 256, requires_grad=True)
    x = torch.randn(1024, 256)
    with tensor_memory() as frozen:
        with torch.no_grad():
            (x @ w).relu().sum()
    with tensor_memory() as train:
        (x @ w).relu().sum().backward()
    assert train["peak_mb"] > frozen["peak_mb"] >= 1.0  # the 1 MiB product at least
    assert w.grad is not None
