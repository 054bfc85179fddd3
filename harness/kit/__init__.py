"""What plugin authors import besides :mod:`harness.api`: small helpers with no knowledge of suites
or runs. ``checks`` (validators for ``check(options)``), ``cli_options`` (click options shared with the
core's commands), ``threads`` and ``device``, ``atomic`` (write-then-rename), ``measures`` (clean
accuracy, perturbation norms), ``gradients`` (input-gradient statistics, the un-masking temperature),
``layers`` and ``optim`` (for learners), ``integrity`` (autograd against finite differences), ``datafiles``
(hash-pinned dataset files), ``modelcheck``
(checks on models and images from outside the harness), ``paths`` (the harness's own cache root)."""
