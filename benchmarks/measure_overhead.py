"""Host-side overhead of measuring over SSH, and the agent's fidelity to a bare onnxruntime loop.

Run: ``python benchmarks/measure_overhead.py`` (needs openssh-server; starts its own sshd on
127.0.0.1, its own daemon and a private HOSTSIDE_HOME, and removes them afterwards).

Figures (medians of several repetitions, the variants interleaved):
  0. the one-shot path: ``hostside measure --board bare MODEL --json`` as a fresh process on a
     board with no daemon (model cached, the board's control process listening): its wall time
     minus that of ``device-agent measure`` run alone with the same flags is the host's
     overhead. Target <= 0.3 s. Also with HOSTSIDE_NO_CONTROL=1 (paramiko import and SSH
     handshake in every command). Beside them, what
     one empty SSH command costs (``true`` on an open connection: the board's sshd session and
     login shell, which any exec pays), since a slow shell rc file on the board shows up here.
  1. ``hostside measure --board loop MODEL --json`` as a fresh process, daemon running, model
     cached: wall time minus the agent's own timed runs (sum of the timed latencies).
     Target <= 0.3 s. The first command starts the board's control process
     (hostside.boards.control), which keeps the SSH connection open, so the repeated fresh
     processes import no paramiko and open no connection ("via control" below).
  2. the same through ``Board.measure`` on an open connection (what a search loop pays).
  3. the fresh process's fixed start-up: ``python -c pass`` and building the ``hostside``
     parser (imports of every area's commands), which no board work can remove.
  4. the agent's median latency / a bare ``InferenceSession.run`` loop's median, same threads
     and session options. Target within 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from device_agent.bench import make_input
from device_agent.protocol import file_sha256
from hostside.boards import inventory, open_board, ssh
from hostside.boards.install import install
from hostside.boards.loopback_sshd import LoopbackSshd, free_port, wait_for_port
from hostside.boards.ssh import SSHTransport


def small_model(path: Path) -> Path:
    """Conv 3x3 (16 ch) -> Relu -> Conv 3x3 (16 ch) -> Relu -> Flatten -> Gemm(10) on 1x28x28."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 1, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w2"),
        numpy_helper.from_array(rng.standard_normal((16 * 28 * 28, 10)).astype(np.float32) * 0.01, "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def bare_loop_median_ms(model: Path, threads: int, warmup: int, runs: int) -> float:
    """The reference: the same session options and input, timed with nothing around it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    feeds = {"x": make_input([1, 1, 28, 28], 0, np.float32)}
    for _ in range(warmup):
        session.run(None, feeds)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, feeds)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.median(samples))


#: Pause between repetitions so the daemon's next worker has finished warming up ("warm").
PAUSE_S = 1.0


def _wall(command: list, repeats: int = 5) -> float:
    """Median wall time of a short command."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_shot_overheads(config: "inventory.BoardConfig", model: Path, flags: list, repeats: int) -> dict:
    """Fresh one-shot ``hostside measure`` processes and ``device-agent measure`` alone, interleaved."""
    cached = f"{config.agent_dir}/models/{file_sha256(model)}.onnx"
    hostside_cmd = [sys.executable, "-m", "hostside.cli", "measure", "--board", config.name, str(model), *flags]
    agent_cmd = [sys.executable, "-m", "device_agent", "measure", cached, *flags]
    agent_env = {**os.environ, "DEVICE_AGENT_HOME": config.agent_dir, "PYTHONPATH": f"{config.agent_dir}/lib"}
    subprocess.run(hostside_cmd, check=True, capture_output=True)  # uploads the model
    time.sleep(2 * PAUSE_S)  # the control process it started connects meanwhile
    walls: dict = {"hostside": [], "own_connection": [], "agent": [], "empty_exec": []}
    own_connection = {**os.environ, "HOSTSIDE_NO_CONTROL": "1"}
    transport = SSHTransport(config)
    try:
        for _ in range(repeats):
            for env, name in ((None, "hostside"), (own_connection, "own_connection")):
                start = time.perf_counter()
                done = subprocess.run(hostside_cmd, check=True, capture_output=True, text=True, env=env)
                walls[name].append(time.perf_counter() - start)
                host = json.loads(done.stdout)["host"]
                assert host["path"] == "one-shot" and bool(host.get("via_control")) == (env is None), host
            start = time.perf_counter()
            subprocess.run(agent_cmd, check=True, capture_output=True, env=agent_env)
            walls["agent"].append(time.perf_counter() - start)
            start = time.perf_counter()
            transport.run(["true"], 30.0)
            walls["empty_exec"].append(time.perf_counter() - start)
    finally:
        transport.close()
    return {name: statistics.median(values) for name, values in walls.items()}


def timed_runs_s(result: dict) -> float:
    latency = result["latency_ms"]
    return latency["mean"] * latency["count"] / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores; figures mean something below 0.3")

    with tempfile.TemporaryDirectory() as scratch_name, LoopbackSshd(Path(scratch_name) / "sshd") as sshd:
        scratch = Path(scratch_name)
        os.environ["HOSTSIDE_HOME"] = str(scratch / "home")
        os.environ["HOSTSIDE_CONTROL_IDLE_S"] = "60"  # the control process ends soon after the benchmark
        config = inventory.BoardConfig(
            name="loop", host="127.0.0.1", port=sshd.port, user=os.environ.get("USER", "root"),
            key=str(sshd.client_key), python=sys.executable, agent_dir=str(scratch / "agent"), daemon_port=free_port(),
        )
        # The same machine as a board with no daemon: every measurement is one-shot.
        bare = inventory.BoardConfig(
            name="bare", host=config.host, port=config.port, user=config.user, key=config.key,
            python=sys.executable, agent_dir=str(scratch / "agent-bare"), daemon_port=free_port(),
        )
        for board in (config, bare):
            inventory.add(board)
            ssh.trust(board, ssh.fetch_host_key(board))
            install(board, say=lambda _: None)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "serve", "--port", str(config.daemon_port)],
            env={**os.environ, "DEVICE_AGENT_HOME": config.agent_dir, "PYTHONPATH": f"{config.agent_dir}/lib"},
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(config.daemon_port)
            model = small_model(scratch / "bench.onnx")
            one_shot = one_shot_overheads(bare, model, ["--runs", "5", "--threads", str(args.threads), "--json"], args.repeats)
            flags = ["--runs", str(args.runs), "--threads", str(args.threads), "--json"]
            command = [sys.executable, "-m", "hostside.cli", "measure", "--board", "loop", str(model), *flags]
            subprocess.run(command, check=True, capture_output=True)  # upload + first run: not "warm"
            time.sleep(2 * PAUSE_S)  # the control process it started connects meanwhile
            cli_overheads, cli_paths, own_overheads = [], set(), []
            own_connection = {**os.environ, "HOSTSIDE_NO_CONTROL": "1"}
            for _ in range(args.repeats):
                for env, overheads in ((None, cli_overheads), (own_connection, own_overheads)):
                    start = time.perf_counter()
                    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
                    wall = time.perf_counter() - start
                    result = json.loads(done.stdout)
                    if env is None:
                        cli_paths.add(result["host"]["path"] + (" via control" if result["host"].get("via_control") else ""))
                    overheads.append(wall - timed_runs_s(result))
                    time.sleep(PAUSE_S)
            api_overheads, agent_medians, bare_medians = [], [], []
            with open_board("loop") as board:
                board.measure(model, runs=5, threads=args.threads)
                for _ in range(args.repeats):
                    result = board.measure(model, runs=args.runs, threads=args.threads)
                    api_overheads.append(result["host"]["total_s"] - timed_runs_s(result))
                    agent_medians.append(result["latency_ms"]["median"])
                    bare_medians.append(bare_loop_median_ms(model, args.threads, 10, args.runs))
                    time.sleep(PAUSE_S)
            startup = [
                _wall([sys.executable, "-c", "pass"]),
                _wall([sys.executable, "-c", "import hostside.cli as c; c.build_parser()"]),
                _wall([sys.executable, "-c", "import paramiko"]),
            ]
        finally:
            daemon.terminate()
            daemon.wait()

    ratios = [a / b for a, b in zip(agent_medians, bare_medians)]
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"model: 2x Conv3x3(16) + MatMul on 1x28x28, {args.runs} timed runs, {args.threads} thread(s), {args.repeats} repeats")
    print(f"one-shot path (no daemon), --runs 5: hostside measure {one_shot['hostside']:.3f} s, device-agent measure "
          f"alone {one_shot['agent']:.3f} s: host overhead {one_shot['hostside'] - one_shot['agent']:.3f} s; target <= 0.3 s")
    print(f"  the same, each process opening its own SSH connection (HOSTSIDE_NO_CONTROL=1): host overhead "
          f"{one_shot['own_connection'] - one_shot['agent']:.3f} s")
    print(f"  one empty SSH command on the board (connection open: sshd session and login shell): {one_shot['empty_exec']:.3f} s")
    print(f"daemon path, used by the CLI: {', '.join(sorted(cli_paths))}")
    print(f"hostside measure (fresh process) overhead beyond timed runs: median {statistics.median(cli_overheads):.3f} s "
          f"(min {min(cli_overheads):.3f}, max {max(cli_overheads):.3f}); target <= 0.3 s")
    print(f"  the same, each process opening its own SSH connection (HOSTSIDE_NO_CONTROL=1): median "
          f"{statistics.median(own_overheads):.3f} s (min {min(own_overheads):.3f}, max {max(own_overheads):.3f})")
    print(f"Board.measure (open connection) overhead beyond timed runs:   median {statistics.median(api_overheads):.3f} s "
          f"(min {min(api_overheads):.3f}, max {max(api_overheads):.3f})")
    print(f"  of which fixed start-up: python {startup[0]:.3f} s, hostside parser {startup[1]:.3f} s (all areas' imports), "
          f"import paramiko {startup[2]:.3f} s (medians of 5)")
    print(f"agent median {statistics.median(agent_medians):.4f} ms vs bare loop {statistics.median(bare_medians):.4f} ms: "
          f"ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); target within 5%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
