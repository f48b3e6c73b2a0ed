"""Training runs: the trainer, one run end to end, run folders, sweeps and their executors.

- ``config`` (no torch): ``TrainConfig`` (every setting of a run), ``SweepConfig``,
  ``ExecutorConfig``; the modules that run them re-export them.
- ``trainer``: ``Trainer`` (the loop).
- ``run``: ``prepare`` (model + encoded splits), ``train`` (one run into its folder).
- ``folders``: the run-folder rules (key, completeness, integrity) and ``load_run``.
- ``resume``: the training state a run keeps after each dev evaluation; a killed run resumes from it.
- ``predict``: ``Predictor``, labels new text with a trained run.
- ``sweep`` / ``executors``: a grid of runs, locally or on Ray.
- ``profiling``: peak tensor memory of training steps (benchmarks).
"""
