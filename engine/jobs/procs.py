"""Small process helpers for the worker: is a pid alive, and what an exit status means in words."""

import os
import signal

_SIGNAL_WORDS = {
    "SIGSEGV": "segmentation fault, usually a bug in a native library",
    "SIGBUS": "bus error, usually a bug in a native library",
    "SIGABRT": "aborted by a native library",
    "SIGFPE": "arithmetic error in a native library",
    "SIGILL": "illegal instruction (a library built for another CPU)",
    "SIGKILL": "killed, often by the system when it runs out of memory",
}


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (zombies count as gone)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a zombie has exited; Linux shows it as state Z
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def describe_exit(returncode: int) -> str:
    """Plain words for a child's non-zero exit status (negative: killed by a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        words = _SIGNAL_WORDS.get(name, "stopped by a signal")
        return f"The job's process crashed ({name}: {words}). See the log below for its last lines."
    return (f"The job's process exited with code {returncode} before finishing. "
            "See the log below for its last lines.")
