#!/usr/bin/env python3
"""Summarises the JSON lines of compare.sh: per configuration and implementation, the median
of every timed step over all runs, the per-run means, the largest peak RSS, and the ratio
nas / PyTorch of the medians (above 1: nas is slower).

    python3 benches/pytorch/summarize.py bench-results.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        c = r["config"]
        key = (c["layers"], c["batch"], c["order"], r["threads"])
        groups[key][r["impl"]].append(r)
    print("| cells | batch | order | threads | nas ms/step (median) | PyTorch ms/step (median) "
          "| nas / PyTorch | nas CPU ms/step | PyTorch CPU ms/step | CPU ratio | nas peak RSS MiB | PyTorch peak RSS MiB | runs | params nas / torch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        g = groups[key]
        med, rss, params, cpu = {}, {}, {}, {}
        for impl in ("nas", "torch"):
            runs = g.get(impl, [])
            steps = [t for r in runs for t in r["step_ms"]]
            med[impl] = statistics.median(steps) if steps else float("nan")
            cpus = [r["cpu_ms_per_step"] for r in runs if r.get("cpu_ms_per_step")]
            cpu[impl] = statistics.median(cpus) if cpus else float("nan")
            rss[impl] = max((r["peak_rss_mib"] or 0 for r in runs), default=float("nan"))
            params[impl] = {r["supernet_params"] for r in runs}
        ratio = med["nas"] / med["torch"]
        n = f'{len(g.get("nas", []))}+{len(g.get("torch", []))}'
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {med['nas']:.0f} | {med['torch']:.0f} "
              f"| {ratio:.2f} | {cpu['nas']:.0f} | {cpu['torch']:.0f} | {cpu['nas'] / cpu['torch']:.2f} | {rss['nas']:.0f} | {rss['torch']:.0f} | {n} "
              f"| {sorted(params['nas'])} / {sorted(params['torch'])} |")
    print()
    print("Per run (ms/step mean, load average before the run):")
    for key in sorted(groups):
        for impl in ("nas", "torch"):
            for r in groups[key].get(impl, []):
                print(f"  {key} {impl:5} rep {r['rep']}: {r['ms_per_step']:.0f} ms, CPU {r.get('cpu_ms_per_step') or float('nan'):.0f} ms "
                      f"(steps {', '.join(f'{t:.0f}' for t in r['step_ms'])}; load {r['load']})")


if __name__ == "__main__":
    main()
