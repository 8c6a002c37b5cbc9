"""A small demo shop that embeds the snippet exactly as a site owner would (``tracker up``)."""
