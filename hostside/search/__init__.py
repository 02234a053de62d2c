"""The hardware-aware search engine: ask -> cost -> filter -> train -> export -> measure -> tell.

Public API (the CLI is a shell over these; a notebook calls them the same way)::

    from hostside.search.config import SearchConfig
    from hostside.search.run import start_run, resume_run

    report = start_run(SearchConfig(budget=40, budgets={"latency_ms": 0.5}), run_dir=None)
    report = resume_run("runs/20260101-120000")     # after a kill, even SIGKILL

Modules: ``config`` (settings, TOML, validation), ``engine`` (the journaled search loop),
``strategies`` (random, NSGA-II), ``pareto`` (objectives, budgets, pymoo sorting and
hypervolume), ``filtering`` (calibration + pre-training filter), ``executors`` (process
pool or Dask), ``final`` (filter spot checks, re-training of the front), ``run`` (a whole run).
The journal is ``hostside.journal``, the report ``hostside.report``.
"""
