"""Job functions only the fault suite queues (allowed with TLAB_JOB_MODULES=tests; never in production).

They run in the worker's child process like real jobs.
"""

import resource
import time

BATCH = 20  # results per save_results call: all of a batch, or none of it, may be in the store
METRICS = 12


def batch_records(tag: str, batch: int) -> list[dict]:
    return [{"id": f"{tag}-{batch}-{i}", "model": "fault-model", "precision": "int8_sq", "experiment": tag,
             "metrics": {f"m{k}": batch + i / 100 + k / 10_000 for k in range(METRICS)},
             "provenance": {"accuracy": {"kind": "measured", "device": "cpu"}},
             "spec": {"fault": tag, "pad": "x" * 2000}}  # big rows: a write spans several pages
            for i in range(BATCH)]


def write_storm(payload: dict, progress) -> list[str]:
    """Save batches of results as fast as it can (payload["batches"], None: until killed)."""
    from engine.store import open_store

    store = open_store()
    tag, limit = payload["tag"], payload.get("batches")
    batch, ids = 0, []
    while limit is None or batch < limit:
        ids += store.save_results(batch_records(tag, batch))
        progress(None, f"batch {batch}", f"saved batch {batch}")
        batch += 1
    return ids


def eat_memory(payload: dict, progress) -> None:
    """Allocate (and touch) memory until the address-space limit set here stops it."""
    with open("/proc/self/status") as f:
        vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + payload.get("headroom_mb", 256) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    progress(0.1, "allocating", f"address space limited to {limit // 2**20} MiB")
    hoard = []
    while True:
        chunk = bytearray(16 * 2**20)
        chunk[::4096] = b"\x01" * len(chunk[::4096])  # touch every page: real memory, not just reserved
        hoard.append(chunk)
        if len(hoard) > 10_000:  # 160 GB: the limit did not hold; fail loudly rather than run forever
            raise AssertionError("the memory limit was not enforced")
        time.sleep(0)
