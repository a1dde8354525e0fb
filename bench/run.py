"""Side-by-side benchmark of this server, llama.cpp's llama-server and llama-cpp-python's server.

Usage: .venv/bin/python bench/run.py [--rounds N] [--model PATH] [--only NAMES] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

import anyio
import httpx
from rich.console import Console
from rich.table import Table

import toolchain
from cpu import QUIET_LOAD, CpuMeter, wait_for_quiet
from measure import QUICK, Case, Plan, Prompts, Results, Runner, long_body, token_counter
from servers import ROOT, LlamaCppPython, LlamaServer, Mode, Ours, Server

SERVERS = ("ours", "llama-server", "llama-cpp-python")
GROUPS = {mode.value: mode for mode in Mode}
BASELINE = "llama-server"
RETRIES = 2
TARGETS = (
    ("decode", "ours", BASELINE, ">=", 0.97),
    ("aggregate_4", "ours", BASELINE, ">=", 1.0),
    ("aggregate_4", "ours", "llama-cpp-python", ">=", 2.0),
    ("ttft_4x", "ours", BASELINE, "<=", 1.1),
)

console = Console(stderr=True)


def default_model() -> Path:
    """The default GGUF, fetched by ``scripts/fetch-default-model.sh`` when missing."""
    out = subprocess.run([str(ROOT / "scripts/fetch-default-model.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options, with ``servers`` and ``groups`` resolved from ``--only``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds, each running every server once per group (default 3)")
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument(
        "--only", default="",
        help=f"comma-separated servers ({', '.join(SERVERS)}) and/or case groups ({', '.join(GROUPS)})",
    )
    parser.add_argument("--quick", action="store_true", help="one short round (32 tokens, fewer cases) as a smoke test")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads per server (default: all)")
    parser.add_argument("--json", type=Path, help="also write every sample and median to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS and n not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}")
    args.servers = [s for s in SERVERS if s in names] or list(SERVERS)
    args.groups = [GROUPS[g] for g in GROUPS if g in names] or list(Mode)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def make_servers(names: list[str], model: Path, threads: int, workdir: Path) -> list[Server]:
    """The servers named, building or installing the comparison servers first if needed.

    Server logs go to ``logs/`` in the bench cache directory, replaced on every run.
    """
    logs = toolchain.cache_dir() / "logs"
    logs.mkdir(exist_ok=True)
    servers: list[Server] = []
    for name in names:
        if name == "ours":
            servers.append(Ours(model, threads, workdir, logs))
        elif name == "llama-server":
            servers.append(LlamaServer(toolchain.llama_server(), model, threads, workdir, logs))
        else:
            servers.append(LlamaCppPython(toolchain.llama_cpp_python_server(), model, threads, workdir, logs))
    return servers


async def phase(server: Server, mode: Mode, plan: Plan, client: httpx.AsyncClient,
                prompts: Prompts) -> tuple[Results, float]:
    """Start ``server`` in ``mode``, run that mode's cases and stop it.

    Returns the samples and the share of the CPUs other processes took meanwhile.
    """
    out, busy = Results(), 0.0
    try:
        server.start(mode)
        await server.wait_ready(client)
        await server.prepare(client)
        meter = CpuMeter(server.pid)
        await Runner(plan, out, server, client, prompts).run(mode)
        busy = meter.others()
    except Exception as exc:
        out.fail(server.name, [c.key for c in plan.cases() if c.mode is mode], exc)
    finally:
        server.stop()
    return out, busy


async def bench(results: Results, servers: list[Server], modes: list[Mode], plan: Plan, rounds: int,
                long_text: str) -> None:
    """Every round runs each mode's cases on every server in turn, rotating which server goes first.

    Each phase starts once the machine is quiet; a phase during which other processes took
    ``QUIET_LOAD`` of the CPUs or more is discarded and run again, up to ``RETRIES`` times.
    """
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0), limits=limits) as client:
        for rnd in range(rounds):
            for mode in modes:
                order = servers[rnd % len(servers):] + servers[: rnd % len(servers)]
                for server in order:
                    label = f"round {rnd + 1} {mode.value} {server.name}"
                    for attempt in range(RETRIES + 1):
                        console.print(f"[dim]{label}{' (again)' * bool(attempt)}[/dim]")
                        await wait_for_quiet()
                        out, busy = await phase(server, mode, plan, client, Prompts(f"{rnd}-{mode.value}", long_text))
                        if busy < QUIET_LOAD or attempt == RETRIES:
                            break
                        console.print(f"[yellow]other processes took {busy:.0%} of the CPUs: discarded[/yellow]")
                    results.merge(out)
                    results.busy.append((label, busy))


def _fmt(case: Case, value: float) -> str:
    return f"{value * 1000:.0f}" if case.unit == "ms" else f"{value:.1f}"


def _spread(values: list[float]) -> str:
    if len(values) < 3:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f" ±{50 * (q3 - q1) / statistics.median(values):.0f}%"


def report(results: Results, plan: Plan, names: list[str], modes: list[Mode]) -> dict[str, dict[str, float]]:
    """Print the table of medians and ratios to llama-server; return the medians."""
    medians = {
        name: {key: statistics.median(v) for (n, key), v in results.samples.items() if n == name and v}
        for name in names
    }
    table = Table(title="medians (± half the interquartile range, as % of the median)")
    table.add_column("case")
    table.add_column("unit")
    for name in names:
        table.add_column(name, justify="right")
    others = [n for n in names if n != BASELINE] if BASELINE in names else []
    for name in others:
        table.add_column(f"{name}/{BASELINE}", justify="right")
    for case in plan.cases():
        if case.mode not in modes:
            continue
        row = [case.label, case.unit + (" ↑" if case.higher_is_better else " ↓")]
        for name in names:
            values = results.samples.get((name, case.key))
            row.append(_fmt(case, statistics.median(values)) + _spread(values) if values else "n/a")
        for name in others:
            value, base = medians[name].get(case.key), medians[BASELINE].get(case.key)
            row.append(f"{value / base:.2f}" if value and base else "n/a")
        table.add_row(*row)
    out = Console()
    if not out.is_terminal:
        out = Console(width=170)
    out.print(table)
    for (name, key), reason in sorted(results.errors.items()):
        out.print(f"n/a  {name} {key}: {reason}")
    for name in others:
        mine, base = results.outputs.get(name, []), results.outputs.get(BASELINE, [])
        differ = sum(a != b for a, b in zip(mine, base))
        if differ:
            out.print(f"note {name}: {differ} of {min(len(mine), len(base))} greedy decode outputs differ from {BASELINE}'s")
    for name, count in results.short_streams.items():
        if count:
            out.print(f"note {name}: {count} stream(s) ended before {plan.tokens} tokens (rates use the real count)")
    if results.busy:
        label, worst = max(results.busy, key=lambda item: item[1])
        out.print(f"CPU taken by other processes while measuring: at most {worst:.0%} ({label})"
                  + (": a busy machine, numbers unreliable" if worst >= QUIET_LOAD else ""))
    for key, name, base, op, bound in TARGETS:
        a, b = medians.get(name, {}).get(key), medians.get(base, {}).get(key)
        if a and b:
            ratio = a / b
            ok = ratio >= bound if op == ">=" else ratio <= bound
            out.print(f"target {key}: {name}/{base} = {ratio:.2f} ({op} {bound}) {'PASS' if ok else 'FAIL'}")
    return medians


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so servers are stopped and partial results shown."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its report; the exit status."""
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    model = (args.model or default_model()).resolve()
    if not model.is_file():
        console.print(f"no such model: {model}")
        return 2
    plan = QUICK if args.quick else Plan()
    count = token_counter(model)
    long_text = long_body(count)
    sample = Prompts("sizes", long_text)
    console.print(
        f"model {model.name}, {args.threads} threads, {args.rounds} round(s); prompts of "
        f"{count(sample.short())} and {count(sample.long())} tokens, embedding inputs of "
        f"{count(sample.embed_input())} tokens"
    )
    results = Results()
    with tempfile.TemporaryDirectory(prefix="ollama-bench-") as tmp:
        servers = make_servers(args.servers, model, args.threads, Path(tmp))
        try:
            anyio.run(bench, results, servers, args.groups, plan, args.rounds, long_text)
        except KeyboardInterrupt:
            console.print("interrupted: results so far")
        finally:
            for server in servers:
                server.stop()
    medians = report(results, plan, args.servers, args.groups)
    for server in servers:
        if isinstance(server, (LlamaServer, LlamaCppPython)) and not server.repack:
            console.print(f"{server.name} ran without repacked weights: llama.cpp's AMX kernels faulted on this "
                          "machine (ours then loads without them too; see the logs)")
    if args.json:
        samples = {f"{name}/{key}": values for (name, key), values in results.samples.items()}
        errors = {f"{name}/{key}": reason for (name, key), reason in results.errors.items()}
        args.json.write_text(json.dumps({"medians": medians, "samples": samples, "errors": errors}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
