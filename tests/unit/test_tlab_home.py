"""One home folder: the estimator's fit cache and the results store sit under the same tlab_home()."""

from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from engine import paths
from engine.perf import calibrate


def _fit_cache_files(monkeypatch, root: Path) -> list[Path]:
    """Runs the estimator's cached fit (the fit itself stubbed: only where it is kept matters) and
    returns every cache file it left anywhere under `root`; a second run must read it back."""
    monkeypatch.setattr(calibrate, "fit", lambda points, ratios=None: calibrate.Calibration({"p": 1.0}))
    points = pd.DataFrame(columns=calibrate.POINT_COLUMNS)
    calibrate.fit_cached(points)

    def no_refit(points, ratios=None):
        raise AssertionError("the cache was not read back")

    monkeypatch.setattr(calibrate, "fit", no_refit)
    assert calibrate.fit_cached(points).params == {"p": 1.0}
    return list(root.rglob("perf_calibration_*.json"))


def _store_folder() -> Path:
    url = paths.default_store_url()
    assert url.startswith("sqlite:///")
    return Path(unquote(url.removeprefix("sqlite:///"))).parent


def test_cache_and_store_share_tlab_home(monkeypatch, tmp_path):
    home = tmp_path / "lab home"
    monkeypatch.setenv("TLAB_HOME", str(home))
    monkeypatch.delenv("TLAB_CACHE", raising=False)  # the suite shares one (tests/conftest.py)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert paths.tlab_home() == home
    assert _fit_cache_files(monkeypatch, tmp_path) == [next((home / "cache").glob("perf_calibration_*.json"))]
    assert _store_folder() == home


def test_without_tlab_home_both_use_the_platform_data_folder(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("TLAB_HOME", raising=False)
    monkeypatch.delenv("TLAB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # where a '~/.tlab' default would land
    data = tmp_path / "data"
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda appname=None, *a, **k: str(data / appname))
    home = paths.tlab_home()
    assert home == data / paths.APP_NAME
    files = _fit_cache_files(monkeypatch, tmp_path)
    assert len(files) == 1 and files[0].parent == home / "cache"
    assert _store_folder() == home
    assert not (tmp_path / "user" / ".tlab").exists()


def test_tlab_cache_moves_only_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLAB_CACHE", str(tmp_path / "shared cache"))
    assert _fit_cache_files(monkeypatch, tmp_path) == [next((tmp_path / "shared cache").glob("perf_calibration_*.json"))]
    assert _store_folder() == tmp_path / "home"


@pytest.mark.parametrize("module", ["engine.perf.calibrate", "engine.perf.catalog"])
def test_no_second_home_function(module):
    import importlib

    mod = importlib.import_module(module)
    assert getattr(mod, "tlab_home", paths.tlab_home) is paths.tlab_home


@pytest.mark.bad_input
def test_a_full_disk_when_creating_the_home_says_free_space(monkeypatch, tmp_path):
    import errno

    from engine.errors import SettingError

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "new home"))
    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(SettingError) as err:
        paths.tlab_home()
    message = str(err.value)
    assert "No space left on device" in message and "free some space" in message and "TLAB_HOME" in message


@pytest.mark.bad_input
@pytest.mark.parametrize("exists", [True, False])
def test_a_read_only_home_says_read_only(monkeypatch, tmp_path, exists):
    from engine.errors import SettingError

    probe = tmp_path / "probe"
    probe.touch(0o444)
    try:
        probe.open("a").close()
        pytest.skip("this user writes through file permissions (root without setpriv --bounding-set -dac_override)")
    except PermissionError:
        pass
    parent = tmp_path / "locked"
    (parent / "home").mkdir(parents=True) if exists else parent.mkdir()
    monkeypatch.setenv("TLAB_HOME", str(parent / "home"))
    locked = parent / "home" if exists else parent
    locked.chmod(0o555)
    try:
        with pytest.raises(SettingError) as err:
            paths.tlab_home()
    finally:
        locked.chmod(0o755)
    message = str(err.value)
    assert ("read-only" in message or "Permission denied" in message) and "set TLAB_HOME" in message
