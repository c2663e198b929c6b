#!/usr/bin/env python3
"""The most tensor memory PyTorch holds during one DARTS search step, without a GPU.

PyTorch's profiler follows every tensor's allocation and release during the step
(`profile_memory=True`; the memory timeline of `export_memory_timeline`, for the CPU), so
this is the counterpart of `torch.cuda.max_memory_allocated` for the tensors a GPU would hold
(the same ones are saved for the backward pass), without the CUDA caching allocator's
rounding and cuDNN's workspaces. It is what `nas bench --device cuda` reports as
`gpu_peak_mib` against, when no GPU is at hand (docs/performance.md): an estimate of the GPU
figure, not a measurement of it.

The network and the step are `darts_step.py`'s (`SearchNetwork`, `Search.step`); one step
runs first as a warm-up, the second is recorded.

Usage: python3 benches/pytorch/memory_timeline.py [--layers 8] [--channels 16] [--batch 64]
           [--size 32] [--order first]
Prints one JSON line: the peak and the starting tensor memory in MiB.
"""
import argparse
import json
import os
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import darts_step  # noqa: E402  (the reference network and step, beside this file)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    darts_step.add_step_arguments(ap)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = darts_step.SearchNetwork(args.channels, args.layers).train()
    search = darts_step.Search(net, args.order)

    def batch():
        x = torch.randn(args.batch, 3, args.size, args.size)
        return x, torch.randint(0, 10, (args.batch,))

    (xt, yt), (xv, yv) = batch(), batch()
    search.step(xt, yt, xv, yv)
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        search.step(xt, yt, xv, yv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as f:
            _, sizes = json.load(f)
    totals = [sum(s) for s in sizes]
    mib = 1 / 2**20
    print(json.dumps({
        "config": vars(args),
        "torch": torch.__version__,
        "peak_tensor_mib": max(totals) * mib,
        "start_tensor_mib": totals[0] * mib,
    }))


if __name__ == "__main__":
    main()
