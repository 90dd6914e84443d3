"""Small text-to-image and text-to-video diffusion models trained here on scikit-learn's digits."""

from pathlib import Path

#: the repository's models/ folder, where the trained default models are committed
MODELS_DIR = Path(__file__).resolve().parents[3] / "models"
#: the default image model (`genloom train image` writes it)
IMAGE_MODEL_DIR = MODELS_DIR / "digits-image"
#: the `builder` of its marker, which tells the loader to build a `DigitsPipeline`
IMAGE_BUILDER = "genloom-digits-image"
#: frames of a clip of the default video model
VIDEO_FRAMES = 8
#: the default video model (`genloom train video` writes it)
VIDEO_MODEL_DIR = MODELS_DIR / "digits-video"
#: the `builder` of its marker, which tells the loader to build a `DigitsVideoPipeline`
VIDEO_BUILDER = "genloom-digits-video"
