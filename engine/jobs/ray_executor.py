"""The Ray executor: a coordinator that claims jobs from the store like the local worker and runs
them as Ray tasks across a cluster (needs the `ray` extra).

    tlab worker --executor ray --ray-address HOST:6379      # or TLAB_EXECUTOR=ray + RAY_ADDRESS

Each job is split into parts (engine.jobs.ray_split: one per sweep recipe still to compute); each
part is a Ray task asking for its share of a node's CPUs (the most that still lets every part run at
once; its child uses no more threads than that), or 1 GPU of a type (`--ray-gpu-type H100`) when the
sweep's device is a GPU, and runs in its own child process on the node (engine.jobs.ray_task). The
coordinator alone writes the store: progress and heartbeats while parts run, each part's results as
it finishes, and the job's end (done, failed with the part's error and log tail, cancelled,
interrupted) as the local worker would. A Ray worker that dies is retried by Ray (`max_retries`).
"""

import logging
import os
import signal
import socket
import threading
import time
import uuid

from engine.errors import StoreError, TlabError
from engine.jobs.ray_split import check_feasible, describe_resources, job_progress, plan_job, results_to_save
from engine.paths import default_store_url, tlab_home

log = logging.getLogger("tlab.worker.ray")

HEARTBEAT_S = 1.0
STALE_AFTER_S = 30.0
CANCEL_WAIT_S = 15.0  # how long a cancelled job waits for its parts to stop before it is marked
MAX_RETRIES = int(os.environ.get("TLAB_RAY_RETRIES", "2"))  # Ray reruns a part whose worker died


def connect(address: str | None):
    """ray.init against the cluster at `address` (or $RAY_ADDRESS); a clear TlabError otherwise."""
    try:
        import ray
    except ImportError:
        raise TlabError("The Ray executor needs Ray: pip install 'tradeoff-lab[ray]' (on the coordinator "
                        "and on every machine of the cluster).") from None
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise TlabError("Say which Ray cluster to use: --ray-address HOST:PORT (or RAY_ADDRESS). Start one "
                        "with `ray start --head` on one machine and `ray start --address=HOST:PORT` on the others.")
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise TlabError(f"Cannot reach the Ray cluster at {address} ({e}). Check that `ray status "
                            f"--address {address}` works from this machine.") from None
    return ray


def _job_log(job_id: int):
    folder = tlab_home() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / f"{job_id}.log", "a", errors="replace")


def _threads_used(result: dict):
    """The CPU threads a result's accuracy stage ran on (None on a GPU), from its provenance."""
    return ((result.get("provenance") or {}).get("accuracy") or {}).get("cpu_threads")


class RayCoordinator:
    def __init__(self, store, ray, stop: threading.Event, gpu_type: str | None, heartbeat_s: float):
        from engine.jobs.ray_task import ProgressBoard

        self.store, self.ray, self.stop, self.gpu_type, self.heartbeat_s = store, ray, stop, gpu_type, heartbeat_s
        self.host = socket.gethostname()
        self.id = f"ray-{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.board = ProgressBoard.remote()
        self.timings: list[dict] = []  # per part: when it was submitted, started, ended, returned (benchmarks)

    def run_job(self, job: dict) -> None:
        try:
            self._run(job)
        except StoreError:
            raise
        except TlabError as e:  # e.g. a spec that cannot be split: the job's own fault, said plainly
            self.store.finish(job["id"], "failed", error=str(e))
        except Exception as e:  # noqa: BLE001 - a coordinator bug fails the job, not the coordinator
            log.exception("job %s: the Ray coordinator failed to run it", job["id"])
            self.store.finish(job["id"], "failed",
                              error=f"The Ray executor could not run this job: {type(e).__name__}: {e}")
        finally:
            self.ray.get(self.board.forget.remote(job["id"]))

    def _run(self, job: dict) -> None:
        from engine.jobs.ray_task import run_part

        job_id = job["id"]
        cluster = self.ray.cluster_resources()
        node_cpus = [n["Resources"].get("CPU", 0.0) for n in self.ray.nodes() if n.get("Alive")]
        plan = plan_job(job["fn"], job["payload"], self._finished, cluster.get("GPU", 0) > 0, self.gpu_type, cluster,
                        node_cpus)
        check_feasible(plan.parts, cluster)
        log.info("job %s: %d part(s) on Ray, %d result(s) reused", job_id, len(plan.parts), len(plan.reused))
        lines = [f"Ray: {len(plan.parts)} part(s) to run, {len(plan.reused)} result(s) reused from the store"]
        refs = {}
        for part in plan.parts:
            ref = run_part.options(**part.resources, max_retries=MAX_RETRIES, retry_exceptions=False).remote(
                job_id, part.key, part.fn, part.payload, self.board, job.get("owner"))
            refs[ref] = (part, time.time())
            lines.append(f"[{part.key}] sent to Ray ({describe_resources(part.resources)})")
        self.store.update_progress(job_id, 0.0, "waiting for Ray", lines)
        saved, reused, outcomes, states = set(), set(plan.reused), {}, {p.key: {} for p in plan.parts}
        outcome = self._watch(job_id, refs, states, saved, reused, outcomes)
        self._finish(job_id, plan, outcome, outcomes)

    def _finished(self, result_id: str) -> bool:
        from engine.store.records import UnreadableResult

        try:
            return self.store.has_finished_result(result_id)
        except UnreadableResult:
            return False

    def _watch(self, job_id, refs, states, saved, reused, outcomes) -> str | None:
        """Wait for the parts, relaying progress; save each part's results as it returns."""
        outcome, deadline = None, None
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=len(pending), timeout=self.heartbeat_s)
            for ref in ready:
                part, submitted = refs[ref]
                outcomes[part.key] = self._collect(job_id, ref, part, submitted, saved, reused)
            self._relay(job_id, states)
            try:
                cancel = self.store.heartbeat(self.id, job_id)
            except StoreError as e:
                log.warning("heartbeat failed: %s", e)
                cancel = False
            if outcome is None and (cancel or self.stop.is_set()):
                outcome = "cancelled" if cancel else "interrupted"
                for ref in pending:  # KeyboardInterrupt in a running part: it stops its child's process group
                    self.ray.cancel(ref)
                deadline = time.monotonic() + CANCEL_WAIT_S
            if deadline is not None and time.monotonic() > deadline:
                # A part still running did not take the KeyboardInterrupt (it can be lost inside a library
                # call): end its Ray worker; the part's child watches its parent and stops too.
                for ref in pending:
                    self.ray.cancel(ref, force=True)
                if pending:
                    log.warning("job %s: %d part(s) ignored the cancel for %.0f s; their Ray workers were ended",
                                job_id, len(pending), CANCEL_WAIT_S)
                break
        self._relay(job_id, states)
        return outcome

    def _collect(self, job_id, ref, part, submitted, saved, reused) -> dict:
        from ray.exceptions import RayError, TaskCancelledError

        try:
            out = self.ray.get(ref)
        except TaskCancelledError:
            return {"status": "cancelled", "error": "Cancelled on request."}
        except RayError as e:  # the worker died more times than max_retries, a node was lost, ...
            return {"status": "failed", "log_tail": [],
                    "error": (f"Part {part.key} could not finish on the Ray cluster after {MAX_RETRIES + 1} "
                              f"tries: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")}
        with _job_log(job_id) as f:  # the child's full output, as the local worker keeps it
            f.write(f"--- part {part.key} on {out.get('where', {}).get('host')}: full output ---\n"
                    f"{out.get('log_text') or ''}\n")
        new = results_to_save(out.get("results") or [], saved, reused)
        if new and out.get("status") == "done":
            self.store.save_results(new)
            saved.update(r["id"] for r in new)
        base_id = part.result_ids[0] if part.result_ids else None  # its baseline: the model load, the reference
        base = next((r for r in out.get("results") or [] if r.get("id") == base_id), {})
        setup = sum(float((base.get("timings") or {}).get(k) or 0.0) for k in ("load_s", "baseline_s"))
        stages = {r.get("precision", "?"): {**(r.get("timings") or {}), "threads": _threads_used(r)}
                  for r in out.get("results") or []}  # per-stage seconds, to set beside a local run's
        self.timings.append({"key": part.key, "submitted": submitted, "returned": time.time(), "setup_s": setup,
                             "stages": stages,
                             **{k: out.get(k) for k in ("t_task_start", "t_child_start", "t_child_end", "child_cpu_s")}})
        return out

    def _relay(self, job_id: int, states: dict) -> None:
        lines = []
        for key, (state, new) in self.ray.get(self.board.take.remote(job_id)).items():
            old_attempts = states.get(key, {}).get("attempts", 0)
            states[key] = state
            if state.get("attempts", 0) > old_attempts:
                lines.append(f"[{key}] attempt {state['attempts']} on {state.get('host')}: Ray worker pid "
                             f"{state.get('ray_worker_pid')}, child pid {state.get('child_pid')}")
            lines += [f"[{key}] {line}" for line in new]
        fraction, stage = job_progress(states)
        try:
            self.store.update_progress(job_id, fraction, stage, lines or None)
        except StoreError as e:
            log.warning("progress update failed: %s", e)
        if lines:
            with _job_log(job_id) as f:
                f.write("\n".join(lines) + "\n")

    def _finish(self, job_id: int, plan, outcome: str | None, outcomes: dict) -> None:
        if outcome == "cancelled":
            self.store.finish(job_id, "cancelled", error="Cancelled on request; its processes on the Ray cluster "
                                                         "were stopped.")
            return
        if outcome == "interrupted":
            self.store.finish(job_id, "interrupted", error="The Ray coordinator was stopped while this job was "
                                                           "running. Start it again to rerun it.")
            return
        failed = {k: o for k, o in outcomes.items() if o.get("status") != "done"}
        if failed:
            error = "; ".join(f"{k}: {o.get('error') or 'ended without a result'}" for k, o in failed.items())
            tail = [line for k, o in failed.items() for line in
                    [f"--- last lines of part {k}'s output ---", *(o.get("log_tail") or [])]]
            self.store.finish(job_id, "failed", error=error, log_line=tail)
            return
        ids = plan.result_ids or [r["id"] for o in outcomes.values() for r in o.get("results") or []]
        self.store.finish(job_id, "done", result_ids=ids, log_line=f"done: {len(ids)} result(s)")


def run_ray_worker(store_url: str | None = None, address: str | None = None, poll_s: float = 0.5,
                   once: bool = False, stop_event: threading.Event | None = None, gpu_type: str | None = None,
                   heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                   parent_pid: int | None = None, coordinator_out: list | None = None) -> int:
    """Claim queued jobs and run them on the Ray cluster until stopped; returns how many jobs it ran.
    `coordinator_out` (benchmarks, tests) receives the coordinator, for its timings."""
    from engine.store import open_store

    ray = connect(address)
    if stop_event is not None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):  # ray.init installs its own; stop between polls instead
            signal.signal(sig, lambda *_: stop_event.set())
    url = store_url or default_store_url()
    stop = stop_event or threading.Event()
    store = open_store(url)
    coordinator = RayCoordinator(store, ray, stop, gpu_type or os.environ.get("TLAB_RAY_GPU_TYPE"), heartbeat_s)
    if coordinator_out is not None:
        coordinator_out.append(coordinator)
    ran = 0
    try:
        store.register_worker(coordinator.id, os.getpid(), coordinator.host)
        for job_id in store.mark_interrupted_stale(stale_after_s):
            log.info("job %s was left running by a worker that is gone: marked interrupted", job_id)
        while not stop.is_set():
            try:
                job = store.claim_next(coordinator.id, os.getpid(), coordinator.host)
                if job is not None:
                    coordinator.run_job(job)
                    ran += 1
                    continue
                if once or (parent_pid and os.getppid() != parent_pid):
                    break
                store.heartbeat(coordinator.id)
            except StoreError as e:
                log.warning("%s", e)
                stop.wait(max(poll_s, 2.0))
                continue
            stop.wait(poll_s)
    finally:
        try:
            store.worker_stopped(coordinator.id)
        finally:
            store.close()
    return ran
