"""Thread counts: cores from affinity and cgroup quota, busy cores, torch and BLAS.

The autouse fixture in conftest.py puts the thread counts back after each test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from lesionkit import threads


def test_cgroup_quota_caps_the_cores(tmp_path, monkeypatch):
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    quota.write_text("max 100000\n")
    assert threads.available_cores() == 4
    quota.write_text("250000 100000\n")  # 2.5 CPUs of quota
    assert threads.available_cores() == 2
    quota.write_text("50000 100000\n")  # half a CPU: still one thread
    assert threads.available_cores() == 1


def test_busy_cores_counts_other_runnable_threads(tmp_path, monkeypatch):
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "LOADAVG", loadavg)
    loadavg.write_text("1.20 0.80 0.50 3/412 12345\n")  # this process and 2 others running
    assert threads.busy_cores(samples=3, interval_s=0) == 2
    loadavg.write_text("0.00 0.00 0.00 1/300 12345\n")
    assert threads.busy_cores(samples=1) == 0
    monkeypatch.setattr(threads, "LOADAVG", tmp_path / "absent")
    assert threads.busy_cores() == 0


def test_default_threads_leaves_room_for_workers_and_other_jobs(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 3)
    assert threads.default_threads() == 5
    assert threads.default_threads(workers=2) == 3
    assert threads.default_threads(workers=16) == 1
    assert threads.default_threads(processes=2) == 2  # 5 free cores for 2 DDP processes
    assert threads.default_threads(workers=1, processes=2) == 1


def test_use_threads_sets_torch_and_blas():
    assert threads.use_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_worker_init_limits_blas_to_one_thread():
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=2, user_api="blas")
    assert any(pool["num_threads"] == 2 for pool in threadpool_info()
               if pool["user_api"] == "blas")
    threads.worker_init(0)
    assert all(pool["num_threads"] == 1 for pool in threadpool_info()
               if pool["user_api"] == "blas")


def test_worker_init_seeds_workers_as_lightning_does(monkeypatch):
    from lightning.fabric.utilities.seed import pl_worker_init_function

    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    torch.manual_seed(7)
    threads.worker_init(3, rank=1)
    ours = torch.rand(3), np.random.rand(3)
    torch.manual_seed(7)
    pl_worker_init_function(3, rank=1)
    theirs = torch.rand(3), np.random.rand(3)
    assert torch.equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_pytest_workers_compute_on_one_thread():
    """Each ``pytest -n N`` worker (pyproject's addopts) runs torch, OpenMP and BLAS on one
    thread, so that N workers do not oversubscribe the cores (conftest)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("not a pytest-xdist worker (run with -n 0)")
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())
