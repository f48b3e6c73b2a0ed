"""Late prompts on the Hugging Face hub: ``LatePrompt.push_to_hub`` (the reading side is
``LatePrompt.from_pretrained("owner/name")``, through ``huggingface_hub.snapshot_download``).

A push writes the exported folder (``LatePrompt.save_pretrained``: config, weights, task)
plus a model card (``README.md``: the base model's hub id, the prompt layer and generator,
``library_name: lpt_probe``) into a temporary folder, creates the repository if it is
missing and uploads the folder in one commit, as peft's ``push_to_hub`` does for adapters.
No machine of this project reaches the hub, so the upload itself is untested against the
live service; the tests check the file set and the calls with a stand-in for ``HfApi``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

REPO_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def model_card(record: dict[str, Any]) -> str:
    """The README.md of a pushed late prompt, from its ``late_prompt_config.json`` record."""
    base = record.get("base_model_name_or_path") or "unknown"
    generator = record.get("generator", "none")
    lines = ["---", "library_name: lpt_probe", f"base_model: {base}", "tags:", "- late-prompt-tuning",
             "- prompt-tuning", "---", "", f"# Late prompt for {base}", "",
             f"A late prompt (Liu et al., Findings of EMNLP 2022) at prompt layer {record.get('prompt_layer')} "
             f"of `{base}`: {record.get('num_virtual_tokens')} tokens, generator `{generator}`, read out by "
             f"{'the model head' if record.get('head_kind') == 'lm' else 'a linear head'}.", "", "```python",
             "from transformers import AutoModelForCausalLM  # or AutoModelForMaskedLM / AutoModel",
             "from lpt_probe.model import attach_late_prompt", "",
             f'model = AutoModelForCausalLM.from_pretrained("{base}")',
             'attach_late_prompt(model, "<this repository>")', "```", ""]
    return "\n".join(lines)


def push_to_hub(prompt, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str | None = None, revision: str | None = None, api: Any = None) -> str:
    """Upload ``prompt`` (a ``LatePrompt``) to the hub repository ``repo_id``; returns the
    commit's URL. ``api``: an ``huggingface_hub.HfApi`` (default: one with ``token``)."""
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id):
        raise ValueError(f"repo_id={repo_id!r} is not a hub repository id; give 'name' or 'owner/name'")
    if api is None:
        from huggingface_hub import HfApi  # network client: loaded only to push

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="lpt-probe-push-") as tmp:
        folder = prompt.save_pretrained(Path(tmp) / "prompt")
        record = json.loads((folder / "late_prompt_config.json").read_text())
        (folder / "README.md").write_text(model_card(record))
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message or f"Upload late prompt (prompt layer "
                                                                  f"{record.get('prompt_layer')})")
    return str(getattr(info, "commit_url", info))
