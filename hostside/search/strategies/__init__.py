"""Search strategies, one module each, looked up by name (``make_strategy``).

Built in: ``random`` and ``nsga2``; ``ea4cnn`` and ``rs_cnn`` register themselves from their
own modules. The contract (ask/tell over frozen ``Candidate`` records) is ``base``.
"""

from hostside.search.strategies.base import (AskContext, NoOptions, Strategy, StrategySettings, make_strategy,
                                             parse_options, register_strategy, strategy_class, strategy_names)

__all__ = ["AskContext", "NoOptions", "Strategy", "StrategySettings", "make_strategy", "parse_options",
           "register_strategy", "strategy_class", "strategy_names"]
