"""`tlab app` and `tlab --version`.

`tlab app` starts the Streamlit app from wherever the package lives (a checkout or an installed wheel)
with the project's settings passed as command-line flags, so they hold whatever the current directory:
Streamlit itself reads `.streamlit/config.toml` only from the current directory (and the user's
~/.streamlit/), and command-line flags override both. The settings are read from the one file,
`.streamlit/config.toml`, which the wheel ships as tradeoff_lab_ui/config/config.toml.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from engine import auth
from engine.errors import TlabError

DIST_NAME = "tradeoff-lab"
# Without sign-in whoever reaches the port can queue jobs and read every result (engine.auth).
NO_SIGN_IN = ("without sign-in it serves this machine only (--host 127.0.0.1, ::1 or localhost); "
              "another address needs TLAB_AUTH=password or an [auth] section in .streamlit/secrets.toml")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DIST_NAME)
    except PackageNotFoundError:  # run from a checkout that was never installed
        from engine import __version__

        return __version__


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"tlab {package_version()}")


def ui_root() -> tuple[Path, Path]:
    """(folder holding app/ and pages/, the settings file). The checkout beside the imported engine
    wins, so a source run never mixes with another installed copy; else the installed wheel's layout."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "app" / "main.py").is_file() and (checkout / ".streamlit" / "config.toml").is_file():
        return checkout, checkout / ".streamlit" / "config.toml"
    import importlib.util

    try:
        spec = importlib.util.find_spec("tradeoff_lab_ui.app")
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.origin:
        raise TlabError("the app is not installed with this copy of Tradeoff Lab (no tradeoff_lab_ui.app); "
                        "reinstall the package: pip install --force-reinstall tradeoff-lab")
    root = Path(spec.origin).resolve().parents[1]
    return root, root / "config" / "config.toml"


def load_settings(path: Path) -> dict[str, dict[str, Any]]:
    """The sections of a Streamlit config.toml, e.g. {"server": {"address": "127.0.0.1", ...}, ...}."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - declared for Python < 3.11 in pyproject.toml
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise TlabError(f"the app's settings file is missing: {path}; reinstall the package") from None


def is_loopback(host: str) -> bool:
    return auth.is_loopback(host)


def check_exposure(address: str | None) -> None:
    """Refuse a non-loopback address unless sign-in is configured (and, for passwords, has an account)."""
    mode = auth.sign_in_mode()  # a bad TLAB_AUTH or [auth] section is reported here, wherever it serves
    if auth.is_loopback(address):
        return
    count = None
    if mode == "password":
        from engine.store import open_store

        store = open_store()
        try:
            count = len(store.list_users())
        finally:
            store.close()
    problem = auth.exposure_problem(address, mode, count)
    if problem:
        raise TlabError(problem)


def _flag_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def streamlit_args(main_py: Path, settings: dict[str, dict[str, Any]], host: str | None = None,
                   port: int | None = None) -> list[str]:
    """`streamlit` arguments: run MAIN_PY with every setting as a --section.key=value flag."""
    settings = {section: dict(opts) for section, opts in settings.items()}
    server = settings.setdefault("server", {})
    if host is not None:
        server["address"] = host
    if port is not None:
        server["port"] = port
    check_exposure(str(server.get("address", "")))
    args = ["run", str(main_py)]
    for section, opts in settings.items():
        if not isinstance(opts, dict):
            raise TlabError(f"unexpected setting {section!r} in the app's config.toml: expected [sections]")
        args += [f"--{section}.{key}={_flag_value(value)}" for key, value in opts.items()]
    return args


def _port(s: str) -> int:
    try:
        port = int(s)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be a whole number from 1 to 65535: {s}")
    return port


def add_app_parser(sub) -> None:
    p = sub.add_parser("app", help="start the web app on this machine",
                       description="Start the Tradeoff Lab web app (Streamlit) with the project's settings, "
                                   "whatever the current directory. It listens on 127.0.0.1 by default; "
                                   + NO_SIGN_IN + ".")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; another one needs "
                                                 "sign-in: see docs/deploy_team.md)")
    p.add_argument("--port", type=_port, default=None, help="port to listen on (default 8501)")
    p.add_argument("--dry-run", action="store_true", help="print the streamlit command and exit")
    p.set_defaults(func=run_app_cmd)


def run_app_cmd(args) -> int:
    root, config = ui_root()
    argv = streamlit_args(root / "app" / "main.py", load_settings(config), args.host, args.port)
    if args.dry_run:
        print(shlex.join([sys.executable, "-m", "streamlit", *argv]))
        return 0
    import importlib.util
    import os

    if importlib.util.find_spec("streamlit") is None:
        raise TlabError("streamlit is not installed; reinstall the package: pip install tradeoff-lab")
    # Streamlit replaces this process (no child left behind when `tlab app` is stopped), and the
    # engine itself never imports Streamlit.
    cmd = [sys.executable, "-m", "streamlit", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, cmd)
    import subprocess  # Windows has no exec that keeps the console: wait for the child instead

    return subprocess.call(cmd)
