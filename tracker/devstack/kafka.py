"""A single-node Apache Kafka broker and controller (KRaft) on loopback."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient

from tracker.devstack.process import ManagedProcess, ensure_port_free, free_port
from tracker.errors import StackError

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


def _server_properties(data_dir: Path, port: int, controller_port: int, partitions: int) -> str:
    # Small internal topics and no initial rebalance delay: a laptop broker that starts in
    # seconds and lets consumer groups form at once. Replication factor 1: one node.
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir / "log"}
num.partitions={partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
# The log cleaner's dedupe buffer (for compacted topics) lives on the heap from start-up:
# the default 128 MiB kept most of a 512 MiB heap live, so G1 ran a concurrent mark cycle
# and a 10-20 ms young pause every few seconds under load (the collector's p99 tail).
log.cleaner.dedupe.buffer.size=16777216
"""


class KafkaBroker:
    """Formats KRaft storage in ``data_dir`` and runs ``kafka.Kafka`` from the resolved jars."""

    def __init__(
        self,
        *,
        java: str,
        libs_dir: Path,
        data_dir: Path,
        port: int = 0,
        controller_port: int = 0,
        partitions: int = 4,
        heap: str = "512m",
    ):
        self.java = java
        self.libs_dir = libs_dir
        self.data_dir = data_dir
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.partitions = partitions
        self.heap = heap
        self._process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            self.java,
            # Kafka's own start scripts' JVM settings (kafka-run-class.sh), with a fixed-size heap.
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def format_storage(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(_server_properties(self.data_dir, self.port, self.controller_port, self.partitions))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        formatter = ManagedProcess(
            "Kafka storage format",
            # "--cluster-id=<id>": an id starting with "-" (1 in 64) would read as an option.
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)),
            self.data_dir / "format.log",
        )
        formatter.start()
        proc = formatter._proc
        assert proc is not None
        if proc.wait(timeout=120) != 0:
            raise StackError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {proc.returncode}):\n"
                f"{formatter.log_tail()}"
            )

    def start(self, timeout: float = 90.0) -> None:
        ensure_port_free("127.0.0.1", self.port, "Kafka")
        ensure_port_free("127.0.0.1", self.controller_port, "the Kafka controller")
        self.format_storage()
        self._launch(timeout)

    def start_again(self, timeout: float = 90.0) -> None:
        """Start a stopped broker on the same ports and data, without formatting its storage:
        everything it had acknowledged is still there (failure tests stop and restart it)."""
        if self._process is not None:
            raise StackError("the Kafka broker is still running; stop() it first")
        ensure_port_free("127.0.0.1", self.port, "Kafka")
        ensure_port_free("127.0.0.1", self.controller_port, "the Kafka controller")
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        self._process = ManagedProcess(
            "Kafka broker",
            self._java("kafka.Kafka", str(self.data_dir / "server.properties")),
            self.data_dir / "broker.log",
        )
        self._process.start()
        self._process.wait_until(self._metadata_answers, timeout, "answering metadata requests")

    def _metadata_answers(self) -> bool:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=2000,
                bootstrap_timeout_ms=2000,
                client_id="tracker-devstack",
            )
        except Exception:
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except Exception:
            return False
        finally:
            admin.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(timeout=30)
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None
