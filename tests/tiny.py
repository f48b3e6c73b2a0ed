"""Tiny random models of the five families, built from configs (no downloads), and a toy custom task."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as T

V = 120  # vocab size


def _common(init=0.02, **kw):
    return dict(initializer_range=init, vocab_size=V, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=64, **kw)


def tiny_model(family: str, head: bool = True, dropout: float = 0.1, init: float = 0.02):
    torch.manual_seed(0)
    if family == "bert":
        cfg = T.BertConfig(**_common(init, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))
        cls = T.BertForMaskedLM if head else T.BertModel
    elif family == "roberta":
        cfg = T.RobertaConfig(**_common(pad_token_id=1, hidden_dropout_prob=dropout,
                                        attention_probs_dropout_prob=dropout))
        cls = T.RobertaForMaskedLM if head else T.RobertaModel
    elif family == "deberta-v2":
        cfg = T.DebertaV2Config(**_common(relative_attention=True, position_buckets=16,
                                          max_relative_positions=32, pos_att_type=["p2c", "c2p"],
                                          position_biased_input=False, norm_rel_ebd="layer_norm",
                                          conv_kernel_size=3, hidden_dropout_prob=dropout,
                                          attention_probs_dropout_prob=dropout))
        cls = T.DebertaV2ForMaskedLM if head else T.DebertaV2Model
    elif family == "gpt2":
        cfg = T.GPT2Config(vocab_size=V, n_embd=32, n_layer=4, n_head=4, bos_token_id=0, eos_token_id=0,
                           resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
        cls = T.GPT2LMHeadModel if head else T.GPT2Model
    elif family == "llama":
        cfg = T.LlamaConfig(**_common(num_key_value_heads=2, bos_token_id=0, eos_token_id=0, pad_token_id=0))
        cls = T.LlamaForCausalLM if head else T.LlamaModel
    else:
        raise ValueError(family)
    return cls(cfg).eval()


FAMILIES = ["bert", "roberta", "deberta-v2", "gpt2", "llama"]


def random_batch(batch=3, seq=9, pad_last=4, seed=0):
    """Right-padded ids and mask; the last row has ``pad_last`` pads."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if pad_last:
        mask[-1, seq - pad_last:] = 0
        ids[-1, seq - pad_last:] = 1
    return ids, mask


def toy_task(folder: Path, n_train: int = 30, n_test: int | None = 10, test_rows: list[str] | None = None,
             flip: bool = False, labels=("neg", "pos")) -> Path:
    """A two-label sentiment CSV task with its YAML (the README's custom-task shape):
    ``n_train`` "great/awful movie number i" rows per label (``flip``: train.csv's labels
    swapped), a test split of ``n_test`` "film" rows per label, or ``test_rows``, or (``n_test``
    None) the training rows again; ``labels`` as the YAML lists them. Returns the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    words = (("great", "pos"), ("awful", "neg"))
    swap = {"pos": "neg", "neg": "pos"}
    train = [f"{w} movie number {i},{swap[lab] if flip else lab}" for i in range(n_train) for w, lab in words]
    if test_rows is None:
        test_rows = train if n_test is None else [f"{w} film {i},{lab}" for i in range(n_test) for w, lab in words]
    (folder / "train.csv").write_text("\n".join(["text,label", *train]) + "\n")
    (folder / "test.csv").write_text("\n".join(["text,label", *test_rows]) + "\n")
    (folder / "task.yaml").write_text(
        "name: toy\ntrain: train.csv\ntest: test.csv\ntext_columns: [text]\nlabel_column: label\n"
        f"labels: [{', '.join(labels)}]\nmlm_template: '{{text_a}} It was {{mask}} .'\n"
        "mlm_label_words: [bad, good]\nclm_template: '{text_a} It was'\nclm_label_words: [bad, good]\n")
    return folder / "task.yaml"
