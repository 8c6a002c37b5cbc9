"""The live terminal view of ``tracker up``: the product's figures, from its own ``/metrics``.

``scrape`` reads the endpoints, ``figures`` turns two readings into rates and
quantiles (pure), ``view`` draws them, ``monitor`` runs the three in a thread.
"""
