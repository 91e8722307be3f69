"""Benchmark: the live app under load, served as `dtlens app` serves it (waitress, threads).

Starts the app in a child process on a free 127.0.0.1 port (``dtlens.app.run``: waitress
with its default threads, torch 1 thread, the shipped MemoryDT), then N clients play it
at once for S seconds per round, over HTTP, the way the page does:

* a client opens the page (``GET /``, ``GET /_dash-layout``, which makes its session)
  and runs the page-load callbacks;
* then it presses keys: each press posts the environment callback (its key event), then
  in parallel, as the browser does, the model panel and the visible tab's callback
  (attention; the page's client-side gates send nothing for the hidden tabs), carrying
  what the page carries (the episode, the attention figures' key, so presses send new
  values only); a finished episode is reset with the reset button;
* between two presses it waits ``--think-ms`` (uniformly 0.5x to 1.5x; 0: press again as
  soon as the figures arrive, a closed loop); every round each client opens a fresh page.

Reported per round: presses and requests per second, p50 / p95 / max latency of a press
(key press to its last figure) and of a single request, errors, the server's resident
memory (RSS) after the round, the CPU time the server spent per press and how many cores
the server and the clients kept busy (the clients share the machine), and the load
average. The server keeps the episodes of at most 32 pages (least recently used
dropped), full after the warm-up and the first round, so its memory should level off
rather than grow from round to round. On a machine shared with other jobs latencies
depend on the share of the CPU the server gets; its CPU time per press does not.
Loopback only; every loop is bounded by the round's deadline, and the server is
stopped at the end (or on error).

Usage:
    python benchmarks/bench_app_load.py                       # 20 clients, 4 rounds of 30 s
    python benchmarks/bench_app_load.py --clients 5 --seconds 10 --rounds 2 --think-ms 0
    python benchmarks/bench_app_load.py --server flask        # Flask's development server
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_app_load.json"
ROUTE = "/_dash-update-component"
#: the key script of bench_app.py: to the decision square, turn, turn back, a step, ...
SCRIPT = [2, 2, 2, 2, 0, 1, 1, 0, 3, 4, 2, 1, 2]
TARGET_P95_MS = 300.0
SESSION, KEYS, RESET, EPISODE, TABS = (
    "session-id",
    "key-events",
    "reset-button",
    "episode-version",
    "analysis-tabs",
)
#: the page's initial values of the inputs and states the clients post
PAGE_VALUES: dict[str, Any] = {
    "key-events.data": None,
    "reset-button.n_clicks": None,
    "scenario-instruction.value": "key",
    "scenario-top.value": "ball",
    "rtg-slider.value": 0.9,
    "episode-version.data": None,
    "attention-layer.value": 0,
    "attention-head.value": 0,
    "analysis-tabs.value": "tab-attention",
    "attention-rtg-b.value": 0,
    "attention-all-heads.value": [],
    "attention-shown.data": None,
    "lens-action-a.value": 0,
    "lens-action-b.value": 1,
    "patching-edit.value": "instruction",
    "patching-rtg.value": 0,
    "patching-action-a.value": 0,
    "patching-action-b.value": 1,
    "patching-mode.value": "exact",
    "patching-shown.data": None,
}
#: the callbacks a key press runs: the environment's, then these (by first output) with
#: the input that triggers them (the attention tab's trigger is set in the page)
AFTER_ENV = {"probabilities": f"{EPISODE}.data", "attention-pair": "attention-trigger.data"}


# ------------------------------------------------------------------------ server
def serve(args: argparse.Namespace) -> int:
    """The child process: the app as `dtlens app` runs it, on ``args.port``."""
    from dtlens.app import create_app, run

    app = create_app(model=args.model)
    print("serving", flush=True)
    run(app, port=args.port, server=args.server, server_threads=args.server_threads)
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, __file__, "--serve", "--port", str(port), "--model", args.model]
    command += ["--server", args.server, "--server-threads", str(args.server_threads)]
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited ({child.returncode}): {log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/_dash-dependencies")
            if conn.getresponse().status == 200:
                return child
        except OSError:
            time.sleep(0.2)
    child.kill()
    raise RuntimeError("the server did not answer within 120 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, s (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    """``(resident, peak resident)`` memory of a process, MiB (Linux /proc)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


# ------------------------------------------------------------------------ client
class Page:
    """One browser page: its session, the values it posts, its connections."""

    def __init__(self, port: int, callbacks: dict[str, dict], think_ms: float, seed: int):
        self.port = port
        self.callbacks = callbacks
        self.think_ms = think_ms
        self.random = random.Random(seed)
        self.local = threading.local()
        self.values: dict[str, Any] = {}
        self.events: list[dict] = []
        self.next_id = 1
        self.n_clicks = 0
        self.presses = 0
        self.press_ms: list[float] = []
        self.request_ms: list[float] = []
        self.errors: list[str] = []
        self.pool = ThreadPoolExecutor(len(AFTER_ENV))

    # -- HTTP
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return conn

    def _send(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):  # one retry on a connection the server closed
            conn = self._conn()
            try:
                t0 = time.perf_counter()
                conn.request(method, path, body, headers)
                response = conn.getresponse()
                data = response.read()
                self.request_ms.append((time.perf_counter() - t0) * 1000)
                return response.status, data
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _callback(self, first_output: str, changed: list[str]) -> dict | None:
        key = next(k for k in self.callbacks if k.startswith(f"..{first_output}."))
        spec = self.callbacks[key]

        def props(items):
            return [
                {**item, "value": self.values.get(f"{item['id']}.{item['property']}")}
                for item in items
            ]

        outputs = [
            dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
            for part in key.strip(".").split("...")
        ]
        body = {
            "output": key,
            "outputs": outputs,
            "inputs": props(spec["inputs"]),
            "state": props(spec["state"]),
            "changedPropIds": changed,
        }
        status, data = self._send("POST", ROUTE, json.dumps(body).encode())
        if status == 204:
            return None
        if status != 200:
            self.errors.append(f"{first_output}: HTTP {status} {data[:200]!r}")
            return None
        response = json.loads(data)["response"]
        for component, props_ in response.items():
            for prop, value in props_.items():
                if f"{component}.{prop}" in PAGE_VALUES and not isinstance(value, dict | list):
                    self.values[f"{component}.{prop}"] = value
                elif f"{component}.{prop}" == f"{EPISODE}.data":
                    self.values[f"{EPISODE}.data"] = value
        return response

    # -- the page
    def open(self) -> None:
        """Load the page: the index, the layout (a new session), the page-load callbacks."""
        self._send("GET", "/")
        status, data = self._send("GET", "/_dash-layout")
        if status != 200:
            raise RuntimeError(f"GET /_dash-layout: HTTP {status}")
        self.values = dict(PAGE_VALUES)
        self.values[f"{SESSION}.data"] = _find_store(json.loads(data), SESSION)
        self.values["model-picker.value"] = _find_store(json.loads(data), "model-picker", "value")
        self.events, self.next_id, self.n_clicks = [], 1, 0
        self._callback("grid-full", [])
        self._callback("attention-layer", [])
        self._after_env(initial=True)

    def _after_env(self, initial: bool = False) -> None:
        jobs = [
            self.pool.submit(self._callback, output, [] if initial else [changed])
            for output, changed in AFTER_ENV.items()
        ]
        for job in jobs:
            job.result()

    def press(self) -> None:
        """One key press (or reset, when the episode is over), timed to its last figure."""
        t0 = time.perf_counter()
        episode = self.values.get(f"{EPISODE}.data") or {}
        if episode.get("done"):
            self.n_clicks += 1
            self.values[f"{RESET}.n_clicks"] = self.n_clicks
            self._callback("grid-full", [f"{RESET}.n_clicks"])
        else:
            action = SCRIPT[self.presses % len(SCRIPT)]
            self.events = [*self.events, {"id": self.next_id, "action": action}][-16:]
            self.next_id += 1
            self.values[f"{KEYS}.data"] = {"events": self.events}
            self._callback("grid-full", [f"{KEYS}.data"])
        self._after_env()
        self.press_ms.append((time.perf_counter() - t0) * 1000)
        self.presses += 1

    def play(self, deadline: float) -> None:
        try:
            self.open()
            while time.monotonic() < deadline:
                self.press()
                if self.think_ms:
                    pause = self.think_ms * self.random.uniform(0.5, 1.5) / 1000
                    time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        except Exception as err:  # reported with the round
            self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            self.pool.shutdown()


def _find_store(layout: Any, component_id: str, prop: str = "data") -> Any:
    """The value of a component's property in the served layout (JSON)."""
    stack = [layout]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("props", {})
            if props.get("id") == component_id:
                return props.get(prop)
            stack.extend(props.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise RuntimeError(f"no {component_id!r} in the page's layout")


# ------------------------------------------------------------------------- rounds
def play_round(
    port: int,
    callbacks: dict,
    clients: int,
    seconds: float,
    think_ms: float,
    seed: int,
    server_pid: int,
) -> dict[str, Any]:
    pages = [Page(port, callbacks, think_ms, seed + i) for i in range(clients)]
    load_before = os.getloadavg()[0]
    server_cpu, client_cpu = cpu_seconds(server_pid), _own_cpu()
    start = time.monotonic()
    deadline = start + seconds
    threads = [threading.Thread(target=page.play, args=(deadline,)) for page in pages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.monotonic() - start
    server_cpu = cpu_seconds(server_pid) - server_cpu
    client_cpu = _own_cpu() - client_cpu
    press_ms = [t for page in pages for t in page.press_ms]
    request_ms = [t for page in pages for t in page.request_ms]
    errors = [e for page in pages for e in page.errors]
    return {
        "seconds": round(elapsed, 1),
        "presses": len(press_ms),
        "presses_per_s": round(len(press_ms) / elapsed, 1),
        "requests": len(request_ms),
        "requests_per_s": round(len(request_ms) / elapsed, 1),
        "press_ms": _summary(press_ms),
        "request_ms": _summary(request_ms),
        "server_cpu_ms_per_press": round(1000 * server_cpu / max(1, len(press_ms)), 1),
        "server_cores_used": round(server_cpu / elapsed, 2),
        "client_cores_used": round(client_cpu / elapsed, 2),
        "errors": len(errors),
        "first_errors": errors[:5],
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(p95, 1),
        "max": round(ordered[-1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent pages (default 20)")
    parser.add_argument("--seconds", type=float, default=30, help="length of a round (30)")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (4)")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured first round, s (5)")
    parser.add_argument(
        "--think-ms", type=float, default=0, help="pause between a page's presses (0)"
    )
    parser.add_argument("--model", default="memorydt", help="the app's model (memorydt)")
    parser.add_argument("--server", choices=["waitress", "flask"], default="waitress")
    parser.add_argument("--server-threads", type=int, default=None, help="waitress threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server_threads is None:
        from dtlens.app.server import DEFAULT_SERVER_THREADS

        args.server_threads = DEFAULT_SERVER_THREADS
    if args.serve:
        return serve(args)
    for name in ("clients", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not 0 < args.seconds <= 600 or not 0 <= args.warmup <= 600:
        parser.error("--seconds must be in (0, 600] and --warmup in [0, 600]")

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="bench_app_load_")) / "server.log"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(args, port, log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/_dash-dependencies")
        callbacks = {dep["output"]: dep for dep in json.loads(conn.getresponse().read())}
        print(
            f"{args.server} on 127.0.0.1:{port} ({args.server_threads} threads), "
            f"{args.clients} clients, think {args.think_ms:g} ms; "
            f"server RSS at start {rss_mib(server.pid)[0]:.0f} MiB"
        )
        if args.warmup:
            play_round(
                port, callbacks, args.clients, args.warmup, args.think_ms, 10_000, server.pid
            )
            print(f"warm-up ({args.warmup:g} s): RSS {rss_mib(server.pid)[0]:.0f} MiB")
        rounds = []
        for i in range(args.rounds):
            result = play_round(
                port, callbacks, args.clients, args.seconds, args.think_ms, i * 100, server.pid
            )
            result["rss_mib"], result["peak_rss_mib"] = (round(v, 1) for v in rss_mib(server.pid))
            rounds.append(result)
            press, request = result["press_ms"], result["request_ms"]
            print(
                f"round {i + 1}: {result['presses_per_s']} presses/s "
                f"({result['requests_per_s']} requests/s); press p50 {press['p50']} ms, "
                f"p95 {press['p95']} ms; request p50 {request['p50']} ms, p95 "
                f"{request['p95']} ms; errors {result['errors']}; RSS {result['rss_mib']} MiB; "
                f"server {result['server_cpu_ms_per_press']} CPU-ms/press on "
                f"{result['server_cores_used']} cores (clients {result['client_cores_used']}); "
                f"load {result['load_average_1m']}"
            )
            for error in result["first_errors"]:
                print(f"   error: {error}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

    import torch

    p95s = [r["press_ms"]["p95"] for r in rounds]
    rss = [r["rss_mib"] for r in rounds]
    report = {
        "benchmark": "bench_app_load",
        "what": "N pages play the app at once over HTTP (loopback), each press = the "
        "environment callback, then the model panel and the visible tab's callback "
        "(attention) in parallel, hidden tabs sending nothing; latencies in ms, memory = "
        "the server's RSS after each round",
        "server": args.server,
        "server_threads": args.server_threads,
        "torch_threads_of_server": 1,
        "model": args.model,
        "clients": args.clients,
        "seconds_per_round": args.seconds,
        "warmup_seconds": args.warmup,
        "think_ms": args.think_ms,
        "target_press_p95_ms": TARGET_P95_MS,
        "rounds": rounds,
        "worst_press_p95_ms": max(p95s),
        "rss_mib_per_round": rss,
        "rss_growth_mib_first_to_last_round": round(rss[-1] - rss[0], 1),
        "rss_growth_mib_second_to_last_round": round(rss[-1] - rss[min(1, len(rss) - 1)], 1),
        "server_cpu_ms_per_press": round(
            statistics.median(r["server_cpu_ms_per_press"] for r in rounds), 1
        ),
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "note": "the clients run on the same machine as the server",
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"worst press p95 {max(p95s)} ms ({'under' if max(p95s) < TARGET_P95_MS else 'OVER'} "
        f"{TARGET_P95_MS:.0f} ms); RSS {rss[0]} -> {rss[-1]} MiB; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
