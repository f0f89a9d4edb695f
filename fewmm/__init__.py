"""fewmm: few-shot and transfer learning on multimodal data (image, audio, text).

The data flows one way::

    fewmm.data          data sets, manifests, payload I/O
      -> fewmm.encoders frozen pretrained encoders (+ fewmm.cache: features as safetensors)
      -> fewmm.tasks    multimodal tasks: MMFeatures + base / val / novel splits, robustness settings
      -> fewmm.episodes seeded N-way K-shot episodes (fewmm.engine.tasks: the training task stream)
      -> fewmm.methods  few-shot methods on one modality's features
         fewmm.heads    fusion heads over modalities  } trained by fewmm.engine: one fit loop,
         fewmm.backbones Conv-4 from scratch          } trainers protonet / maml / fomaml / anil /
                                                        metasgd (fewmm.meta: the MAML family)
      -> fewmm.evaluate -> fewmm.metrics (CIs, paired differences)
      -> fewmm.bench    python -m fewmm.bench[.fusion|.transfer|.backbone] (results/)

Beside the flow: fewmm.adapter (``fewmm.Adapter``: encoders + a head fitted on a few items, saved,
loaded), fewmm.persist (pickle-free save / load of fitted components), fewmm.testing (the contract
every registered method, head and learner passes), fewmm.util (shared helpers: L2 normalisation,
atomic writes, sha256, label checks), fewmm.registry / fewmm.plugins (names, plugins),
fewmm.errors.

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
