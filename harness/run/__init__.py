"""Running a suite: ``runner`` (cells -> executor -> rows, the run directory's one writer), ``worker``
(what an executor runs cells with), ``training`` (trained models: from ``OUT/models``, the cache or the
learner stages), ``cache`` and ``modelstore`` (the shared model cache and the safetensors files),
``cell`` (one cell on a trained model -> its row), ``evaluator`` (batched clean and attacked
predictions), ``progress`` (the display)."""
