"""The hardware-aware search engine: ask -> cost -> filter -> train -> export -> measure -> tell.

Public API (the CLI is a shell over these; a notebook calls them the same way)::

    from hostside.search.config import SearchConfig
    from hostside.search.run import start_run, resume_run

    report = start_run(SearchConfig(budget=40, budgets={"latency_ms": 0.5}), run_dir=None)
    report = resume_run("runs/20260101-120000")     # after a kill, even SIGKILL

Modules: ``config`` (settings, TOML, validation), ``candidate`` (the frozen ``Candidate``
records strategies see and the ``Proposal`` they return), ``strategies`` (registry; one module
per strategy: random, NSGA-II, EA4CNN, ...), ``objectives`` (objective and budget registries),
``options`` (options dataclasses from config tables), ``engine`` (the journaled primitives:
ask, train, measure, tell), ``scheduler`` (generational or steady-state), ``tasks`` (the
plain-data training task), ``executors`` (process pool or Dask), ``pareto`` (rows to objective
matrices; the arithmetic is ``hostside.metrics``), ``filtering`` (calibration + pre-training
filter), ``final`` (filter spot checks, re-training of the front), ``run`` (a whole run). The
journal is ``hostside.journal``, weights ``hostside.arch.weights``, the report ``hostside.search.report``.
"""
