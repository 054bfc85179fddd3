"""Running a suite: ``runner`` (cells -> jobs -> executor -> rows, the run directory's one writer),
``jobs`` (each cell resolved once: records, hash, the row's known fields), ``executor`` (which
executor runs, with which options), ``worker`` (what an executor runs jobs with), ``training``
(trained models: from ``OUT/models``, the cache or the learner stages), ``cache`` and ``modelstore``
(the shared model cache and the safetensors files), ``cell`` (one job on a trained model -> its
row), ``evaluator`` (batched clean and attacked predictions), ``progress`` (the display)."""
