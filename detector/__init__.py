"""R-CNN detection on Inception: datasets and file formats, region sampling and warping, the
region classifier and its ensemble, training and inference loops, and the console scripts
(``detector.cli``)."""

__all__ = ["Detector", "Detections", "default_model_path"]


def __getattr__(name):  # lazy: ``import detector.datasets`` need not load the network code
    if name in ("Detector", "Detections"):
        from . import inference
        return getattr(inference, name)
    if name == "default_model_path":
        from .assets import default_model_path
        return default_model_path
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
