#!/usr/bin/env bash
# Run HERE (no GPU needed) before a session's device call: fills .gpu_carry/ (git-ignored) with what
# the GPU machine lacks: Python 3.12 wheels of our dependencies that its image does not have
# (nvidia-modelopt, diffusers and the store's packages, ~32 MB) and the bundled model's tokenizer.
# The bundled GGUF itself (94 MB) is over the device tool's 64 MiB carry limit, so run.sh builds a
# random-weight model of SmolLM2-1.7B's public shape there instead: right for speed, not accuracy.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu_carry
rm -rf "$out" && mkdir -p "$out/whl"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
for pkg in "nvidia-modelopt==$(python3 -c 'import modelopt; print(modelopt.__version__)')" \
           omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 pulp==3.3.2 pydantic==2.13.4 pydantic-core==2.46.4 \
           annotated-types==0.7.0 typing-inspection==0.4.2 sqlalchemy==2.1.9 greenlet==3.5.6 alembic==1.20.1 \
           mako==1.4.3 platformdirs==4.14.8 \
           "diffusers==$(python3 -c 'import diffusers; print(diffusers.__version__)')" importlib-metadata==10.2.0 \
           lazy-importer==0.1.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d "$out/whl" "$pkg" 2>&1 | grep -v "is ignored" || true
done
python3 - "$out/tokenizer" <<'PY'
import sys, warnings
warnings.filterwarnings("ignore")
from engine.models.loader import resolve
from engine.spec import ModelRef
from transformers import AutoTokenizer
loc = resolve(ModelRef())
AutoTokenizer.from_pretrained(loc.path, gguf_file=loc.gguf_file).save_pretrained(sys.argv[1])
PY
du -sh "$out"
echo "Now call the device tool with carry [\".gpu_carry\"] and command: bash benchmarks/gpu_check/run.sh"
