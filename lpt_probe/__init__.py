"""lpt_probe: where in a frozen transformer should a soft prompt go, and why.

Start here:
- ``lpt_probe.tasks`` / ``lpt_probe.data``: the task registry and its data sources.
- ``lpt_probe.models`` / ``lpt_probe.families`` / ``lpt_probe.backbone``: loading a model,
  the model-family table and the "run layers k..L from hidden states" primitive.
- ``lpt_probe.late_prompt`` and ``lpt_probe.train``: the late-prompt training core.
- ``lpt_probe.probing`` and ``lpt_probe.mi``: per-layer probes estimating I(h;y).
- ``lpt_probe.plotting`` and ``lpt_probe.figures``: paper figures from results on disk.

Layer numbering, used everywhere: hidden state 0 is the embedding output, hidden state k
is the output of transformer layer k (as Hugging Face ``hidden_states``). Prompt layer
PL=k (1-based, the paper's) means the prompt joins the input of layer k, i.e. it is
concatenated to hidden state k-1; PL=1 is classic prompt tuning.
"""

__version__ = "0.1.0"
