"""Job functions used by the job-system tests (allowed with TLAB_JOB_MODULES=tests).

They run inside the worker's child process, exactly like real jobs.
"""

import ctypes
import os
import time

from engine.errors import DataError


def sleepy(payload: dict, progress) -> list[str]:
    """Report progress in `steps` steps of `step_s` seconds; return payload["result_ids"]."""
    steps = int(payload.get("steps", 5))
    for i in range(steps):
        progress(i / steps, f"step {i + 1} of {steps}", f"working on step {i + 1}")
        time.sleep(float(payload.get("step_s", 0.05)))
    progress(1.0, "finishing", "all steps done")
    return payload.get("result_ids", [])


def save_one_result(payload: dict, progress) -> list[str]:
    """Save a result to the store the worker gave us ($TLAB_STORE_URL) and return its id."""
    from engine.store import open_store

    progress(0.5, "saving")
    record = payload["record"]
    open_store().save_result(record)
    return [record["id"]]


def exit_hard(payload: dict, progress) -> None:
    progress(0.1, "about to exit", "exiting with code 3")
    os._exit(3)


def segfault(payload: dict, progress) -> None:
    progress(0.1, "about to crash", "reading address 0")
    ctypes.string_at(0)  # a real segmentation fault in native code


def raise_tlab_error(payload: dict, progress) -> None:
    raise DataError("The calibration file is empty. Choose a file with at least one line of text.")


def raise_value_error(payload: dict, progress) -> None:
    progress(0.2, "computing")
    raise ValueError("boom in the middle")
