"""Recovery by training: quantization-aware training (QAT) and 2:4 sparse fine-tuning with modelopt.

`spec.TrainingSpec` describes one run; `run.run_training` runs it (fine-tuned baseline, PTQ or
sparsified model, training with checkpoints, validation losses) and `run.run_training_job` is its
job entry point. `tlab train` is `cli.py`.
"""
