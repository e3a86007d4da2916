"""Fault experiments (issue 12): the sipline call path under load on loopback, its
processes killed with SIGKILL and started again, and what was lost, doubled or
overrun counted from the database, the peers' logs and Redis.

``bench.faults.experiments`` runs them (``tests/faults`` asserts their counts),
``bench.faults.lab`` starts and kills the processes, ``bench.faults.caller``
drives sipp, ``bench.faults.counting`` counts; ``python -m bench faults``
(``bench.faults.cli``) runs them at 100 calls/s and prints the table.
"""
