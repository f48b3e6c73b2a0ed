"""Prompts as text and as token ids: render a template, find label words, encode a split.

Start at ``encode(task, examples, tokenizer, kind)``: it renders every example with the
task's MLM or CLM template (``render``), tokenises it, and returns unpadded ``input_ids``
with the position the model predicts from (``pred_positions``) and the ``labels``;
``label_word_ids`` gives the one token id per label read off at that position.

- ``kind="mlm"``: the template holds one mask token; the prediction position is its index.
  The tokenizer's usual special tokens wrap the text ([CLS] ... [SEP], <s> ... </s>).
- ``kind="clm"``: the template ends where the label word comes next; the prediction
  position is the last token. Leading special tokens (a BOS) are kept when the tokenizer
  adds them; trailing ones (EOS, [SEP]) are not, since the label word comes next.

Label words are looked up in the form they take after a space ("It was great"): for
byte-level BPE (GPT-2, RoBERTa, Llama 3) that is the leading-space token " great", for
WordPiece (BERT) plain "great", for SentencePiece "▁great". We tokenise "a" + " word" and
take what follows the tokens of "a", which gives those forms without a per-family rule.

Truncation never cuts the template: when a rendered example exceeds ``max_length``, tokens
are removed from the end of the text fields, longest field first, so the mask (MLM) and
the template's last words (CLM) survive. ``encode`` reports, per example, how many text
tokens survived (``kept_fraction``) and raises when a ``max_length`` leaves no text at all
of an example (the model would see the template alone). ``text_mask`` marks the tokens
that come from the example's own text (not template words, not special tokens), from
the tokenizer's character offsets. Batching and padding are left to the caller.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from .sources import Example
from .tasks import Protocol, TaskSpec, get_task

KINDS = ("mlm", "clm")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")


def render(task: str | TaskSpec, example: Example, kind: str = "mlm",
           mask_token: str = "[MASK]") -> str:
    """The example's text in the task's ``kind`` template (``mask_token`` fills {mask})."""
    _check_kind(kind)
    spec = get_task(task)
    if len(example.texts) != len(spec.text_fields):
        raise ValueError(f"example {example.id} has {len(example.texts)} texts; task "
                         f"{spec.name} expects {len(spec.text_fields)} {spec.text_fields}")
    values = dict(zip(spec.text_fields, example.texts))
    if kind == "mlm":
        return spec.mlm_template.format(mask=mask_token, **values)
    return spec.clm_template.format(**values)


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _word_ids(tokenizer, word: str) -> list[int]:
    """Token ids of ``word`` as it reads after a space (see the module docstring)."""
    pre, full = _ids(tokenizer, "a"), _ids(tokenizer, "a " + word)
    if full[: len(pre)] == pre:
        return full[len(pre):]
    return _ids(tokenizer, " " + word)


def label_word_ids(task: str | TaskSpec, tokenizer, kind: str) -> list[int]:
    """One token id per label (label order); each label word must be exactly one token."""
    _check_kind(kind)
    spec = get_task(task)
    words = spec.mlm_label_words if kind == "mlm" else spec.clm_label_words
    out = []
    for word in words:
        ids = _word_ids(tokenizer, word)
        if len(ids) != 1:
            raise ValueError(
                f"{spec.name}: {kind} label word {word!r} is {len(ids)} tokens "
                f"{tokenizer.convert_ids_to_tokens(ids)} for {type(tokenizer).__name__}; each "
                f"label word must be one token: choose another word ({_fix_words_hint(spec, kind)})")
        out.append(ids[0])
    if len(set(out)) != len(out):
        same = [w for w, i in zip(words, out) if out.count(i) > 1]
        raise ValueError(f"{spec.name}: {kind} label words {same} become the same token for "
                         f"{type(tokenizer).__name__} (lower-casing?); choose distinct words")
    return out


def _fix_words_hint(spec: TaskSpec, kind: str) -> str:
    if spec.protocol is Protocol.CUSTOM:
        return f"edit {kind}_label_words in your task's YAML file"
    return f"register_task(TaskSpec(...)) with other {kind}_label_words, or write a custom task YAML"


def _affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after a text."""
    bare = _ids(tokenizer, "a")
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i: i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return [], []


def _spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """(start, end) character span of each token of ``text`` (words if no offsets)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(s) for s in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, KeyError, TypeError):
        return [m.span() for m in re.finditer(r"\S+", text)]


def _truncated(spec, ex, tokenizer, kind, mask, budget) -> tuple[tuple[str, ...], float]:
    """The texts of ``ex`` shortened (longest first) so its body fits ``budget`` tokens, and
    the fraction of its text tokens they keep."""
    spans = [_spans(tokenizer, t) for t in ex.texts]
    keep = [len(s) for s in spans]
    total = max(1, sum(keep))
    for _ in range(16):  # re-tokenising a cut text can shift a token or two; retry
        texts = tuple(t[: s[k - 1][1]] if k else "" for t, s, k in zip(ex.texts, spans, keep))
        body = _ids(tokenizer, render(spec, Example(ex.id, texts, ex.label), kind, mask))
        excess = len(body) - budget
        if excess <= 0:
            return texts, sum(keep) / total
        for _ in range(excess):
            j = int(np.argmax(keep))
            if keep[j] == 0:
                return texts, 0.0  # the template alone does not fit: nothing of the text is left
            keep[j] -= 1
    raise ValueError(f"{spec.name}: could not truncate example {ex.id} to {budget} tokens")


def _field_spans(spec: TaskSpec, kind: str, texts: Sequence[str], mask: str | None) -> tuple[str, list]:
    """The rendered string and the character span of each text field inside it."""
    import string

    template = spec.mlm_template if kind == "mlm" else spec.clm_template
    values = dict(zip(spec.text_fields, texts))
    out, spans = [], []
    pos = 0
    for literal, name, fmt, conv in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if name is None:
            continue
        value = mask if name == "mask" else values[name]
        if name != "mask":
            spans.append((pos, pos + len(value)))
        out.append(value)
        pos += len(value)
    return "".join(out), spans


def _tokenize_with_offsets(tokenizer, strings: list[str]) -> tuple[list, list]:
    """Token ids and character offsets of each string (offsets None without a fast tokenizer)."""
    if not strings:
        return [], []
    try:
        enc = tokenizer(strings, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]
    except (NotImplementedError, ValueError, KeyError, TypeError):
        return tokenizer(strings, add_special_tokens=False)["input_ids"], [None] * len(strings)


def _text_mask(offsets, spans: list, n_body: int) -> list[int] | None:
    """1 for body tokens inside a text field's characters, 0 for template tokens (None when
    the tokenizer gives no character offsets)."""
    if offsets is None or len(offsets) != n_body:
        return None
    return [int(e > s and any(s < b and a < e for a, b in spans)) for s, e in offsets]


def encode(task: str | TaskSpec, examples: Sequence[Example], tokenizer, kind: str,
           max_length: int = 256) -> dict[str, Any]:
    """Tokenise ``examples`` in the ``kind`` template, unpadded.

    Returns ``input_ids`` (list of lists), ``pred_positions`` ([n] int64: the mask index for
    mlm, the last index for clm), ``labels`` ([n] int64), ``example_ids``, ``truncated``
    ([n] bool), ``kept_fraction`` ([n] float: share of the example's text tokens that
    survived truncation), ``text_mask`` (per example a 0/1 list over its tokens: 1 where the
    token comes from the text; None when the tokenizer has no offsets) and
    ``label_word_ids`` (one per label). Raises when ``max_length`` leaves nothing of an
    example's text.
    """
    _check_kind(kind)
    spec = get_task(task)
    mask = None
    if kind == "mlm":
        mask = getattr(tokenizer, "mask_token", None)
        if mask is None:
            raise ValueError(f"kind='mlm' needs a tokenizer with a mask token; "
                             f"{type(tokenizer).__name__} has none (use kind='clm')")
    prefix, suffix = _affixes(tokenizer)
    if kind == "clm":
        suffix = []
    budget = max_length - len(prefix) - len(suffix)
    words = label_word_ids(spec, tokenizer, kind)
    rendered = [_field_spans(spec, kind, ex.texts, mask) for ex in examples]  # (string, field spans)
    bodies, offsets = _tokenize_with_offsets(tokenizer, [r for r, _ in rendered])
    ids, pos, cut, kept, masks = [], [], [], [], []
    for ex, body, offs, (_, spans) in zip(examples, bodies, offsets, rendered):
        body = list(body)
        cut.append(len(body) > budget)
        texts = ex.texts
        if cut[-1]:
            texts, share = _truncated(spec, ex, tokenizer, kind, mask, budget)
            if share <= 0:
                empty = Example(ex.id, tuple("" for _ in ex.texts), ex.label)
                fixed = len(prefix) + len(suffix) + len(_ids(tokenizer, render(spec, empty, kind, mask)))
                raise ValueError(
                    f"{spec.name}: max_length={max_length} leaves no text of example {ex.id}: the "
                    f"{kind} template and special tokens alone take {fixed} tokens; raise --max-length "
                    f"well above {fixed}")
            string_, spans = _field_spans(spec, kind, texts, mask)
            (body,), (offs,) = _tokenize_with_offsets(tokenizer, [string_])
            body = list(body)
            kept.append(share)
        else:
            kept.append(1.0)
        tm = _text_mask(offs, spans, len(body))
        masks.append(None if tm is None else [0] * len(prefix) + tm + [0] * len(suffix))
        row = prefix + body + suffix
        if kind == "mlm":
            n = row.count(tokenizer.mask_token_id)
            if n != 1:
                raise ValueError(f"{spec.name}: example {ex.id} has {n} mask tokens after "
                                 f"encoding (does its text contain {mask!r}?)")
            pos.append(row.index(tokenizer.mask_token_id))
        else:
            if not body:
                raise ValueError(f"{spec.name}: example {ex.id} encodes to no tokens")
            pos.append(len(row) - 1)
        ids.append(row)
    return {"input_ids": ids, "pred_positions": np.array(pos, dtype=np.int64),  # [n]
            "labels": np.array([ex.label for ex in examples], dtype=np.int64),  # [n]
            "example_ids": [ex.id for ex in examples], "truncated": np.array(cut, dtype=bool),
            "kept_fraction": np.array(kept, dtype=np.float64),  # [n]
            "text_mask": None if any(m is None for m in masks) else masks,
            "label_word_ids": words}
