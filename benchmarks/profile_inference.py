"""Where inference time goes: torch.profiler tables of the engine's three hot paths.

1. enhance-r1 sliding-window inference over a 1 mm brain (160 x 192 x 160);
2. the 8-flip ensemble of one enhance-r1 fold through ``predict_arrays`` (1 mm);
3. the mrf-lesion 2D U-Net over a 2 mm brain (82 x 100 x 82, 35 frames).

Each prints its operators by self CPU time (or CUDA time on a GPU), and the share of
the wall time spent outside the network (blending, flips, normalisation, inversion).
On a CPU it then times the enhance-r1 whole-volume pass (1 mm) and the mrf-lesion
network (2 mm) with contiguous and with channels-last memory (median of 3 after a
warm-up), and what enhance-r1's interpolating decoder costs: its whole-volume pass at
1 mm profiled by operator and input shape, and one training step (8 patches of 32^3,
one thread) with the task's decoder and with transposed convolutions. Untrained weights
of the tasks' sizes; time does not depend on them.

Run: ``python benchmarks/profile_inference.py [--device cuda] [--rows 12]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _table(run, device: str, rows: int, title: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    run()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
        if device == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - start
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    network = sum(e.cpu_time_total for e in averages if e.key.startswith("aten::convolution")
                  ) / 1e6
    print(f"\n## {title}: {wall:.2f} s under the profiler; convolutions {network:.2f} s "
          f"({network / wall:.0%})")
    print(averages.table(sort_by=key, row_limit=rows))


def _median_seconds(run) -> float:
    """Median seconds of 3 runs of ``run()`` after a warm-up run."""
    import statistics

    run()
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _memory_formats(make, shape: tuple[int, ...], predict, title: str) -> None:
    """Print the median seconds of ``predict(network, x)`` with contiguous and with
    channels-last memory (CPU; fresh network and input per format)."""
    import torch

    from lesionkit.infer import channels_last

    seconds = {}
    for name in ("contiguous", "channels-last"):
        torch.manual_seed(0)
        network = make().eval()
        x = torch.randn(*shape)
        if name == "channels-last":
            x = channels_last(network, x)
        with torch.inference_mode():
            seconds[name] = _median_seconds(lambda n=network, v=x: predict(n, v))
    print(f"{title}: contiguous {seconds['contiguous']:.2f} s, channels-last "
          f"{seconds['channels-last']:.2f} s")


def _decoder_cost(task, rows: int) -> None:
    """Profile enhance-r1's whole-volume pass at 1 mm by operator and input shape, and
    time one training step with the task's up-sampling and with transposed convolutions
    (``upsample="deconv"``), on one thread."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lesionkit.infer import channels_last
    from lesionkit.models import build_network

    torch.manual_seed(0)
    network = build_network(task.network, 1, 1, **task.network_kwargs).eval()
    x = channels_last(network, torch.randn(1, 1, 160, 192, 160))
    with torch.inference_mode():
        network(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            network(x)
    print("\n## enhance-r1 whole-volume pass, 1 mm, by operator and input shape")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                              row_limit=rows))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    patches, target = torch.randn(8, 1, 32, 32, 32), torch.randn(8, 1, 32, 32, 32)
    for name, upsample in ((f"{task.network_kwargs.get('upsample', 'deconv')} (the task's)",
                            task.network_kwargs.get("upsample", "deconv")),
                           ("deconv (transposed convolutions)", "deconv")):
        net = build_network(task.network, 1, 1, **{**task.network_kwargs,
                                                   "upsample": upsample}).train()
        optimiser = torch.optim.Adam(net.parameters())

        def step(net=net, optimiser=optimiser) -> None:
            optimiser.zero_grad()
            ((net(patches) - target) ** 2).mean().backward()
            optimiser.step()

        print(f"enhance-r1 U-Net training step, 8 x 32^3, 1 thread, up-sampling {name}: "
              f"{_median_seconds(step):.2f} s")
    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from lesionkit.infer import channels_last, predict_arrays
    from lesionkit.model_folder import FoldModel, TrainedModel, make_network
    from lesionkit.models import build_network
    from lesionkit.tasks import get_task

    device = args.device
    torch.manual_seed(0)
    task = get_task("enhance-r1")
    network = make_network(task, 1).to(device).eval()
    x = channels_last(network, torch.randn(1, 1, 160, 192, 160, device=device))
    with torch.inference_mode():
        _table(lambda: task.inference.predict(network, x), device, args.rows,
               "enhance-r1 sliding windows, 1 mm")
    identity = {s.key: {"shift": 0.0, "scale": 1.0}
                for s in (*task.prediction_inputs, *task.dense_targets)}
    model = TrainedModel(Path("."), task, {}, (FoldModel(network, identity),))
    inputs = {s.key: np.random.default_rng(0).random((1, 160, 192, 160), dtype=np.float32)
              for s in task.prediction_inputs}
    _table(lambda: predict_arrays(model, inputs, tta=8, device=device), device, args.rows,
           "enhance-r1, 1 fold x 8 flips through predict_arrays, 1 mm")
    mrf = get_task("mrf-lesion")
    network = build_network(mrf.network, 35, mrf.out_channels, **mrf.network_kwargs)
    network = network.to(device).eval()
    x = channels_last(network, torch.randn(1, 35, 82, 100, 82, device=device))
    with torch.inference_mode():
        _table(lambda: mrf.inference.predict(network, x), device, args.rows,
               "mrf-lesion 2D U-Net, 2 mm")
    if device == "cpu":
        print("\n## Memory format (CPU)")
        _memory_formats(lambda: make_network(task, 1), (1, 1, 160, 192, 160),
                        lambda n, v: n(v), "enhance-r1 U-Net, whole-volume pass, 1 mm")
        _memory_formats(lambda: build_network(mrf.network, 35, mrf.out_channels,
                                              **mrf.network_kwargs),
                        (1, 35, 82, 100, 82), mrf.inference.predict,
                        "mrf-lesion 2D U-Net, 2 mm")
        network = build_network(mrf.network, 35, mrf.out_channels, **mrf.network_kwargs).eval()
        x = channels_last(network, torch.randn(1, 35, 82, 100, 82))
        with torch.inference_mode():
            for slices in (4, 8, 82):
                network.slices_per_pass = slices
                print(f"mrf-lesion 2D U-Net, 2 mm, channels-last, passes of {slices} slices: "
                      f"{_median_seconds(lambda n=network: n(x)):.2f} s")
        _decoder_cost(task, args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
