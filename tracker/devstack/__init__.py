"""The embedded local stack: real Kafka (KRaft) and Redis as local processes on loopback.

Used by ``tracker up`` and by the test suite's session fixtures, so that tests
run against the same broker and Redis a developer runs the product on.
"""

from tracker.devstack.stack import LocalStack

__all__ = ["LocalStack"]
