"""Benchmark the traffic generator, side by side with vegeta, on the same CPUs.

    python bench/traffic.py [--quick] [--json OUT] [--gen-cpus 0,1] [--target-cpus 1]
                            [--workers N] [--loop asyncio|uvloop]

Layout: the target server (Go net/http, bench/vegeta/target, GOMAXPROCS = its CPUs) is
pinned to ``--target-cpus`` (default: the last CPU); the load generator under test
(chaosaa's ``TrafficGenerator`` in a child process, with the worker processes it decides
on, or vegeta with GOMAXPROCS = the generator's CPUs) to ``--gen-cpus`` (default: every
CPU but the target's, or every CPU on a machine of two, where generator and target then
share one). Both send the same mix: 30% PUT, 70% GET, three homes. ``--workers`` forces
chaosaa's number of worker processes (0: in the child's own loop, on ``--loop``).

a. chaosaa ramp: 3 s steps of rising open-loop rate. A step passes when the achieved rate
   is >= 98% of target, success >= 99% and send-time error (actual - scheduled send
   instant) p99 <= 10 ms; a failing rate runs twice (one preemption on a shared machine
   can spoil a p99). The ramp ends when throughput gives out or after 60 s. Reported:
   the highest rate that passed, the highest that kept up ignoring p99, and the CPU share
   there (rate / CPU share = the CPU-bound ceiling on a core of its own).
b. chaosaa at 1,000 req/s for 10 s: send-time error p50/p99, latency p50/p99.
c. vegeta (github.com/tsenart/vegeta/v12, pinned in bench/vegeta/go.mod, built by
   bench/vegeta/build.sh): the same ramp and the same 1,000 req/s run. Its send-time
   error is read from its result timestamps, relative to its first request.

The fixed-rate runs go first: a ramp that ends in collapse leaves TIME_WAIT sockets that
would disturb what follows. Also printed: the idle wake-up lag of an asyncio loop on the
generator CPU, i.e. the machine's own scheduling noise. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(os.environ.get("CHAOSAA_BENCH_BIN", Path.home() / ".cache/chaosaa/bench"))
VEGETA = BIN / "vegeta"
TARGET = BIN / "chaosaa-bench-target"

WRITE_RATIO = 0.3
TIMEOUT = 1.0
MIN_ACHIEVED = 0.98
MAX_SEND_ERROR_P99 = 0.010
MIN_SUCCESS = 0.99
RAMP_BUDGET = 60.0
RAMP_STEP_SECONDS = 3.0
RAMP_RATES: list[float] = [500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000]
RAMP_RATES += [8000, 10000, 12500, 15000, 20000, 25000, 30000, 40000]


@dataclass
class Step:
    tool: str
    target_rate: float
    seconds: float
    requests: int
    achieved_rate: float
    success: float
    send_error_p50: float | None
    send_error_p99: float | None
    latency_p50: float
    latency_p99: float
    cpu: float  # fraction of one core the generator used
    target_cpu: float  # fraction of one core the target server used
    workers: int = 0  # chaosaa's worker processes (0: in the generator's own process)

    @property
    def keeps_up(self) -> bool:
        return self.achieved_rate >= MIN_ACHIEVED * self.target_rate and self.success >= MIN_SUCCESS

    @property
    def passed(self) -> bool:
        return self.keeps_up and (
            self.send_error_p99 is None or self.send_error_p99 <= MAX_SEND_ERROR_P99
        )


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def default_cpus() -> tuple[set[int], set[int]]:
    """(generator CPUs, target CPUs): the target gets the last CPU, the generator the
    others, or every CPU on a machine of two or fewer."""
    available = sorted(os.sched_getaffinity(0))
    target = {available[-1]}
    rest = set(available[:-1])
    return (rest if len(rest) >= 2 else set(available)), target


def parse_cpus(text: str) -> set[int]:
    return {int(c) for c in text.split(",") if c.strip()}


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- chaosaa worker


async def _run_generator(
    url: str, rate: float, seconds: float, workers: int | None
) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from chaosaa.traffic import TrafficGenerator

    gen = TrafficGenerator(
        url,
        rate=rate,
        write_ratio=WRITE_RATIO,
        timeout=TIMEOUT,
        keys=1000,
        homes=["us", "eu", "ap"],
        run_id="bench",
        seed=1,
        workers=workers,
    )
    await gen.start(seconds)
    wall0 = time.monotonic()
    try:
        await gen.finished()
    finally:
        await gen.stop(TIMEOUT)
    # every process's CPU from the common start instant to the end of the drain
    cpu = gen.cpu_seconds / (time.monotonic() - wall0)
    log = gen.sample_log
    sent = [t for t, e in zip(log.sent_at, log.send_error, strict=True) if not math.isnan(e)]
    span = (max(sent) - min(sent) + 1 / rate) if sent else math.inf
    ok = sum(1 for s in log.status if 0 < s < 500)
    errors = gen.send_errors()
    return {
        "requests": len(log),
        "achieved_rate": len(sent) / span,
        "success": ok / max(1, len(log)),
        "send_error_p50": quantile(errors, 0.50),
        "send_error_p99": quantile(errors, 0.99),
        "latency_p50": quantile(list(log.latency), 0.50),
        "latency_p99": quantile(list(log.latency), 0.99),
        "cpu": cpu,
        "workers": gen.workers,
    }


def worker_main(
    url: str, rate: float, seconds: float, cpus: set[int], workers: int | None, loop: str
) -> None:
    os.sched_setaffinity(0, cpus)  # worker processes inherit it
    run = _run_generator(url, rate, seconds, workers)
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(run)
    else:
        result = asyncio.run(run)
    print(json.dumps(result), flush=True)


@dataclass(frozen=True)
class Options:
    gen_cpus: set[int]
    target_cpus: set[int]
    workers: int | None = None
    loop: str = "asyncio"


def chaosaa_step(url: str, rate: float, seconds: float, target_pid: int, opts: Options) -> Step:
    t0 = proc_cpu_seconds(target_pid)
    w0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            url,
            str(rate),
            str(seconds),
            ",".join(map(str, sorted(opts.gen_cpus))),
            "auto" if opts.workers is None else str(opts.workers),
            opts.loop,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    target_cpu = (proc_cpu_seconds(target_pid) - t0) / (time.monotonic() - w0)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return Step(
        "chaosaa",
        rate,
        seconds,
        int(r["requests"]),
        r["achieved_rate"],
        r["success"],
        r["send_error_p50"],
        r["send_error_p99"],
        r["latency_p50"],
        r["latency_p99"],
        r["cpu"],
        target_cpu,
        int(r["workers"]),
    )


# --------------------------------------------------------------------------- vegeta


def vegeta_targets(url: str, path: Path) -> None:
    homes = ["us", "eu", "ap"]
    lines = []
    for i in range(30):  # 9 of 30 are writes: write ratio 0.3
        target: dict[str, object] = {
            "method": "GET",
            "url": f"{url}/kv/k{i}",
            "header": {"X-Chaosaa-Home": [homes[i % 3]]},
        }
        if i % 10 in (1, 4, 7):
            target["method"] = "PUT"
            target["body"] = base64.b64encode(f"bench:{i}".encode()).decode()
        lines.append(json.dumps(target))
    path.write_text("\n".join(lines) + "\n")


def _vegeta(*args: str) -> str:
    """Run one ``vegeta`` subcommand (bounded to 60 s); return its standard output."""
    return subprocess.run(
        [str(VEGETA), *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def vegeta_step(
    url: str, rate: float, seconds: float, target_pid: int, opts: Options, work: Path
) -> Step:
    targets, results = work / "targets.jsonl", work / "results.bin"
    vegeta_targets(url, targets)
    cpus = opts.gen_cpus
    env = dict(os.environ, GOMAXPROCS=str(len(cpus)))
    proc_children_cpu()  # reset: count only the attack below
    t0 = proc_cpu_seconds(target_pid)
    w0 = time.monotonic()
    attack = subprocess.Popen(
        [
            str(VEGETA),
            "attack",
            f"-rate={int(rate)}/1s",
            f"-duration={seconds}s",
            f"-timeout={TIMEOUT}s",
            "-format=json",
            f"-targets={targets}",
            f"-output={results}",
        ],
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    attack.wait(timeout=seconds + 30)
    cpu_used = proc_children_cpu()
    wall = time.monotonic() - w0
    target_cpu = (proc_cpu_seconds(target_pid) - t0) / wall
    report = json.loads(_vegeta("report", "-type=json", str(results)))
    encoded = _vegeta("encode", "--to=csv", str(results))
    stamps = sorted(int(row[0]) / 1e9 for row in csv.reader(io.StringIO(encoded)) if row)
    errors = [t - (stamps[0] + i / rate) for i, t in enumerate(stamps)]
    lat = report["latencies"]
    return Step(
        "vegeta",
        rate,
        seconds,
        int(report["requests"]),
        float(report["rate"]),
        float(report["success"]),
        quantile(errors, 0.50),
        quantile(errors, 0.99),
        lat["50th"] / 1e9,
        lat["99th"] / 1e9,
        cpu_used / wall,
        target_cpu,
    )


_children_cpu_seen = 0.0


def proc_children_cpu() -> float:
    """CPU seconds of reaped children since the last call."""
    global _children_cpu_seen
    usage = os.times()
    total = usage.children_user + usage.children_system
    delta, _children_cpu_seen = total - _children_cpu_seen, total
    return delta


# --------------------------------------------------------------------------- orchestration


def ramp(
    run_step: Callable[[float], Step], rates: list[float], budget: float
) -> tuple[Step | None, Step | None, list[Step]]:
    """Climb ``rates`` until throughput gives out (achieved < 98% or success < 99%).

    Returns the highest rate that passed every criterion (including send-time error
    p99 <= 10 ms), the highest that kept up in throughput alone, and every step. On a
    shared machine one preemption can spoil a p99, so a failed rate runs a second time.
    """
    began = time.monotonic()
    steps: list[Step] = []
    best: Step | None = None
    best_throughput: Step | None = None
    for rate in rates:
        if time.monotonic() - began > budget:
            break
        step = run_step(rate)
        steps.append(step)
        log_step(step)
        if not step.passed and time.monotonic() - began <= budget:
            again = run_step(rate)
            steps.append(again)
            log_step(again, "retry")
            if again.passed or (again.keeps_up and not step.keeps_up):
                step = again
        if step.passed:
            best = step
        if not step.keeps_up:
            break
        best_throughput = step
    return best, best_throughput, steps


def log_step(step: Step, note: str = "") -> None:
    print(
        f"  {step.tool:8} {step.target_rate:>7.0f}/s  {'pass' if step.passed else 'FAIL'}  "
        f"achieved {step.achieved_rate:8.0f}/s  success {step.success:.3f}  "
        f"send-err p99 {fmt_ms(step.send_error_p99):>9}  cpu {step.cpu:.2f}  "
        f"target cpu {step.target_cpu:.2f} {note}",
        file=sys.stderr,
    )


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1e3:.2f} ms"


def machine_notes() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    import aiohttp

    vegeta = subprocess.run([str(VEGETA), "-version"], capture_output=True, text=True).stdout
    go = subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "vegeta": next(
            (ln.split(":", 1)[1].strip() for ln in vegeta.splitlines() if ln.startswith("Version")),
            "?",
        ),
        "go": go,
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def ensure_binaries() -> None:
    if not (VEGETA.exists() and TARGET.exists()):
        subprocess.run([str(HERE / "vegeta/build.sh")], check=True, timeout=900)


def start_target(cpus: set[int]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [str(TARGET), "-procs", str(len(cpus))],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    assert proc.stdout is not None
    return proc, "http://" + proc.stdout.readline().strip()


def loop_noise(cpus: set[int], seconds: float = 3.0) -> str:
    """How late an idle asyncio loop on the generator's CPU wakes up: the machine's own
    scheduling noise, which no generator on that CPU can beat."""
    code = (
        "import asyncio, os, sys, time\n"
        f"os.sched_setaffinity(0, {sorted(cpus)})\n"
        "async def main():\n"
        "    lags, t = [], time.monotonic()\n"
        f"    end = t + {seconds}\n"
        "    while t < end:\n"
        "        await asyncio.sleep(0.001)\n"
        "        now = time.monotonic(); lags.append(now - t - 0.001); t = now\n"
        "    lags.sort()\n"
        "    print(lags[len(lags) * 99 // 100], lags[-1])\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds + 30
    )
    p99, worst = (float(x) for x in out.stdout.split())
    return f"idle-loop wake-up lag p99 {fmt_ms(p99)}, max {fmt_ms(worst)} over {seconds:.0f} s"


def time_wait_sockets() -> int:
    """TCP sockets in TIME_WAIT (state 06 in /proc/net/tcp and tcp6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            count += sum(1 for line in f if line.split()[3:4] == ["06"])
    return count


def wait_for_quiet_sockets(limit: int = 1000, seconds: float = 75.0) -> None:
    """A previous run's collapsed ramp leaves thousands of TIME_WAIT sockets for ~60 s;
    starting among them costs vegeta most of its 1,000 req/s. Wait them out (bounded)."""
    deadline = time.monotonic() + seconds
    while (n := time_wait_sockets()) > limit and time.monotonic() < deadline:
        print(f"waiting for {n} TIME_WAIT sockets of an earlier run to clear", file=sys.stderr)
        time.sleep(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--gen-cpus", type=parse_cpus, help="CPUs of the generators, e.g. 0,1")
    parser.add_argument("--target-cpus", type=parse_cpus, help="CPUs of the target, e.g. 1")
    parser.add_argument("--workers", type=int, help="chaosaa worker processes (default: auto)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    ensure_binaries()
    gen_default, target_default = default_cpus()
    opts = Options(
        gen_cpus=args.gen_cpus or gen_default,
        target_cpus=args.target_cpus or target_default,
        workers=args.workers,
        loop=args.loop,
    )
    if opts.gen_cpus & opts.target_cpus:
        print("note: generator and target share CPUs", file=sys.stderr)
    step_s = 1.0 if args.quick else RAMP_STEP_SECONDS
    fixed_s = 3.0 if args.quick else 10.0
    wait_for_quiet_sockets()
    notes = machine_notes()
    notes["generator CPUs"] = ",".join(map(str, sorted(opts.gen_cpus)))
    notes["target CPUs"] = ",".join(map(str, sorted(opts.target_cpus)))
    notes["chaosaa workers"] = "auto" if opts.workers is None else str(opts.workers)
    notes["chaosaa loop (in-process path)"] = opts.loop
    notes["noise"] = loop_noise(opts.gen_cpus)
    target, url = start_target(opts.target_cpus)
    try:
        with tempfile.TemporaryDirectory(prefix="chaosaa-bench-") as tmp:
            work = Path(tmp)
            pid = target.pid
            # Fixed-rate runs first: a ramp that ends in collapse leaves thousands of
            # TIME_WAIT sockets behind that would disturb whatever runs next.
            print("(b) chaosaa at 1000/s", file=sys.stderr)
            c_fixed = chaosaa_step(url, 1000, fixed_s, pid, opts)
            log_step(c_fixed)
            print("(c) vegeta at 1000/s", file=sys.stderr)
            v_fixed = vegeta_step(url, 1000, fixed_s, pid, opts, work)
            log_step(v_fixed)
            print("(a) chaosaa ramp", file=sys.stderr)
            c_best, c_tp, c_steps = ramp(
                lambda r: chaosaa_step(url, r, step_s, pid, opts), RAMP_RATES, RAMP_BUDGET
            )
            print("(c) vegeta ramp", file=sys.stderr)
            v_best, v_tp, v_steps = ramp(
                lambda r: vegeta_step(url, r, step_s, pid, opts, work),
                RAMP_RATES,
                RAMP_BUDGET,
            )
    finally:
        target.terminate()
        target.wait(timeout=10)
    notes["loadavg_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(render(notes, (c_best, c_tp, c_fixed), (v_best, v_tp, v_fixed), c_steps + v_steps))
    if args.json:
        result = {
            "machine": notes,
            "steps": [asdict(s) | {"passed": s.passed} for s in c_steps + v_steps],
            "fixed": [asdict(c_fixed), asdict(v_fixed)],
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


Result = tuple[Step | None, Step | None, Step]  # best (all criteria), best throughput, 1000/s


def render(notes: dict[str, str], chaosaa: Result, vegeta: Result, steps: list[Step]) -> str:
    c_best, c_tp, c_fixed = chaosaa
    v_best, v_tp, v_fixed = vegeta

    def best(step: Step | None) -> str:
        return "< 500 req/s" if step is None else f"{step.target_rate:,.0f} req/s"

    def share(step: Step | None) -> str:
        return "n/a" if step is None else f"{step.cpu:.0%}"

    def per_request(step: Step | None) -> str:
        return "n/a" if step is None else f"{step.cpu / step.target_rate * 1e6:.0f} µs"

    def ceiling(step: Step | None) -> str:
        return "n/a" if step is None else f"~{step.target_rate / max(step.cpu, 1e-9):,.0f} req/s"

    rows = [
        "| | chaosaa TrafficGenerator | vegeta |",
        "|---|---|---|",
        "| (a, c) max sustained open-loop rate on the generator CPUs (all criteria) | "
        f"{best(c_best)} | {best(v_best)} |",
        f"| max rate that keeps up (achieved >= 98%, success >= 99%; p99 ignored) | "
        f"{best(c_tp)} | {best(v_tp)} |",
        f"| generator CPU share at that rate | {share(c_tp)} | {share(v_tp)} |",
        f"| CPU per request at that rate | {per_request(c_tp)} | {per_request(v_tp)} |",
        f"| CPU-bound ceiling (rate / CPU share) | {ceiling(c_tp)} | {ceiling(v_tp)} |",
    ]
    for label, attr in [
        ("(b, c) 1,000 req/s: achieved rate", "achieved_rate"),
        ("1,000 req/s: success", "success"),
        ("1,000 req/s: send-time error p50", "send_error_p50"),
        ("1,000 req/s: send-time error p99", "send_error_p99"),
        ("1,000 req/s: latency p50", "latency_p50"),
        ("1,000 req/s: latency p99", "latency_p99"),
        ("1,000 req/s: generator CPU (one core = 100%)", "cpu"),
    ]:
        cells = []
        for step in (c_fixed, v_fixed):
            value = getattr(step, attr)
            if attr == "achieved_rate":
                cells.append(f"{value:,.1f} req/s")
            elif attr in ("success", "cpu"):
                cells.append(f"{value:.1%}")
            else:
                cells.append(fmt_ms(value))
        rows.append(f"| {label} | {cells[0]} | {cells[1]} |")
    rows += [
        "",
        "Ramp steps (pass = achieved >= 98% of target, send-time error p99 <= 10 ms, "
        "success >= 99%; a failed rate runs twice; the ramp ends when throughput gives out):",
        "",
        "| tool | target req/s | achieved | success | send-err p99 | latency p99 | cpu | "
        "target cpu | workers | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        rows.append(
            f"| {s.tool} | {s.target_rate:,.0f} | {s.achieved_rate:,.0f} | {s.success:.3f} | "
            f"{fmt_ms(s.send_error_p99)} | {fmt_ms(s.latency_p99)} | {s.cpu:.0%} | "
            f"{s.target_cpu:.0%} | {s.workers if s.tool == 'chaosaa' else ''} | "
            f"{'pass' if s.passed else 'FAIL'} |"
        )
    rows += ["", "Machine:", ""] + [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--worker":
        _, _, url_, rate_, seconds_, cpus_, workers_, loop_ = sys.argv
        worker_main(
            url_,
            float(rate_),
            float(seconds_),
            parse_cpus(cpus_),
            None if workers_ == "auto" else int(workers_),
            loop_,
        )
        sys.exit(0)
    sys.exit(main())
