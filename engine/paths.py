"""Where Tradeoff Lab keeps its files: one home folder (overridable with $TLAB_HOME) for what it
writes, and the shipped data files (assets) it reads."""

import errno
import os
from importlib import resources
from pathlib import Path
from urllib.parse import quote

APP_NAME = "tradeoff-lab"


def tlab_home() -> Path:
    """$TLAB_HOME if set, else the platform's user data folder; created on demand."""
    env = os.environ.get("TLAB_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs  # only needed without $TLAB_HOME

        home = Path(platformdirs.user_data_dir(APP_NAME))
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # below a file, read-only, or full: say which, and what to set
        from engine.errors import SettingError

        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise SettingError(f"Tradeoff Lab's data folder {home} cannot be created ({exc.strerror or exc}); "
                           + ("free some space on that disk, or " if full else "")
                           + "set TLAB_HOME to a folder you can write to.") from None
    if not os.access(home, os.W_OK):
        from engine.errors import SettingError

        raise SettingError(f"Tradeoff Lab's data folder {home} is read-only for this user; "
                           "set TLAB_HOME to a folder you can write to.")
    return home


def cache_dir() -> Path:
    """$TLAB_CACHE if set, else <home>/cache: copies kept only to save time (converted models), safe to delete."""
    env = os.environ.get("TLAB_CACHE")
    return Path(env).expanduser() if env else tlab_home() / "cache"


def default_store_url() -> str:
    """$TLAB_STORE_URL if set, else a SQLite file in the home folder."""
    if os.environ.get("TLAB_STORE_URL"):
        return os.environ["TLAB_STORE_URL"]
    # Escape the characters a URL would misread ('#', '?', '%'); SQLAlchemy decodes them again.
    return "sqlite:///" + quote(str(tlab_home() / "tlab.db"), safe="/\\: ")


def _assets_dir() -> Path:
    """engine/assets/ in an installed wheel (pyproject ships the top-level assets/ folder as the
    package data of `engine.assets`); the checkout's top-level assets/ in a source or editable install."""
    shipped = Path(str(resources.files("engine") / "assets"))
    if (shipped / "gpus.csv").is_file():
        return shipped
    return Path(__file__).resolve().parents[1] / "assets"


ASSETS = _assets_dir()


def asset(name: str) -> Path:
    return ASSETS / name
