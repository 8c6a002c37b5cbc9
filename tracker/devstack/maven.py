"""Resolve the Apache Kafka broker's jars from Maven Central into a reusable cache folder."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tracker.errors import StackError
from tracker.settings import REPO_ROOT

POM = REPO_ROOT / "deploy" / "local" / "pom.xml"
_COMPLETE_MARKER = ".complete"


def require_java() -> str:
    """Path of ``java`` (17 or newer), or a clear error."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java is not installed: the local Kafka broker needs Java 17 or newer. "
            "Install it (Debian: apt-get install openjdk-17-jre-headless) and try again."
        )
    return java


def kafka_libs_dir(cache_dir: Path) -> Path:
    """Where the jars for the current ``pom.xml`` live; a changed pom gets a fresh folder."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return cache_dir / f"kafka-libs-{digest}"


def resolve_kafka_jars(cache_dir: Path, *, quiet: bool = True, extra_args: Sequence[str] = ()) -> Path:
    """Folder holding the Kafka broker's runtime classpath, downloaded on first use.

    ``extra_args`` go to Maven as they are (e.g. ``-o`` to work offline).
    """
    libs = kafka_libs_dir(cache_dir)
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven is not installed: it fetches the Kafka broker's jars from Maven Central. "
            "Install it (Debian: apt-get install maven) and try again."
        )
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
        *extra_args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()[-20:]
        raise StackError(
            "Maven could not resolve the Kafka broker from Maven Central "
            f"(`{' '.join(argv)}` exited {result.returncode}). Check that Maven Central is reachable "
            "(proxy settings in ~/.m2/settings.xml). Maven said:\n" + "\n".join(output)
        )
    (staging / _COMPLETE_MARKER).write_text("ok\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs
