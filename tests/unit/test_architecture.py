"""The layers of the code, as the import-linter contract in .importlinter states them."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_engine_never_imports_streamlit():
    hits = [p for p in (ROOT / "engine").rglob("*.py")
            if any(line.lstrip().startswith(("import streamlit", "from streamlit"))
                   for line in p.read_text().splitlines())]
    assert hits == []
