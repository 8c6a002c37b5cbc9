"""The learning report (``tracker report``): CTR curves, CTR by group and lift, as one HTML page.

:mod:`~tracker.report.figures` computes what to show (pure), :mod:`~tracker.report.svg` draws
charts (pure), :mod:`~tracker.report.html` lays out the page (pure), and
:mod:`~tracker.report.sources` reads a simulator run, a JSON-lines log or the rewards topic.
"""
