"""``biomedvr benchmark``: methods x shots x seeds on one or more datasets, with baselines and ablations.

Modules: ``protocol`` (datasets, jobs, the suite file), ``datasets`` (pools, test sets and
per-process pixel/feature caches), ``methods`` (one small runner per method), ``coop``
(prompt learning on open_clip and Hugging Face text towers), ``store`` (one JSON file per
finished job: resume), ``report`` (aggregation, CSV, Markdown, PNG), ``distributed``
(torchrun sharding and merging) and ``runner`` (the sweep). Nothing here imports typer or
rich; importing the package itself is cheap (no torch).
"""
