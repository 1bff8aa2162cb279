"""Splits a `py-spy record -f raw --subprocesses` profile of a bench run by process and cost.

    .venv/bin/py-spy record --gil --subprocesses --nonblocking -r 100 -f raw -o /tmp/run.txt \
        -- .venv/bin/python bench/bench_orders.py --rate 100 --duration 10
    .venv/bin/python bench/spy_split.py /tmp/run.txt            # edge and Points, top costs

Use `--gil`: only samples of the thread holding the GIL, i.e. where the process' Python CPU
goes. Without it every thread is sampled wherever it stands, waiting for a core or for the
GIL included (on this image py-spy's idle detection does not work; known waiting frames are
dropped below, but a thread queued for the GIL still counts), which overstates the threads
that wait most: kafka-python's IO threads looked like 40-60% of the edge that way.
C code that runs without the GIL (gRPC core, libpq, librdkafka) is not in either.

Each sample is a stack (process, thread, frames outermost first) and a count. A process is
named by what its stacks run (the edge's or Points' service module); start-up samples (imports,
migrations) are dropped. Per process: samples per group of cost, **own** (the innermost frame
that belongs to a group: where the CPU was spent) and **cumulative** (every sample with a
frame of the group anywhere: what the group's calls cost, inner work included), and the top
functions of ours by cumulative share. Threads other than the main one (kafka-python's IO
threads, OpenTelemetry's) are counted as one group each.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

# (group, substrings of a frame's file or function), first match wins for a frame.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("protobuf", ("google/protobuf", "_pb2.py", "platform/protos.py")),
    ("json", ("orjson", "/json/")),
    ("hmac/crypto", ("hmac.py", "hashlib", "cryptography/", "platform/crypto.py", "signing.py")),
    ("postgres (psycopg)", ("psycopg",)),
    ("redis", ("redis/",)),
    ("kafka client", ("kafka/",)),
    ("logging", ("structlog", "logging/")),
    ("tracing (OpenTelemetry)", ("opentelemetry",)),
    ("metrics (prometheus)", ("prometheus_client",)),
    ("grpc", ("grpc/", "grpc_")),
    ("asyncio", ("asyncio/", "selectors.py", "contextvars")),
]
OURS = "loyalnest/"
# What a thread other than the main one is, by a frame near its root.
THREADS: list[tuple[str, str]] = [
    ("Sender.run", "thread: kafka-python producer sender"),
    ("NetworkSelector.run", "thread: kafka-python network IO"),
    ("rdkafka", "thread: librdkafka"),
    ("_worker (concurrent/futures", "thread: executor (blocking kafka calls, migrations)"),
    ("serve_forever", "thread: /metrics HTTP server"),
]


def thread_group(frames: list[str]) -> str:
    for needle, name in THREADS:
        if any(needle in frame for frame in frames[:6]):
            return name
    return "thread: other"


STARTUP = ("_find_and_load", "migrat", "<module>", "_call_with_frames_removed")
# Innermost frames of a thread that waits (py-spy's --nonblocking samples count them as
# active): dropped, so what is left approximates CPU. The grpc.aio poller thread
# (`Thread.run` with nothing inside) spends its time in gRPC core's C code, mostly waiting.
IDLE = (
    "EpollSelector.select",
    "_PollLikeSelector.select",
    "Condition.wait",
    "_worker (concurrent/futures/thread.py",
    "Thread.run (threading.py",
    "Event.wait",
    "sleep",
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def group_of(frame: str) -> str | None:
    for name, needles in GROUPS:
        if any(needle in frame for needle in needles):
            return name
    return None


PROCESS = re.compile(r'process (\d+):"[^"]*";')


def parse(lines: Iterable[str]) -> dict[str, list[tuple[str, list[str], int]]]:
    """pid -> [(thread, frames outermost first, count)]; a stack's pid is its innermost
    `process N:"cmdline"` entry (a child's stacks are nested under its parents'), its thread
    "main" unless it starts in `Thread._bootstrap`."""
    by_pid: dict[str, list[tuple[str, list[str], int]]] = defaultdict(list)
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        processes = list(PROCESS.finditer(stack))
        if not processes or not count.isdigit():
            continue
        frames = stack[processes[-1].end() :].split(";")
        thread = "other" if frames and frames[0].startswith("Thread._bootstrap") else "main"
        by_pid[processes[-1].group(1)].append((thread, frames, int(count)))
    return by_pid


def name_of(stacks: list[tuple[str, list[str], int]]) -> str:
    seen: Counter[str] = Counter()
    for _, frames, count in stacks:
        text = ";".join(frames)
        for service in ("services/edge/", "services/points/", "bench_orders", "ingress.py"):
            if service in text:
                seen[service] += count
    if not seen:
        return "other"
    return seen.most_common(1)[0][0].strip("/").removeprefix("services/")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"].split("site-packages/")[-1].split("pkg/")[-1]
    return f"{match['function']} ({file})"


def report(stacks: list[tuple[str, list[str], int]], top: int) -> list[str]:
    steady = [
        (thread, frames, count)
        for thread, frames, count in stacks
        if not any(marker in frame for frame in frames for marker in STARTUP)
        and not any(frames[-1].startswith(idle) for idle in IDLE)
    ]
    total = sum(count for _, _, count in steady) or 1
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    ours_cumulative: Counter[str] = Counter()
    ours_own: Counter[str] = Counter()
    for thread, frames, count in steady:
        if thread != "main":
            own[thread_group(frames)] += count
            cumulative[thread_group(frames)] += count
            continue
        groups = [group_of(frame) for frame in frames]
        innermost = next((g for g in reversed(groups) if g is not None), "python (ours/other)")
        own[innermost] += count
        for group in {g for g in groups if g is not None}:
            cumulative[group] += count
        for frame in set(frames):
            if OURS in frame:
                ours_cumulative[short(frame)] += count
        leaf_ours = next((f for f in reversed(frames) if OURS in f), None)
        if leaf_ours is not None and groups[-1] is None:
            ours_own[short(leaf_ours)] += count
    out = [f"  {total} samples (start-up and waiting threads dropped)"]
    out.append(f"  {'group':42} {'own':>7} {'cumulative':>11}")
    for name, _ in sorted(cumulative.items(), key=lambda kv: -own[kv[0]]):
        out.append(
            f"  {name:42} {100 * own[name] / total:6.1f}% {100 * cumulative[name] / total:10.1f}%"
        )
    rest = own["python (ours/other)"]
    out.append(f"  {'python (ours/other), own':42} {100 * rest / total:6.1f}%")
    out.append("  our functions, cumulative:")
    for frame, count in ours_cumulative.most_common(top):
        out.append(f"    {100 * count / total:5.1f}%  {frame}")
    out.append("  our functions, own time (innermost frame in no group):")
    for frame, count in ours_own.most_common(8):
        out.append(f"    {100 * count / total:5.1f}%  {frame}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.profile) as file:
        by_pid = parse(file)
    for pid, stacks in sorted(by_pid.items(), key=lambda kv: -sum(c for _, _, c in kv[1])):
        name = name_of(stacks)
        if name not in ("edge", "points"):
            continue
        print(f"{name} (pid {pid})")
        print("\n".join(report(stacks, args.top)))


if __name__ == "__main__":
    main()
