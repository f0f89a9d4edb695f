"""``openclip-image`` / ``openclip-text``: CLIP towers through ``open_clip``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from . import register
from ._util import hub_offline, l2_normalize, to_pil_rgb, weights_sha256
from .base import Encoder

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
_PREPROCESS_KW = {  # pretrained-tag config key -> create_model_and_transforms argument
    "mean": "image_mean",
    "std": "image_std",
    "interpolation": "image_interpolation",
    "resize_mode": "image_resize_mode",
}
_HUB_FILES = [
    "open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin", "*.txt",
    "tokenizer*", "special_tokens_map.json", "vocab*", "merges*",
]


def _fail(encoder: str, what: str, model_name: str) -> EncoderError:
    return EncoderError(
        f"{encoder}: {what}. Offline, download the weights file on a machine with internet and pass "
        f"it: fewmm.encoders.create({encoder!r}, model_name={model_name!r}, pretrained='/path/to/weights.safetensors') "
        "(or model_name='local-dir:/path/to/folder' for a folder with open_clip_config.json)"
    )


def resolve_openclip(
    encoder: str,
    model_name: str,
    pretrained: str | os.PathLike | None,
    offline: bool | None = None,
    cache_dir: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Resolve an open_clip model + weights to local files without contacting the network when offline.

    Parameters
    ----------
    encoder : str
        Registry name, for messages.
    model_name : str
        open_clip model name (``"ViT-B-32"``), ``"hf-hub:org/repo"`` or ``"local-dir:/folder"``.
    pretrained : str or path-like or None
        A pretrained tag of ``model_name`` (``open_clip.list_pretrained_tags_by_model``) or a weights
        file (.pt/.bin/.safetensors); ignored with a schema.
    offline : bool, optional
        Default: ``HF_HUB_OFFLINE`` is set.
    cache_dir : str, optional
        open_clip / hub cache folder.

    Returns
    -------
    (create_kwargs, weights_id) : (dict, str)
        Keyword arguments for ``open_clip.create_model_and_transforms`` that name only local files,
        and the weights id: sha256 of the weights file, or ``"hub:<id>@<commit>"``.

    Raises
    ------
    EncoderError
        Unknown model or tag, or weights neither on disk nor downloadable (fast when offline).
    """
    import open_clip
    from open_clip import pretrained as ocp

    is_offline = hub_offline(offline)
    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:"):]).expanduser()
        from open_clip.factory import _find_checkpoint_in_dir

        ckpt = _find_checkpoint_in_dir(folder) if folder.is_dir() else None
        if ckpt is None or not (folder / "open_clip_config.json").is_file():
            raise _fail(encoder, f"folder {folder} needs open_clip_config.json and a weights file", model_name)
        return {"model_name": f"local-dir:{folder}"}, weights_sha256(ckpt)
    if model_name.startswith("hf-hub:"):
        repo_id = model_name[len("hf-hub:"):]
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(
                repo_id, cache_dir=cache_dir, local_files_only=is_offline, allow_patterns=_HUB_FILES
            ))
        except Exception as e:
            why = "is not in the hub cache and HF_HUB_OFFLINE is set" if is_offline else "could not be downloaded"
            raise _fail(encoder, f"hub model {repo_id!r} {why} ({type(e).__name__})", model_name) from None
        return {"model_name": f"local-dir:{folder}"}, f"hub:{repo_id}@{folder.name}"

    if model_name.replace("/", "-") not in open_clip.list_models():
        raise EncoderError(f"{encoder}: unknown open_clip model {model_name!r}; see open_clip.list_models()")
    if pretrained is None:
        raise EncoderError(f"{encoder}: pass pretrained=<tag or weights file>; tags of {model_name}: "
                           f"{open_clip.list_pretrained_tags_by_model(model_name)}")
    p = Path(str(pretrained)).expanduser()
    if p.is_file():
        return {"model_name": model_name, "pretrained": str(p)}, weights_sha256(p)
    cfg = ocp.get_pretrained_cfg(model_name, str(pretrained))
    if not cfg:
        raise EncoderError(
            f"{encoder}: pretrained={str(pretrained)!r} is neither a file nor a tag of {model_name}; "
            f"tags: {open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    path = None
    if cfg.get("hf_hub"):
        model_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [*ocp._get_safe_alternatives(filename), filename]  # safetensors first, as open_clip does
        from huggingface_hub import hf_hub_download

        err: Exception | None = None
        for name in names:
            try:
                path = hf_hub_download(model_id, name, cache_dir=cache_dir, local_files_only=is_offline)
                break
            except Exception as e:  # not cached / no such file / no network
                err = e
        if path is None:
            why = "not in the hub cache and HF_HUB_OFFLINE is set" if is_offline else "could not be downloaded"
            what = f"weights of {model_name}/{pretrained} ({model_id}) {why} ({type(err).__name__})"
            raise _fail(encoder, what, model_name)
    elif cfg.get("url"):
        target = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if target.is_file():
            path = str(target)
        elif is_offline:
            what = f"weights of {model_name}/{pretrained} are not in {target.parent} and HF_HUB_OFFLINE is set"
            raise _fail(encoder, what, model_name)
        else:
            try:
                path = ocp.download_pretrained_from_url(cfg["url"], cache_dir=cache_dir)
            except Exception as e:
                raise _fail(encoder, f"cannot download {cfg['url']} ({type(e).__name__}: {e})", model_name) from None
    if path is None:
        raise _fail(encoder, f"no download source for {model_name}/{pretrained}", model_name)
    kwargs: dict[str, Any] = {"model_name": model_name, "pretrained": str(path)}
    if cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    for key, kw in _PREPROCESS_KW.items():  # what open_clip would take from the tag's config
        if cfg.get(key) is not None:
            kwargs[kw] = cfg[key]
    return kwargs, weights_sha256(path)


class _OpenCLIPBase(Encoder):
    def __init__(
        self,
        device: str | torch.device | None = "cpu",
        batch_size: int = 32,
        model_name: str = DEFAULT_MODEL,
        pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED,
        offline: bool | None = None,
        cache_dir: str | None = None,
        normalize: bool = True,
    ):
        super().__init__(device=device, batch_size=batch_size)
        try:
            import open_clip
        except ImportError as e:
            raise EncoderError(f"{self.name} needs open_clip_torch==3.3.0 ({e})") from None
        kwargs, self.weights_id = resolve_openclip(self.name, str(model_name), pretrained, offline, cache_dir)
        self.model_name = str(model_name)
        self.normalize = bool(normalize)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                **kwargs, device=self.device, cache_dir=cache_dir
            )
            self.tokenizer = open_clip.get_tokenizer(kwargs["model_name"], cache_dir=cache_dir)
        except Exception as e:
            raise EncoderError(
                f"{self.name}: cannot build open_clip {model_name} from {kwargs}: {type(e).__name__}: {e}"
            ) from e
        self.model = model.eval()
        self.preprocess = preprocess
        self.dim = int(_embed_dim(self.model))

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.float()
        return (l2_normalize(emb) if self.normalize else emb).cpu()


def _embed_dim(model: torch.nn.Module) -> int:
    if getattr(model, "text_projection", None) is not None:
        tp = model.text_projection
        return tp.shape[1] if isinstance(tp, torch.Tensor) else tp.out_features
    visual = model.visual
    return getattr(visual, "output_dim", None) or visual.proj.shape[1]


@register("openclip-image", help="open_clip image tower (model_name + pretrained tag or weights file)")
class OpenCLIPImageEncoder(_OpenCLIPBase):
    """CLIP / OpenCLIP image embeddings (Radford et al. 2021; Cherti et al. 2023, "Reproducible
    scaling laws for contrastive language-image learning") through ``open_clip``.

    Preprocessing is the model's own validation transform (``create_model_and_transforms``): RGB
    (grayscale replicated), resize the shorter side to the model's image size (bicubic by default),
    centre-crop, normalise with the mean/std of the pretrained tag.

    Parameters
    ----------
    device : str, default "cpu"
    batch_size : int, default 32
    model_name : str, default "ViT-B-32"
        An ``open_clip.list_models()`` name, ``"hf-hub:org/repo"`` or ``"local-dir:/folder"``.
    pretrained : str or path-like, default "laion2b_s34b_b79k"
        A pretrained tag of ``model_name`` or a local weights file (.pt/.bin/.safetensors).
    offline : bool, optional
        Never touch the network (default: when ``HF_HUB_OFFLINE`` is set).
    cache_dir : str, optional
    normalize : bool, default True
        L2-normalise the embeddings.

    Notes
    -----
    Output: float32 of shape (n, embed_dim) (512 for ViT-B-32). ``weights_id``: sha256 of the
    weights file (also for tags, once resolved to the cached file) or ``"hub:<id>@<commit>"``.

    Raises
    ------
    EncoderError
        Unknown model/tag, or weights unavailable (fails fast offline, naming how to pass a file).
    """

    name = "openclip-image"
    modality = "image"
    dim = 512

    def __init__(self, device="cpu", batch_size: int = 32, model_name: str = DEFAULT_MODEL,
                 pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED, offline: bool | None = None,
                 cache_dir: str | None = None, normalize: bool = True):
        super().__init__(device, batch_size, model_name, pretrained, offline, cache_dir, normalize)
        self.preprocess_id = f"open_clip_val_transform({_describe_transform(self.preprocess)}),l2={self.normalize}"

    def _prepare(self, payload: Any) -> np.ndarray:
        return self.preprocess(to_pil_rgb(payload)).numpy().astype(np.float32, copy=False)

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        return self._finish(self.model.encode_image(x))


@register("openclip-text", help="open_clip text tower (model_name + pretrained tag or weights file)")
class OpenCLIPTextEncoder(_OpenCLIPBase):
    """CLIP / OpenCLIP text embeddings through ``open_clip`` (see :class:`OpenCLIPImageEncoder`).

    Texts are tokenised with the model's tokenizer (``open_clip.get_tokenizer``), padded or
    truncated to its context length (77 for ViT-B-32), one text at a time.

    Parameters
    ----------
    Same as :class:`OpenCLIPImageEncoder`; ``batch_size`` defaults to 64.

    Notes
    -----
    Input payloads are ``str``. Output: float32 of shape (n, embed_dim).

    Raises
    ------
    EncoderError
        As :class:`OpenCLIPImageEncoder`.
    """

    name = "openclip-text"
    modality = "text"
    dim = 512

    def __init__(self, device="cpu", batch_size: int = 64, model_name: str = DEFAULT_MODEL,
                 pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED, offline: bool | None = None,
                 cache_dir: str | None = None, normalize: bool = True):
        super().__init__(device, batch_size, model_name, pretrained, offline, cache_dir, normalize)
        ctx = getattr(self.tokenizer, "context_length", None)
        self.preprocess_id = f"open_clip_tokenizer({type(self.tokenizer).__name__},context={ctx}),l2={self.normalize}"

    def _prepare(self, payload: Any) -> np.ndarray:
        from ..data.io import read_text

        return self.tokenizer([read_text(payload)])[0].numpy()

    def _forward(self, batch: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        return self._finish(self.model.encode_text(x))


def _describe_transform(t: Any) -> str:
    """A stable text of a torchvision Compose (function reprs hold memory addresses: use names)."""
    parts = getattr(t, "transforms", [t])
    out = []
    for p in parts:
        out.append(getattr(p, "__name__", None) or " ".join(repr(p).split()))
    return ";".join(out)
