"""fewmm: few-shot and transfer learning on multimodal data (image, audio, text).

The data flows one way::

    fewmm.data  ->  fewmm.encoders (+ fewmm.cache)  ->  fewmm.episodes
        ->  fewmm.methods  ->  fewmm.metrics  ->  fewmm.bench (results/)

Training (fusion heads on frozen features, backbones from scratch, fewmm.meta heads) runs
through one engine::

    fewmm.episodes  ->  fewmm.engine.tasks (TaskStream: (seed, step) -> tasks)
        ->  fewmm.engine.learner (HeadLearner, TensorLearner)
        ->  fewmm.engine.trainers (protonet | maml, fomaml, anil, metasgd via fewmm.meta.MAML)
        ->  fewmm.engine.fit (one loop; fewmm.engine.checkpoint)  ->  fewmm.heads / fewmm.backbones
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Adapter", "AdapterError"]


def __getattr__(name):  # fewmm.Adapter without importing torch at `import fewmm`
    if name in ("Adapter", "AdapterError"):
        from . import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module 'fewmm' has no attribute {name!r}")
