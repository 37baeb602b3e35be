"""Run the ConvLSTM benchmark suite: each case in its own ``worker.py`` process.

    python benchmarks/run.py                      # full run, one round (~8 min on 2 cores)
    python benchmarks/run.py --quick              # smoke run: 1 warm-up, 1 timed iteration
    python benchmarks/run.py --only convlstm,limit --workload W2
    python benchmarks/run.py --ablations          # add convlstm diagnostic variants
    python benchmarks/run.py --rounds 3           # every speed case 3 times, round-robin
    python benchmarks/run.py --first-call-only    # only the first-call rows (cold, warm)
    python benchmarks/run.py --skip-avx2          # no rows limited to AVX2

Writes ``results/bench.json`` and ``results/bench.md`` (``bench-quick.*`` with
``--quick``) and prints the tables. See README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from workloads import WORKLOADS

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
RESULT_PREFIX = "BENCH_RESULT "
# Every worker, of every implementation, runs with glibc malloc keeping freed memory
# (what `convlstm.runtime.configure_malloc` and the `convlstm` command set): otherwise
# each tensor above 32 MiB is mmap-ed and page-faulted afresh on every step.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
              "MALLOC_TOP_PAD_": str(64 << 20)}  # fmt: skip
OURS = "convlstm"
PEERS = ("keras-torch", "keras-tf", "conv-lstm")
IMPLS = (OURS, "convgru", *PEERS, "limit")
MEMORY_STEPS = (30, 120)

# Timing per case: warm-up iterations (torch.compile / tf.function tracing happen in
# the first), then at least MIN and at most MAX timed iterations, stopping once the
# timed iterations add up to BUDGET seconds.
FULL = {"warmup": 2, "min_iters": 3, "iters": 10, "budget": 10.0}
QUICK = {"warmup": 1, "min_iters": 1, "iters": 1, "budget": 0.0}
SLOW = {"warmup": 1, "min_iters": 3, "iters": 3, "budget": 0.0}  # keras-torch
MEMORY = {"warmup": 1, "min_iters": 2, "iters": 2, "budget": 0.0}
# First-call rows: no warm-up; the first timed step is the first use, the later ones
# give the step time it is compared with.
FIRST_CALL = {"warmup": 0, "min_iters": 4, "iters": 4, "budget": 0.0}
QUICK_FIRST_CALL = {"warmup": 0, "min_iters": 2, "iters": 2, "budget": 0.0}
FIRST_CALL_IMPLS = (OURS, "convgru", *PEERS)
COLD, WARM = "first call, cold cache", "first call, warm cache"
BF16 = "bf16 autocast"
# The "avx2" rows: every library held to AVX2 as on most CPUs (no AVX-512), in the same
# run as the full-ISA rows. oneDNN (PyTorch's and TensorFlow's convolutions) reads
# ONEDNN_MAX_CPU_ISA, ATen's kernels and Inductor's generated loops ATEN_CPU_CAPABILITY,
# MKL (PyTorch's matrix products) MKL_ENABLE_INSTRUCTIONS, and convlstm's hand-written
# loops run their AVX2 build (chosen by ATen's capability). TensorFlow's own (Eigen)
# kernels keep the instructions its wheel was compiled for, which exclude AVX-512.
AVX2 = "avx2"
ISA_ENV = {AVX2: {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                  "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}  # fmt: skip


@dataclass(frozen=True)
class Case:
    impl: str
    workload: str
    mode: str  # "train" or "infer"
    variant: str = ""  # convlstm variants: "bf16", "checkpoint", ablations
    flags: tuple[str, ...] = ()
    steps: int | None = None
    group: str = "speed"  # "speed", "memory", "ablation" or "first-call"
    isa: str = ""  # "" (all the CPU has) or "avx2" (ISA_ENV)

    @property
    def label(self) -> str:
        return f"{self.impl} [{self.variant}]" if self.variant else self.impl

    @property
    def timed(self) -> bool:
        """A speed row (run every round), not a once-only memory or first-call row."""
        return self.group in ("speed", "ablation")


def plan_cases(
    impls: list[str],
    workloads: list[str],
    ablations: bool,
    memory: bool = True,
    first_call: bool = True,
    speed: bool = True,
    avx2: bool = True,
) -> list[Case]:
    isas = ("", AVX2) if avx2 else ("",)
    cases: list[Case] = []
    if first_call:  # each implementation's cold case, then its warm one, back to back
        for wl in workloads:
            for isa in isas:
                for impl in (i for i in FIRST_CALL_IMPLS if i in impls):
                    cases += [Case(impl, wl, "train", v, group="first-call", isa=isa)
                              for v in (COLD, WARM)]  # fmt: skip
            if OURS in impls:  # bfloat16 autocast, where its loops are built for it
                cases += [Case(OURS, wl, "train", f"{BF16}, {v}", ("--bf16",), group="first-call")
                          for v in (COLD, WARM)]  # fmt: skip
    if not speed:
        return cases
    for wl in workloads:
        for mode in ("train", "infer"):
            cases += [Case(impl, wl, mode, isa=isa) for isa in isas for impl in IMPLS
                      if impl in impls]  # fmt: skip
            if OURS in impls:
                cases.append(Case(OURS, wl, mode, BF16, ("--bf16",)))
            if OURS in impls and ablations:
                cases += [
                    Case(OURS, wl, mode, "fusion=never", ("--fusion", "never"), group="ablation"),
                    Case(OURS, wl, mode, "NCHW", ("--no-channels-last",), group="ablation"),
                    Case(OURS, wl, mode, "unfused, batched input proj",
                         ("--unfused", "batched"), group="ablation"),
                    Case(OURS, wl, mode, "unfused, per-step input proj",
                         ("--unfused", "per-step"), group="ablation"),
                    Case(OURS, wl, mode, "generated gate loops", ("--generated-gates",),
                         group="ablation"),
                    Case(OURS, wl, mode, "bf16, generated gate loops",
                         ("--bf16", "--generated-gates"), group="ablation"),
                ]
    if memory and OURS in impls and "W1" in workloads:
        ckpt = ("--checkpoint",)
        for steps in MEMORY_STEPS:
            cases += [
                Case(OURS, "W1", "train", "", (), steps, "memory"),
                Case(OURS, "W1", "train", "checkpoint", ckpt, steps, "memory"),
                # checkpoint=True with the compiled gate kernel may fail; eager gates:
                Case(OURS, "W1", "train", "checkpoint, fusion=never",
                     (*ckpt, "--fusion", "never"), steps, "memory"),
            ]  # fmt: skip
    return cases


def run_case(
    case: Case,
    quick: bool,
    timeout: float,
    threads: int | None,
    malloc: dict[str, str],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one case in a fresh interpreter and parse the JSON line it prints."""
    if case.group == "first-call":
        timing = QUICK_FIRST_CALL if quick else FIRST_CALL
    elif quick:
        timing = QUICK
    elif case.group == "memory":
        timing = MEMORY
    else:
        timing = SLOW if case.impl == "keras-torch" else FULL
    cmd = [sys.executable, str(WORKER), "--impl", case.impl, "--workload", case.workload]
    cmd += ["--mode", case.mode, *case.flags]
    if case.steps:
        cmd += ["--steps", str(case.steps)]
    for key, value in timing.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    if case.group == "memory":
        cmd.append("--heap")
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **malloc}
    env.update(ISA_ENV.get(case.isa, {}))
    env.update(extra_env or {})
    row: dict[str, Any] = {
        "impl": case.impl,
        "label": case.label,
        "variant": case.variant,
        "workload": case.workload,
        "mode": case.mode,
        "group": case.group,
        "isa": case.isa,
        "steps": case.steps or WORKLOADS[case.workload].steps,
        "load1_before": round(os.getloadavg()[0], 2),
    }
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout", "reason": f"no result within {timeout:.0f} s"}
    row["wall_s"] = round(time.perf_counter() - start, 1)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**row, "status": "error", "reason": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result = {**row, **json.loads(lines[-1][len(RESULT_PREFIX) :])}
    if case.group == "first-call" and result.get("status") == "ok":
        times = result["times_s"]
        result["first_s"] = times[0]
        result["later_s"] = sorted(times[1:])[(len(times) - 2) // 2]  # lower median
        result["first_ratio"] = result["first_s"] / result["later_s"]
    return result


class CompileCaches:
    """A private compile cache per (implementation, workload) for the first-call rows:
    its cold case starts from an empty one, its warm case reuses what the cold case
    left. The user's own caches are never read or touched."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="convlstm-bench-cache-"))

    def env(self, case: Case) -> dict[str, str]:
        dtype = "-bf16" if case.variant.startswith(BF16) else ""
        path = self.root / f"{case.impl}{dtype}-{case.workload}-{case.isa or 'native'}"
        if case.variant.endswith(COLD):
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        # Inductor's (and so torch.compile's and convlstm's run-time C++ builds') cache.
        return {"TORCHINDUCTOR_CACHE_DIR": str(path / "inductor")}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- rounds
def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's runs over the rounds as one row: the run of the median time (the
    lower middle one for an even count), with every round's time and the highest
    peak RSS of all."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return runs[-1]
    ordered = sorted(ok, key=lambda r: r["median_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        row["rounds_s"] = [r["median_s"] if r.get("status") == "ok" else None for r in runs]
        row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
    return row


def paired_bf16_speedups(rounds: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Median over the rounds of convlstm's float32 time / its bfloat16 time, both
    from the same round (run one after the other), per (workload, mode)."""
    ratios: dict[str, list[float]] = {}
    for runs in rounds:
        ours = [r for r in runs
                if r["impl"] == OURS and r.get("status") == "ok" and not r.get("isa")]
        by_key = {(r["workload"], r["mode"], r["variant"]): r for r in ours}
        for (wl, mode, variant), r in by_key.items():
            fp32 = by_key.get((wl, mode, ""))
            if variant == BF16 and fp32 is not None:
                ratios.setdefault(f"{wl} {mode}", []).append(fp32["median_s"] / r["median_s"])
    return {key: sorted(v)[(len(v) - 1) // 2] for key, v in ratios.items()}


# ---------------------------------------------------------------- derived metrics
def derive(rows: list[dict[str, Any]]) -> None:
    """GFLOP/s, percent of the limit, and convlstm's speedup over each peer."""
    ok = [r for r in rows if r.get("status") == "ok"]
    for r in ok:
        r["gflops"] = r["gflop"] / r["median_s"]

    def find(impl: str, wl: str, mode: str, isa: str) -> dict[str, Any] | None:
        for r in ok:
            if (r["impl"], r["workload"], r["mode"], r["variant"], r["group"],
                    r.get("isa", "")) == (impl, wl, mode, "", "speed", isa):  # fmt: skip
                return r
        return None

    for r in ok:  # each row against the rows of its own instruction set
        isa = r.get("isa", "")
        limit = find("limit", r["workload"], r["mode"], isa)
        if limit is not None and r["group"] not in ("memory", "first-call"):
            r["pct_of_limit"] = 100 * r["gflops"] / limit["gflops"]
        ours = find(OURS, r["workload"], r["mode"], isa)
        if r["impl"] in PEERS and r["group"] == "speed" and ours is not None:
            speedup = r["median_s"] / ours["median_s"]
            r["convlstm_speedup"] = speedup
            ours.setdefault("speedup_over", {})[r["impl"]] = speedup


# ---------------------------------------------------------------- reporting
def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def row_note(r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return f"**{r.get('status')}**: {r.get('reason', '')}"
    if r["group"] == "first-call":
        return "later steps: " + " / ".join(fmt(t, ".2f") for t in r["times_s"][1:])
    notes = [r["note"]] if r.get("note") else []
    if "max_abs_err_vs_fp32" in r:
        notes.append(f"max abs err vs fp32 {r['max_abs_err_vs_fp32']:.2e}")
    if r["impl"] == "keras-tf":
        notes.append(f"tf.function, jit_compile={r.get('jit_compile')}")
    if r.get("isa") and r.get("cpu_capability"):  # the limit as the worker saw it
        notes.append(f"ATen {r['cpu_capability']}")
    if r["impl"] == "limit":
        notes.append("convs only")
    if r.get("rounds_s"):
        notes.append("rounds: " + " / ".join(fmt(t, ".3f") for t in r["rounds_s"]))
    return "; ".join(notes)


# (column header, result key, format) of the speed tables
SPEED_COLUMNS = (
    ("s/iter (median)", "median_s", ".3f"),
    ("min", "min_s", ".3f"),
    ("CPU s/iter", "cpu_median_s", ".2f"),
    ("GFLOP/s", "gflops", ".1f"),
    ("% of limit", "pct_of_limit", ".0f"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"),
    ("convlstm speedup", "convlstm_speedup", ".2f"),
)


def speed_table(rows: list[dict[str, Any]], wl: str, mode: str, isa: str = "") -> list[str]:
    held = f", every library held to {isa.upper()}" if isa else ""
    lines = [
        f"### {wl} {mode}{held} — {WORKLOADS[wl].describe()}",
        "",
        "| implementation | " + " | ".join(c[0] for c in SPEED_COLUMNS) + " | note |",
        "|---|" + "---:|" * len(SPEED_COLUMNS) + "---|",
    ]
    for r in rows:
        if (r["workload"], r["mode"], r.get("isa", "")) != (wl, mode, isa):
            continue
        cells = [r["label"], *(fmt(r.get(key), spec) for _, key, spec in SPEED_COLUMNS)]
        lines.append("| " + " | ".join([*cells, row_note(r)]) + " |")
    return [*lines, ""]


MEMORY_COLUMNS = (
    ("median_s", ".3f"),
    ("peak_rss_mib", ".0f"),
    ("setup_rss_mib", ".0f"),
    ("peak_heap_mib", ".0f"),
    ("mapped_mib", ".0f"),
)


def memory_table(rows: list[dict[str, Any]]) -> list[str]:
    mem = [r for r in rows if r["group"] == "memory"]
    if not mem:
        return []
    lines = [
        "### Peak memory, convlstm W1 training (forward + backward + SGD)",
        "",
        "| T | variant | s/iter (median) | peak RSS MiB | RSS after set-up MiB "
        "| peak live heap MiB | mapped MiB | note |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in mem:
        cells = [str(r["steps"]), r["variant"] or "default"]
        cells += [fmt(r.get(k), s) for k, s in MEMORY_COLUMNS]
        lines.append("| " + " | ".join([*cells, row_note(r)]) + " |")
    return [*lines, ""]


def first_call_table(rows: list[dict[str, Any]]) -> list[str]:
    first = [r for r in rows if r["group"] == "first-call"]
    if not first:
        return []
    lines = [
        "### First use in a fresh process (training step: forward + backward + SGD)",
        "",
        "Cold: an empty compile cache (`TORCHINDUCTOR_CACHE_DIR`); warm: the one the cold "
        "case left. Set-up: imports, model and input, before the first step.",
        "",
        "| workload | implementation | instructions | cache | set-up s | first step s "
        "| later step s | first / later | load | note |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in first:
        isa = r.get("isa", "").upper() or "all"
        impl = f"{r['impl']} ({BF16})" if r["variant"].startswith(BF16) else r["impl"]
        cells = [r["workload"], impl, isa, r["variant"].rsplit(", ", 1)[-1]]
        keys = (("setup_s", ".1f"), ("first_s", ".2f"), ("later_s", ".2f"),
                ("first_ratio", ".1f"), ("load1_before", ".1f"))  # fmt: skip
        cells += [fmt(r.get(k), spec) for k, spec in keys]
        lines.append("| " + " | ".join([*cells, row_note(r)]) + " |")
    return [*lines, ""]


def report(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    loads = f"{meta['load_before']} before, {meta['load_after']} after"
    lines = [
        "# convlstm benchmarks",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['cpu']} ({meta['cores']} cores), "
        f"Python {meta['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"1-minute load average: {loads} (timings on a loaded machine are noisy). "
        f"malloc: {meta.get('malloc', 'glibc defaults')}. "
        "Training = forward + backward + SGD step; GFLOP/s counts convolution FLOPs "
        "analytically (training = 3x forward); convlstm speedup = peer time / convlstm time.",
        "",
    ]
    if meta.get("rounds", 1) > 1:
        lines += [
            f"Every speed case ran {meta['rounds']} times, round-robin over the cases; a row "
            "is its median round (times of every round in the note), peak RSS the highest.",
            "",
        ]
    if meta.get("bf16_paired"):
        pairs = ", ".join(f"{k} {v:.2f}x" for k, v in meta["bf16_paired"].items())
        lines += [
            "bfloat16 autocast speedup over float32, median over rounds of the ratio "
            f"within a round (the two run one after the other): {pairs}.",
            "",
        ]
    speed_rows = [r for r in rows if r["group"] in ("speed", "ablation")]
    for isa in dict.fromkeys(r.get("isa", "") for r in speed_rows):
        for wl in dict.fromkeys(r["workload"] for r in speed_rows):
            for mode in ("train", "infer"):
                lines += speed_table(speed_rows, wl, mode, isa)
    lines += memory_table(rows)
    lines += first_call_table(rows)
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {}
    for name in ("convlstm", "torch", "keras", "tensorflow-cpu", "conv-lstm"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="ConvLSTM benchmark suite (see README.md)")
    p.add_argument("--quick", action="store_true", help="1 warm-up + 1 timed iteration")
    p.add_argument("--only", action="append", help=f"implementations, comma-separated: {IMPLS}")
    p.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    p.add_argument("--ablations", action="store_true", help="add convlstm diagnostic variants")
    p.add_argument("--skip-memory", action="store_true", help="no W1 peak-memory rows")
    p.add_argument(
        "--skip-first-call", action="store_true", help="no first-call (cold/warm cache) rows"
    )
    p.add_argument("--first-call-only", action="store_true", help="only the first-call rows")
    p.add_argument("--skip-avx2", action="store_true",
                   help="no rows with every library held to AVX2")  # fmt: skip
    p.add_argument(
        "--rounds", type=int, default=1,
        help="run every speed case this many times, round-robin (the machine drifts)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="threads per worker (default: all cores)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per case")
    p.add_argument("--out", type=Path, help="output path stem (default results/bench)")
    p.add_argument(
        "--system-malloc", action="store_true",
        help="run workers with glibc's default malloc settings (no MALLOC_* tuning)",
    )  # fmt: skip
    args = p.parse_args(argv)
    args.only = [i for group in args.only or [",".join(IMPLS)] for i in group.split(",") if i]
    unknown = set(args.only) - set(IMPLS)
    if unknown:
        p.error(f"unknown implementation(s) {sorted(unknown)}; choose from {IMPLS}")
    args.workload = args.workload or sorted(WORKLOADS)
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    default = "results/bench-quick" if args.quick else "results/bench"
    args.out = args.out or HERE / default
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cases = plan_cases(
        args.only,
        args.workload,
        args.ablations,
        not (args.skip_memory or args.first_call_only),
        not args.skip_first_call,
        not args.first_call_only,
        not args.skip_avx2,
    )
    meta: dict[str, Any] = {
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(),
        "load_before": round(os.getloadavg()[0], 2),
        "load_after": None,
        "malloc": "glibc defaults"
        if args.system_malloc
        else " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()),
    }
    meta["rounds"] = args.rounds
    args.out.parent.mkdir(parents=True, exist_ok=True)
    malloc = {} if args.system_malloc else MALLOC_ENV
    speed = [c for c in cases if c.timed]
    once = [c for c in cases if not c.timed]
    # Speed cases round-robin, so that every implementation meets the machine's slow
    # and fast phases alike; memory and first-call cases once, at the end.
    schedule = [(r, c) for r in range(args.rounds) for c in speed] + [(0, c) for c in once]
    caches = CompileCaches()
    runs: dict[Case, list[dict[str, Any]]] = {}
    rounds: list[list[dict[str, Any]]] = [[] for _ in range(args.rounds)]
    for n, (number, case) in enumerate(schedule, 1):
        extra = f" T={case.steps}" if case.steps else ""
        repeated = args.rounds > 1 and case in speed
        prefix = f"round {number + 1}: " if repeated else ""
        print(f"[{n}/{len(schedule)}] {prefix}{case.workload}{extra} {case.mode} {case.label} ...",
              end=" ")  # fmt: skip
        env = caches.env(case) if case.group == "first-call" else None
        row = run_case(case, args.quick, args.timeout, args.threads, malloc, env)
        runs.setdefault(case, []).append(row)
        if case in speed:
            rounds[number].append(row)
        if row["status"] == "ok" and case.group == "first-call":
            print(f"first step {row['first_s']:.2f} s, later {row['later_s']:.2f} s, "
                  f"set-up {row['setup_s']:.1f} s", flush=True)  # fmt: skip
        elif row["status"] == "ok":
            rss = row["peak_rss_mib"]
            print(f"{row['median_s']:.3f} s/iter, peak RSS {rss:.0f} MiB", flush=True)
        else:
            print(f"{row['status']}: {row.get('reason', '')}", flush=True)
        meta["load_after"] = round(os.getloadavg()[0], 2)
        rows = [merge_rounds(runs[c]) for c in cases if c in runs]
        derive(rows)
        meta["bf16_paired"] = paired_bf16_speedups(rounds)
        results = {"meta": meta, "results": rows, "rounds": rounds}
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    caches.remove()
    text = report(meta, rows)
    args.out.with_suffix(".md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
