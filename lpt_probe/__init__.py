"""lpt_probe: where in a frozen transformer should a soft prompt go, and why.

Start here (the README's "Architecture" section has one line per module):
- ``lpt_probe.model``: the family table, ``Backbone.run_layers`` (run layers k..L from a
  hidden state), generators, methods, the late-prompt model, loading.
- ``lpt_probe.data``: the task registry, data sources, verbalizer, encoded splits.
- ``lpt_probe.runs``: training runs (``prepare``, ``train``, ``load_run``), sweeps, executors.
- ``lpt_probe.probing`` and ``lpt_probe.analysis``: probes, per-layer I(h;y), influence,
  projections.
- ``lpt_probe.viz`` and ``lpt_probe.figures``: paper figures from results on disk.
- Commands: ``python -m lpt_probe.{train,mi,influence,sweep,project,figures}``.

Layer numbering, used everywhere: hidden state 0 is the embedding output, hidden state k
is the output of transformer layer k (as Hugging Face ``hidden_states``). Prompt layer
PL=k (1-based, the paper's) means the prompt joins the input of layer k, i.e. it is
concatenated to hidden state k-1; PL=1 is classic prompt tuning.
"""

__version__ = "0.1.0"
