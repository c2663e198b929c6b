#!/usr/bin/env python3
"""Summarises the JSON lines of compare.sh.

Runs are grouped by configuration, thread count and machine state: "quiet" when the run got
the cores it asked for (process CPU time per step >= --quiet-share (default 0.8) x threads x
wall time per step), "loaded" otherwise (other processes held the cores for part of the run;
the load average before the run is printed per run, but it lags and is a poor classifier). Per group and implementation: the median of every timed step (wall), the median of
the per-run process CPU time per step, the largest peak RSS, and the ratios nas / PyTorch
(above 1: nas is slower). GPU runs (`"device": "cuda"`) form their own groups (machine
"gpu": CPU time says nothing there); runs of PyTorch under torch.compile (`"impl":
"torch-compile"`) get their own columns, and GPU groups a second table of peak GPU memory (`gpu_peak_mib`) with
nas-ops' kernel launches per step (`gpu_kernel_launches_per_step`, nas's own kernels only).

    python3 benches/pytorch/summarize.py bench-results.jsonl [--quiet-share 0.8]
"""
import argparse
import json
import statistics
from collections import defaultdict


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--quiet-share", type=float, default=0.8)
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        c = r["config"]
        share = (r.get("cpu_ms_per_step") or 0) / (r["threads"] * r["ms_per_step"])
        if r.get("device", "cpu") != "cpu":
            state = "gpu"
        else:
            state = "quiet" if share >= a.quiet_share else "loaded"
        key = (c.get("strategy", "darts"), c["layers"], c["batch"], c["order"], r["threads"], state)
        groups[key][r["impl"]].append(r)
    print("| strategy | cells | batch | order | threads | machine | nas wall ms/step | PyTorch wall ms/step "
          "| wall ratio | nas CPU ms/step | PyTorch CPU ms/step | CPU ratio "
          "| nas peak RSS MiB | PyTorch peak RSS MiB | runs nas+torch "
          "| torch.compile wall ms/step | ratio nas / torch.compile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        g = groups[key]
        wall, cpu, rss = {}, {}, {}
        for impl in ("nas", "torch", "torch-compile"):
            runs = g.get(impl, [])
            wall[impl] = median([t for r in runs for t in r["step_ms"]])
            cpu[impl] = median([r["cpu_ms_per_step"] for r in runs if r.get("cpu_ms_per_step")])
            rss[impl] = max((r["peak_rss_mib"] or 0 for r in runs), default=float("nan"))
        n = f'{len(g.get("nas", []))}+{len(g.get("torch", []))}'
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {key[5]} "
              f"| {wall['nas']:.0f} | {wall['torch']:.0f} | {wall['nas'] / wall['torch']:.2f} "
              f"| {cpu['nas']:.0f} | {cpu['torch']:.0f} | {cpu['nas'] / cpu['torch']:.2f} "
              f"| {rss['nas']:.0f} | {rss['torch']:.0f} | {n} "
              f"| {wall['torch-compile']:.0f} | {wall['nas'] / wall['torch-compile']:.2f} |")
    gpu_keys = [k for k in sorted(groups) if k[5] == "gpu"]
    if gpu_keys:
        print()
        print("| strategy | cells | batch | order | nas peak GPU MiB | PyTorch peak GPU MiB "
              "| torch.compile peak GPU MiB | ratio nas / PyTorch | nas-ops launches/step |")
        print("|---|---|---|---|---|---|---|---|---|")
        for key in gpu_keys:
            peak = {}
            for impl in ("nas", "torch", "torch-compile"):
                vals = [r["gpu_peak_mib"] for r in groups[key].get(impl, []) if r.get("gpu_peak_mib")]
                peak[impl] = max(vals, default=float("nan"))
            launches = median([r["gpu_kernel_launches_per_step"] for r in groups[key].get("nas", [])
                               if r.get("gpu_kernel_launches_per_step") is not None])
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {peak['nas']:.0f} "
                  f"| {peak['torch']:.0f} | {peak['torch-compile']:.0f} "
                  f"| {peak['nas'] / peak['torch']:.2f} | {launches:.0f} |")
    params = defaultdict(set)
    for r in rows:
        params[(r["config"]["layers"], r["impl"])].add(r["supernet_params"])
    print()
    print("Parameters:", {f"{k[0]} cells {k[1]}": sorted(v) for k, v in sorted(params.items())})
    print()
    print("Per run (wall ms/step mean, CPU ms/step, load average before the run):")
    for key in sorted(groups):
        for impl in ("nas", "torch", "torch-compile"):
            for r in groups[key].get(impl, []):
                cpu = r.get("cpu_ms_per_step") or float("nan")
                steps = ", ".join(f"{t:.0f}" for t in r["step_ms"])
                print(f"  {key} {impl:5} rep {r['rep']}: {r['ms_per_step']:.0f} ms, CPU {cpu:.0f} ms "
                      f"(steps {steps}; load {r['load']})")


if __name__ == "__main__":
    main()
