"""A throwaway Ray cluster on this machine's loopback, for tests and benchmarks (needs the `ray` extra).

    with local_cluster(nodes=2) as address:   # `ray start --head` + one `ray start --address`
        run_ray_worker(store_url, address, once=True)

Each node gets 1 CPU and no GPU. `ray stop` runs in a finally, so the cluster never outlives the block.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engine.errors import TlabError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    if not Path(exe).exists():
        raise TlabError("The `ray` command is missing: pip install 'tradeoff-lab[ray]'.")
    return [exe]


def _env() -> dict:
    import engine

    root = str(Path(engine.__file__).resolve().parents[1])  # Ray workers import this same engine
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def _run(args: list[str], timeout_s: float = 120) -> None:
    proc = subprocess.run(_ray_cli() + args, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise TlabError(f"`ray {' '.join(args)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")


def stop_cluster() -> None:
    subprocess.run(_ray_cli() + ["stop", "--force"], env=_env(), capture_output=True, timeout=120)


def wait_for_nodes(address: str, nodes: int, timeout_s: float = 60) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        while sum(1 for n in ray.nodes() if n.get("Alive")) < nodes:
            if time.monotonic() > deadline:
                raise TlabError(f"The local Ray cluster did not reach {nodes} node(s) in {timeout_s:.0f} s.")
            time.sleep(0.5)
    finally:
        ray.shutdown()


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 200) -> Iterator[str]:
    """Start a loopback cluster of `nodes` nodes; yields its address; always stops it."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [f"--num-cpus={cpus_per_node}", "--num-gpus=0", f"--object-store-memory={object_store_mb * 1024**2}",
              "--disable-usage-stats"]
    try:
        _run(["start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
              *common])
        for _ in range(nodes - 1):
            _run(["start", f"--address={address}", "--node-ip-address=127.0.0.1", *common])
        wait_for_nodes(address, nodes)
        yield address
    finally:
        stop_cluster()
