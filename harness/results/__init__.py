"""What a run leaves behind and how it is read: ``table`` (the :class:`~harness.results.table.Row`
schema, the CSV and its summaries), ``rundir`` (the run directory's layout and lock), ``diagnostics``
(the masking checks and worst-case rows), ``stats`` (intervals and paired tests), ``regrade``
(``python -m harness.results.regrade``: the checks of finished runs, again)."""
