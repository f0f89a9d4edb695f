"""fewmm: few-shot and transfer learning on multimodal data (image, audio, text).

The data flows one way::

    fewmm.data  ->  fewmm.encoders (+ fewmm.cache)  ->  fewmm.episodes
        ->  fewmm.methods  ->  fewmm.metrics  ->  fewmm.bench (results/)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Adapter", "AdapterError"]


def __getattr__(name):  # fewmm.Adapter without importing torch at `import fewmm`
    if name in ("Adapter", "AdapterError"):
        from . import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module 'fewmm' has no attribute {name!r}")
