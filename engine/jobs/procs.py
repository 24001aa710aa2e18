"""What a job process's exit status means, in words (whether a pid is alive: engine.system)."""

import signal

_SIGNAL_WORDS = {
    "SIGSEGV": "segmentation fault, usually a bug in a native library",
    "SIGBUS": "bus error, usually a bug in a native library",
    "SIGABRT": "aborted by a native library",
    "SIGFPE": "arithmetic error in a native library",
    "SIGILL": "illegal instruction (a library built for another CPU)",
    "SIGKILL": "killed, often by the system when it runs out of memory",
}


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
