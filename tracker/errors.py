"""The project's exceptions: one hierarchy, each message naming the bad value and what to do.

TrackerError
├── StackError        the embedded local stack could not be prepared, started or stopped
├── DeliveryError     Kafka did not acknowledge a write; the caller should retry later
│   ├── BrokerUnavailableError   no connection to the cluster (yet)
│   └── DeliveryTimeoutError     no acknowledgement within the produce timeout
├── BatchError        a request body the collector cannot take as a batch (HTTP 4xx)
│   ├── MalformedBatchError      not valid JSON (HTTP 400)
│   ├── InvalidBatchError        valid JSON but not shaped like a batch (HTTP 422)
│   ├── BatchTooLargeError       over the body-size or event-count limit
│   ├── UnsupportedMediaTypeError  a Content-Type the collector does not read
│   ├── BodyReadTimeoutError     the client sent its body too slowly
│   ├── UnknownSiteError         the batch's site is not in the site registry (HTTP 403)
│   ├── OriginNotAllowedError    the Origin is not one of the site's (HTTP 403)
│   ├── UnauthorizedSenderError  missing or wrong write key (HTTP 401)
│   └── ConsentRequiredError     DNT/GPC without recorded consent (HTTP 403)
├── SitesConfigError  the site registry file cannot be used (also a ValueError)
└── CatalogueError    an offer catalogue that cannot be used (also a ValueError)
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of every error the project raises on purpose."""


class StackError(TrackerError):
    """A local-stack step failed (Java or Maven missing, port in use, broker did not start...)."""


class DeliveryError(TrackerError):
    """Kafka did not acknowledge a write. Nothing is known to be lost: the sender keeps
    the data and retries (the collector answers 503 with Retry-After)."""


class BrokerUnavailableError(DeliveryError):
    """The producer has no connection to the Kafka cluster (it may still be starting)."""


class DeliveryTimeoutError(DeliveryError):
    """Kafka did not acknowledge every write within the produce timeout."""


class BatchError(TrackerError):
    """A request body the collector refuses as a whole; ``errors`` lists field-level details."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class MalformedBatchError(BatchError):
    """The body is not valid JSON (or not UTF-8)."""


class InvalidBatchError(BatchError):
    """The body is JSON but not an object with a non-empty ``events`` list and known fields."""


class BatchTooLargeError(BatchError):
    """The body is over ``max_body_bytes`` or holds more than ``max_batch_events`` events."""


class UnsupportedMediaTypeError(BatchError):
    """The Content-Type is neither JSON nor ``text/plain`` (what ``sendBeacon`` sends)."""


class BodyReadTimeoutError(BatchError):
    """The client did not send its whole body within the read timeout."""


class UnknownSiteError(BatchError):
    """The batch's ``site_id`` is not registered with this collector."""


class OriginNotAllowedError(BatchError):
    """The request's ``Origin`` is not one of the site's allowed origins."""


class UnauthorizedSenderError(BatchError):
    """A sender without ``Origin`` did not present the site's write key (or presented a wrong one)."""


class ConsentRequiredError(BatchError):
    """The browser sent ``DNT: 1`` or ``Sec-GPC: 1`` and the batch carries no recorded consent."""


class SitesConfigError(TrackerError, ValueError):
    """A site registry file that cannot be read or fails validation; the message names the entry."""


class CatalogueError(TrackerError, ValueError):
    """An offer catalogue that cannot be read or fails validation; the message names the offer and field."""
