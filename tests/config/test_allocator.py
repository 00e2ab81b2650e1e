import ctypes
import platform

import pytest

from config import allocator


class _LibraryWithoutMallopt:
    def __init__(self, name):
        self.name = name


class _LibraryRejectingMallopt:
    def __init__(self, name):
        self.mallopt = lambda parameter, value: 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_thresholds_fixed_on_glibc():
    assert allocator.fix_malloc_thresholds() is True


def test_thresholds_without_mallopt(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", _LibraryWithoutMallopt)

    assert allocator.fix_malloc_thresholds() is False


def test_thresholds_rejected_by_mallopt(monkeypatch, caplog):
    monkeypatch.setattr(ctypes, "CDLL", _LibraryRejectingMallopt)

    assert allocator.fix_malloc_thresholds() is False
    assert "failed to fix the malloc thresholds" in caplog.text
