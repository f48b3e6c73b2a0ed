"""Layer numbering, written down once and used everywhere (no torch here: plotting uses it).

- Hidden state 0 is the embedding output; hidden state k is the output of transformer
  layer k, exactly as Hugging Face's ``output_hidden_states`` (for decoders the last one,
  k = L, is after the final norm, as HF reports it).
- Prompt layer PL = k (1-based, the paper's) means the prompt joins the *input* of layer
  k, i.e. it is concatenated in front of hidden state k-1 (:func:`start_state`). PL = 1 is
  classic prompt tuning. The authors' code flag ``add_prompt_layer=12`` is PL = 13.
- The "middle" prompt layer of an L-layer model is :func:`middle_prompt_layer`, L//2+1:
  the prompt joins after half the layers (the paper's "most intermediate layer" of
  RoBERTa-large is its 13th of 24, the authors' ``add_prompt_layer=12``). The paper's
  Figure 2 uses PL 1, the middle and the last (:func:`parse_prompt_layers` ``"default"``).
  Every command, figure, adapter placement and benchmark takes the middle from here.
"""

from __future__ import annotations


def start_state(prompt_layer: int) -> int:
    """The hidden state a prompt at ``prompt_layer`` joins (PL-1): layers PL..L run on it."""
    if prompt_layer < 1:
        raise ValueError(f"prompt_layer={prompt_layer}: prompt layers are 1-based (1 = prompt tuning)")
    return prompt_layer - 1


def middle_prompt_layer(num_hidden_layers: int) -> int:
    """The middle prompt layer of an L-layer model: L//2+1 (4 of 6, 13 of 24, 16 of 30).

    The prompt joins hidden state L//2, so half the layers (rounded down) run below it and
    the other half above: the paper's PL 13 of RoBERTa-large's 24 (``add_prompt_layer=12``)."""
    L = int(num_hidden_layers)
    if L < 1:
        raise ValueError(f"num_hidden_layers={num_hidden_layers}: a model has at least one layer")
    return min(L, L // 2 + 1)


def parse_prompt_layers(spec: str, num_hidden_layers: int) -> list[int]:
    """``"default"`` (1, the middle and the last), ``"all"`` or a comma list such as ``"1,4,6"``."""
    L = int(num_hidden_layers)
    spec = str(spec).strip()
    if spec == "default":
        return sorted({1, middle_prompt_layer(L), L})
    if spec == "all":
        return list(range(1, L + 1))
    try:
        given = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--prompt-layers {spec!r}: give 'default', 'all' or numbers like '1,4,6'") from None
    layers = sorted(check_unique("--prompt-layers", given))
    bad = [k for k in layers if not 1 <= k <= L]
    if bad or not layers:
        raise ValueError(f"--prompt-layers {spec!r}: prompt layers must be in 1..{L} for a model with "
                         f"num_hidden_layers={L} (got {bad or 'none'})")
    return layers


def check_unique(flag: str, values, what: str = "value") -> tuple:
    """``values`` as a tuple, refused (one line naming the flag and the repeats) when any
    value comes twice: each one names a condition, a run folder or a table row, so a
    repeat would make two conditions share one name (and one stored file)."""
    values = tuple(values)
    seen, repeats = set(), []
    for v in values:
        if v in seen and v not in repeats:
            repeats.append(v)
        seen.add(v)
    if repeats:
        given = ",".join(map(str, values))
        once = ",".join(map(str, dict.fromkeys(values)))
        field = flag.lstrip("-").replace("-", "_")  # the config field behind the flag: Python callers know it so
        raise ValueError(f"{field}={given} ({flag}): {', '.join(map(str, repeats))} given more than once; each {what} "
                         f"names one condition and its stored results, so give each once ({flag} {once})")
    return values


def select_prompt_layers(spec: str | None, present) -> list[int]:
    """The prompt layers a figure draws, out of those its table holds (``present``): ``None``,
    ``""`` or ``"all"``: every one; ``"default"``: the lowest, the one nearest the middle
    (:func:`middle_prompt_layer` of the highest) and the highest; or a comma list such as
    ``"1,6"`` (the plotting functions say which of them the table lacks)."""
    have = sorted({int(k) for k in present})
    spec = "" if spec is None else str(spec).strip()
    if spec in ("", "all"):
        return have
    if spec == "default":
        if not have:
            return []
        middle = min(have, key=lambda k: (abs(k - middle_prompt_layer(have[-1])), k))
        return sorted({have[0], middle, have[-1]})
    try:
        return sorted({int(x) for x in spec.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--prompt-layers {spec!r}: give 'default', 'all' or numbers like '1,4,6'") from None
