#!/usr/bin/env bash
# The one prepared GPU check (run ON the device machine, from the repo root, after prepare.sh here):
#   device run, carry [".gpu_carry"], command "bash benchmarks/gpu_check/run.sh", timeout_s 540
# It installs the carried wheels, builds a random-weight SmolLM2-1.7B-shaped model on the GPU, and
# drives the product's real path: `tlab sweep --benchmark` with the PyTorch CUDA runtime (BF16
# baseline, FP8 via torch._scaled_mm, INT4 AWQ via tinygemm; NVFP4 must be refused on Hopper with a
# reason); then the bundled diffusion UNet (bf16 baseline, FP8 linear layers via torch._scaled_mm, INT8 refused
# with its reason). Results (JSON with provenance) and the log come back under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 TLAB_HOME=/tmp/tlab OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu_carry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, transformers, modelopt; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| modelopt', modelopt.__version__)"
tlab() { timeout "$1" python3 -m engine.cli "${@:2}"; }
# Correctness first: the CUDA kernels reproduce modelopt's calibrated model, LLM and diffusion (tests/gpu,
# skipped in CI).
timeout 240 python3 -m pytest -q -s -p no:cacheprovider tests/gpu || echo "GPU TESTS FAILED (exit $?)"
tlab 60 estimate --model HuggingFaceTB/SmolLM2-1.7B --gpu h200 --precision fp8 --batch 8 --isl 512 --osl 128 --json
python3 benchmarks/gpu_check/random_checkpoint.py /tmp/ckpt --tokenizer .gpu_carry/tokenizer || exit 1
common=(--model /tmp/ckpt --calib-size 16 --calib-seq-len 256 --eval-tokens 2048 --device cuda)
# NVFP4 on Hopper: expect a refusal that says why (Blackwell needed), not a crash.
tlab 60 sweep "${common[@]}" --recipes nvfp4 && echo "UNEXPECTED: nvfp4 ran on this GPU"
tlab 420 sweep "${common[@]}" --recipes fp8,int4_awq,w4a8_awq,int8_sq --benchmark --backend pytorch \
    --isl 512 --osl 128 --batch-sizes 1,8,32 --experiment gpu-check
echo "sweep exit $?"
# Diffusion: the bundled digits UNet on the GPU. bf16 baseline; FP8 with its linear layers on torch._scaled_mm
# (convolutions and attention stay bf16, and the result says so); INT8 refused with the reason (no INT8
# convolution on CUDA in PyTorch). 40 images, 20 steps, step latency at batch 8 and 64.
tlab 180 sweep --model bundled-diffusion --precisions fp8,int8_sq --device cuda --images-per-condition 4 \
    --labels 0,1,2,3,4,5,6,7,8,9 --steps 20 --benchmark --batch-sizes 8,64 --experiment gpu-check-diffusion
echo "diffusion sweep exit $?"
tlab 60 results --format json > "$OUT/results.json"
tlab 60 results --format table
# Which decode loop and kernels each measurement used (the lean loop falls back to transformers' forward
# with a reason when it does not reproduce transformers' logits on this GPU).
python3 - "$OUT/results.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    detail = r.get("provenance_detail") or {}
    speed = detail.get("speed") or {}
    if "step_latency_ms_bs8" in r or "psnr_db" in r:  # a diffusion result
        kernels = [(m["batch_size"], m["provenance"].get("kernels")) for m in speed.get("measurements", [])]
        print("diffusion", r["precision"], {k: v for k, v in r.items() if "speedup" in k or "latency" in k},
              "psnr", r.get("psnr_db"), "task", r.get("task_accuracy"), "|", speed.get("scope"),
              "|", detail.get("speed_not_measured"), "|", kernels[:1])
        continue
    print(r["precision"], r.get("speedup"), "|", speed.get("decode_loop"), "|", speed.get("kernels"))
PY
