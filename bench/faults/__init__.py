"""Fault experiments (issue 12): the sipline call path under load on loopback, its
processes killed with SIGKILL (or hung with SIGSTOP) and started again, and what
was lost, doubled or overrun counted from the database, the peers' logs and Redis.

``bench.faults.lab`` starts and kills the processes, ``bench.faults.caller``
drives the sipp caller, ``bench.faults.callpath`` builds the call path and runs
the load, ``bench.faults.counting`` counts; the experiments are in
``bench.faults.experiments`` (ACR nodes, the CDR spool), ``bench.faults.shared``
(Redis) and ``bench.faults.registrar``. ``tests/faults`` asserts their counts;
``python -m bench faults`` (``bench.faults.cli``) runs them at 100 calls/s and
prints the table.
"""
