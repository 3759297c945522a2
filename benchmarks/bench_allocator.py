"""Does the C allocator slow CPU training? The recipe's step (Micro-Net-252, width 0.25, batch 8
of 252², bf16 autocast, channels_last, AdamW) timed in fresh processes under glibc malloc
settings: the default, :func:`micronet._allocator.keep_freed_memory` (``mallopt`` at run time:
what ``micronet train`` does on CPU), transparent huge pages for malloc's arenas
(``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``), and no trimming/unmapping set at process start.

A ``strace -c`` of the 105/120-minute recipe runs showed munmap/brk calls taking several ms each
and ~20 % system time: activations larger than malloc's mmap threshold are mapped and unmapped
every step, and each fresh page faults on first touch.

    python benchmarks/bench_allocator.py [--steps 8] [--out benchmarks/results/allocator.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

VARIANTS = {
    "default": {},
    "keep_freed_memory()": {"MICRONET_BENCH_MALLOPT": "1"},  # what `micronet train` does
    "hugetlb": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "no-trim": {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967295:"
                                  "glibc.malloc.trim_threshold=4294967295"},
    "hugetlb+no-trim": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:"
                                          "glibc.malloc.mmap_threshold=4294967295:"
                                          "glibc.malloc.trim_threshold=4294967295"},
}


def child(steps: int, warmup: int, batch: int, **model_kwargs: str) -> None:
    """Time the recipe's training step in this process (``model_kwargs``, e.g. ``act``, passed to
    ``create``); print JSON."""
    import resource

    import torch

    from micronet.models import count_flops, create
    from micronet.train.bench import time_steps
    from micronet.train.step import model_input, training_step

    if os.environ.get("MICRONET_BENCH_MALLOPT"):
        from micronet._allocator import keep_freed_memory

        assert keep_freed_memory()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = create("micronet252", width=0.25, **model_kwargs).train()
    model = model.to(memory_format=torch.channels_last)
    x = model_input(torch.randint(0, 256, (batch, 3, 252, 252)).float(), True)
    target = torch.randint(0, 3, (batch, 252, 252))
    weight = torch.ones(batch, 252, 252)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        training_step(model, opt, x, target, weight, amp=torch.bfloat16, aux_weight=1.0)

    before = resource.getrusage(resource.RUSAGE_SELF)
    warm, per_step = time_steps(step, torch.device("cpu"), steps, warmup)
    after = resource.getrusage(resource.RUSAGE_SELF)
    flops = 3 * count_flops(model) * batch  # counted on meta copies of its weights
    print(json.dumps({"step_s": per_step, "samples_per_s": batch / per_step,
                      "gflops": flops / per_step / 1e9,
                      "sys_share": (after.ru_stime - before.ru_stime)
                      / max(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
                            1e-9),
                      "minor_faults": after.ru_minflt - before.ru_minflt,
                      "peak_rss_gib": after.ru_maxrss / 2**20}))


def bench_args(description: str) -> argparse.Namespace:
    """The options every step-timing benchmark here shares."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternate the variants this often")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def alternate(script: str, variants: dict[str, dict[str, str]], args: argparse.Namespace
              ) -> dict[str, list[dict[str, float]]]:
    """Run ``script --child`` in a fresh process per variant (its environment added), the
    variants alternating ``args.rounds`` times; the children's JSON figures by variant."""
    results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, env in variants.items():
            out = subprocess.run([sys.executable, script, "--child", "--steps", str(args.steps),
                                  "--warmup", str(args.warmup), "--batch", str(args.batch)],
                                 env={**os.environ, **env}, capture_output=True, text=True,
                                 check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(name, results[name][-1], flush=True)
    return results


def run_variants(script: str, doc: str, variants: dict[str, dict[str, str]],
                 child_fn: Callable[[int, int, int], None]
                 ) -> tuple[argparse.Namespace, dict[str, dict[str, float]]] | None:
    """A step benchmark's command line: as ``--child`` time one variant with ``child_fn(steps,
    warmup, batch)`` and return None; else alternate the variants and return the best (fastest
    step) figures of each."""
    args = bench_args(doc.split("\n\n")[0])
    if args.child:
        child_fn(args.steps, args.warmup, args.batch)
        return None
    results = alternate(script, variants, args)
    return args, {name: min(runs, key=lambda r: r["step_s"]) for name, runs in results.items()}


def report(args: argparse.Namespace, script: str, title: str, variant: str,
           best: dict[str, dict[str, float]], extra: dict[str, Callable[[dict[str, float]], str]]
           ) -> None:
    """Print the results table (a row per variant: its best step, samples/s and GFLOP/s, then
    the ``extra`` columns, each a header and a cell formatter) and write it, with the command
    that measured it, to ``--out``."""
    header = [variant, "best step (s)", "samples/s", "GFLOP/s", *extra]
    rows = [[name, f"{b['step_s']:.3f}", f"{b['samples_per_s']:.2f}", f"{b['gflops']:.0f}",
             *(cell(b) for cell in extra.values())] for name, b in best.items()]
    table = "\n".join(["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
                       *("| " + " | ".join(row) + " |" for row in rows)])
    print(table)
    if args.out:
        args.out.write_text(f"# {title}\n\n`python benchmarks/{Path(script).name} --steps "
                            f"{args.steps} --rounds {args.rounds} --batch {args.batch}` (best of "
                            f"{args.rounds} fresh processes each, variants alternating; 2 threads)"
                            f"\n\n{table}\n")


def compare(script: str, doc: str, variants: dict[str, dict[str, str]],
            child_fn: Callable[[int, int, int], None], title: str, variant: str, baseline: str,
            ratio: str, extra: Callable[[argparse.Namespace], dict[str, Callable[
                [dict[str, float]], str]]] | None = None) -> None:
    """A step benchmark's whole command line: time the variants (or, as ``--child``, one), then
    report each one's speed against ``baseline`` in the ``ratio`` column, plus ``extra(args)``."""
    ran = run_variants(script, doc, variants, child_fn)
    if ran is None:
        return
    args, best = ran
    base = best[baseline]["step_s"]
    report(args, script, title, variant, best,
           {ratio: lambda b: f"{base / b['step_s']:.2f}×", **(extra(args) if extra else {})})


def main() -> None:
    def columns(args: argparse.Namespace) -> dict[str, Callable[[dict[str, float]], str]]:
        steps = args.steps + args.warmup
        return {"system time": lambda b: f"{b['sys_share']:.0%}",
                "page faults / step": lambda b: f"{b['minor_faults'] / steps:,.0f}",
                "peak RSS (GiB)": lambda b: f"{b['peak_rss_gib']:.2f}"}

    compare(__file__, __doc__, VARIANTS, child, "C allocator settings and the CPU training step",
            "malloc setting", "default", "vs default", columns)

if __name__ == "__main__":
    main()
