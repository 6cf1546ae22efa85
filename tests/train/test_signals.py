"""SIGTERM inside `sigterm_raises` is an exception, and the old handler comes back after."""

from __future__ import annotations

import os
import signal
import time

import pytest

from xnorlab.train.signals import Terminated, sigterm_raises


def test_sigterm_raises_inside_the_block_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="SIGTERM"), sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises as soon as Python sees the signal
    assert signal.getsignal(signal.SIGTERM) is before
