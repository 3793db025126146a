"""``polyglot-search eval``: how good search is on a user's own queries and judgements, per model and per query
language, with the figures a multilingual user needs (how often the answer is found, and how much the ranking
favours the query's own language). ``data`` reads the judgements, ``runs`` ranks documents with a model folder or
a running server, ``metrics`` scores one ranking, ``report`` compares models."""
