"""The study engine: what runs any study of trained late prompts, without knowing which.

- ``base``: the declared :class:`~lpt_probe.analysis.engine.base.Study` (the model, the
  prompts' keys and run folders, train-or-reuse) and the phase kinds a study yields
  (``TrainPrompts``, ``StudyCalls``, ``Pieces``, ``StreamedPieces``); content-keyed pieces
  (``seal_piece``, ``piece_done``). Start here.
- ``conditions``: what every study shares: ``Condition`` (a model a study measures),
  ``run_folder``, ``StudyOutput`` (the resumable output folder).
- ``executors``: ``study_executor``: any study's phases in this process or as Ray tasks.
- ``pieces``: one probe piece (``PieceJob``, ``fit_piece``) and many on every core.
- ``representations`` and ``rep_files``: per-layer vectors and sequences of every hidden
  state (one shared frozen pass) and the files they stream into.

The analyses (``lpt_probe.analysis.{mi,influence,section4,projection}``) sit above this
package; nothing here imports them.
"""
