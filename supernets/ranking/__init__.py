"""Ranking consistency of a supernet: ``run`` (standalone training and ``run_ranking``),
``stats`` (intervals, proxies, settings checks), ``zero_cost`` (SynFlow, a zero-cost proxy:
an untrained network's score), ``report`` (``report.json``) and
``ground_truth`` (the cached standalone ground truth used by the benchmarks). Plotting is not
here: ``archlab.rank_plot`` draws the report.
"""
