"""Diffusion models: the bundled offline model (a small class-conditional UNet trained by this
project on scikit-learn's handwritten digits), diffusers pipelines from a local folder or a Hugging
Face id (`local`: layout checks; `pipelines`: the `Denoising` interface both kinds share), and the
helpers a diffusion sweep builds on.

Light on purpose: importing `engine.diffusion` pulls in neither torch nor diffusers; import
`engine.diffusion.bundled` for the model itself (it needs the `diffusion` extra).
"""

BUNDLED_DIR = "bundled_diffusion"  # under engine.paths.ASSETS
BUNDLED_LABEL = "trained by this project on scikit-learn digits"
