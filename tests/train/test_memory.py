"""The RSS cross-check of :func:`xnorlab.train.memory.step_memory`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xnorlab.train import memory


@pytest.mark.skipif(memory._LIBC is None, reason="needs glibc (mallinfo2, malloc_trim)")
def test_rss_rise_sees_a_step_after_a_bigger_one_freed_its_pages():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048),
                        nn.ReLU(), nn.Linear(2048, 10))
    big = memory.step_memory(net, torch.rand(4096, 784), torch.randint(0, 10, (4096,)))
    small = memory.step_memory(net, torch.rand(2048, 784), torch.randint(0, 10, (2048,)))
    assert big["rss_rise_mb"] is not None and small["rss_rise_mb"] is not None
    # without the heap trimmed, the smaller step reused the bigger one's pages and read ~0
    assert small["rss_rise_mb"] > 0.5 * small["step_peak_bytes"] / 2**20 > 10
