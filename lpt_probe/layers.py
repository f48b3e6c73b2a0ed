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
- Which layers hold adapters (``--adapter-layers``: ``all``, ``upper-half``, ``K-``, ``K-J``,
  comma lists): :func:`adapter_layers`, :func:`pin_layers`; ``lpt_probe.model.adapters``
  attaches them and re-exports these.
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


# -- which layers hold adapters (``--adapter-layers``; lpt_probe.model.adapters attaches them) --

# named layer sets -> (first layer, last layer) for a model of depth L
NAMED_LAYERS = {
    "all": lambda L: (1, L),
    "upper-half": lambda L: (middle_prompt_layer(L), L),  # the layers from the middle prompt layer up
}
SYNTAX = "all, upper-half (L/2+1..L), K- (K..L), K-J, or a comma list such as 1,3,5-6"


def parse_layer_items(spec: str) -> list[tuple[int, int | None]]:
    """``K``, ``K-J``, ``K-`` items of a comma list -> (first, last or None = the top)."""
    items = []
    for item in str(spec).split(","):
        item = item.strip()
        try:
            if item.endswith("-"):
                items.append((int(item[:-1]), None))
            elif "-" in item:
                a, b = item.split("-")
                items.append((int(a), int(b)))
            else:
                items.append((int(item), int(item)))
        except ValueError:
            raise ValueError(f"adapter_layers={spec!r}: cannot read {item!r}; give {SYNTAX}") from None
    bad = [(a, b) for a, b in items if a < 1 or (b is not None and b < a)]
    if bad:
        raise ValueError(f"adapter_layers={spec!r}: layers are 1-based and ranges K-J need J >= K; give {SYNTAX}")
    return items


def check_layers_syntax(spec: str) -> None:
    """Fail on a spec that no model could read (the range is checked by ``adapter_layers``)."""
    if spec not in NAMED_LAYERS:
        parse_layer_items(spec)


def first_adapted_layer(spec: str) -> int:
    """The lowest adapted layer (1-based), without knowing the depth where possible."""
    if spec == "all":
        return 1
    if spec in NAMED_LAYERS:
        raise ValueError(f"adapter_layers={spec!r} depends on the model's depth: pin it first "
                         f"(LatePromptConfig.check_against(backbone), as LatePromptModel and training do) "
                         f"or give layer numbers such as 4-6")
    return min(a for a, _ in parse_layer_items(spec))


def adapter_layers(spec: str, num_hidden_layers: int) -> list[int]:
    """The adapted layers (1-based, sorted) of a model with ``num_hidden_layers`` layers."""
    L = int(num_hidden_layers)
    if spec in NAMED_LAYERS:
        a, b = NAMED_LAYERS[spec](L)
        return list(range(a, b + 1))
    layers = sorted({k for a, b in parse_layer_items(spec) for k in range(a, (L if b is None else b) + 1)})
    out = [k for k in layers if k > L]
    if out or not layers:
        raise ValueError(f"adapter_layers={spec!r}: layers must be in 1..{L} for a model with "
                         f"num_hidden_layers={L} (got {out or 'none'})")
    return layers


def pin_layers(spec: str, num_hidden_layers: int) -> str:
    """The same layers as numbers (``upper-half`` -> ``4-6`` for 6 layers; ``K-`` -> ``K-L``)."""
    layers = adapter_layers(spec, num_hidden_layers)
    runs, start, prev = [], layers[0], layers[0]
    for k in layers[1:] + [None]:
        if k != prev + 1:  # a run of consecutive layers ends at prev
            runs.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = k
        prev = k
    return ",".join(runs)
