"""Prometheus metrics of the stream worker (base units, no visitor ids in labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "tracker_worker_events_total",
    "Events read from the events topic, by type and outcome: applied, duplicate (event id seen), "
    "replayed (redelivered after a restart, already in the table), erased (visitor erased), "
    "reprofiled (consent granted again after an erasure), invalid, anonymous (no-JavaScript pixel "
    "hit, a random id per hit: never profiled).",
    ["type", "outcome"],
)
DUPLICATES_SKIPPED = Counter(
    "tracker_worker_duplicates_skipped_total",
    "Events skipped because they were already counted: by event id (client retry) or by "
    "offset (redelivery after a crash or rebalance).",
    ["reason"],
)
PROCESSING_LAG = Histogram(
    "tracker_worker_event_to_profile_seconds",
    "Time from the collector receiving an event to the write of the profile that counts it.",
    # Fine between 0.1 and 0.25 s, where freshness lies with the worker's 0.1 s fetch wait: a
    # quantile is interpolated inside its bucket, and 0.1-0.25 read every p99 there as ~0.24 s.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SECONDS = Histogram(
    "tracker_worker_batch_seconds",
    "Time to process one batch of records: fold, changelog, Redis write.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_RECORDS = Histogram(
    "tracker_worker_batch_records",
    "Records per processed batch.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
SESSIONS_CLOSED = Counter(
    "tracker_worker_sessions_closed_total",
    "Sessions written to the sessions topic, by what closed them: gap, source, idle.",
    ["closed_by"],
)
ERASURES = Counter(
    "tracker_worker_erasures_total",
    "Erasure requests handled: erased, duplicate (request id already handled).",
    ["outcome"],
)
REDIS_ERRORS = Counter(
    "tracker_worker_redis_errors_total",
    "Failed Redis writes (retried until they succeed; events are acknowledged only after).",
)
CONSUMER_LAG = Gauge(
    "tracker_worker_consumer_lag_messages",
    "Records in a partition this worker consumes that are not committed yet (highwater - committed).",
    ["topic", "partition"],
)
INTAKE_RECORDS = Gauge(
    "tracker_worker_intake_records",
    "Fetched records of the visitors agent's input topics waiting in this worker for a batch.",
)
TABLE_KEYS = Gauge(
    "tracker_worker_table_keys",
    "Keys of a table in this worker's actively assigned partitions.",
    ["table"],
)
OPEN_SESSIONS = Gauge(
    "tracker_worker_open_sessions",
    "Sessions not yet emitted in this worker's actively assigned partitions.",
)
SEGMENT_SAMPLES = Counter(
    "tracker_worker_segment_samples_total",
    "Profile samples learnt by the segment model (on the one worker that owns the learner).",
)
SEGMENT_MODEL_VERSION = Gauge(
    "tracker_worker_segment_model_version",
    "Version of the segment model this worker assigns segments with (0: none yet).",
)
PARTITION_MISMATCH = Counter(
    "tracker_worker_partition_mismatch_total",
    "Events found on another partition than Kafka's default (murmur2) partitioner gives their key: "
    "erasure requests cannot reach such visitors in order; set the producer's partitioner to murmur2.",
)
INPUT_RECORDS_AHEAD = Counter(
    "tracker_worker_input_records_ahead_total",
    "Records that arrived past their partition's stored position (the consumer skipped some before "
    "them, as Faust can around a rebalance): left out until the partition is sought back.",
    ["topic"],
)
INPUT_REWINDS = Counter(
    "tracker_worker_input_rewinds_total",
    "Seeks of an input partition back to the first record the table does not hold yet.",
    ["topic"],
)
INPUT_RECORDS_LOST = Counter(
    "tracker_worker_input_records_lost_total",
    "Input records never processed: deleted by retention first, or never arriving after repeated "
    "seeks. Alert on any increase.",
    ["topic"],
)
DECISIONS_JOINED = Counter(
    "tracker_worker_decisions_total",
    "Offer decisions read from the decisions topic: joined (waiting for feedback), ignored "
    "(redelivered, or nothing shown), erased (visitor erased), invalid.",
    ["outcome"],
)
REWARDS_EMITTED = Counter(
    "tracker_worker_rewards_total",
    "Rewards emitted to the trainer once a decision's attribution window closed: by decision "
    "group (policy, holdout), whether the offer was seen (impressed) and clicked.",
    ["group", "impressed", "clicked"],
)
FEEDBACK = Counter(
    "tracker_worker_feedback_total",
    "Impressions, clicks and purchases met by the reward join, by what became of them: joined, "
    "waiting (decision not here yet), finished (came after the decision's reward was emitted: "
    "raise TRACKER_ATTRIBUTION_LATENESS_SECONDS), outside_window, other_offer, no_decision.",
    ["kind", "outcome"],
)
MODEL_UPDATES = Counter(
    "tracker_trainer_updates_total",
    "Rewards read by the trainer: learned, or skipped (redelivered, holdout, never shown).",
    ["outcome"],
)
MODEL_PUBLISHED = Counter(
    "tracker_trainer_snapshots_published_total",
    "Click model snapshots published to Redis by the trainer.",
)
MODEL_UPDATES_PUBLISHED = Gauge(
    "tracker_trainer_model_updates",
    "Rewards learned by the click model in its current published snapshot.",
)
EXPLORATION_RESTARTS = Counter(
    "tracker_trainer_exploration_restarts_total",
    "Times the trainer saw the click rate collapse (drift) and restarted exploration.",
)
