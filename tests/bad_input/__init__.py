"""The bad-input suite: tables of ``(id, call, expected error, argument named in the message)``
over every public constructor and function (``cases_*.py``, one shared format in
``table.py``), run by ``test_bad_input.py``; the worst cases are also named tests in
``test_worst_cases.py``. ``python -m tests.bad_input.audit`` classifies every case as clear,
unclear, silent or hang (a per-case timeout) and prints the counts per area."""
