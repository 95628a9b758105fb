"""The CloudWatch Embedded Metric Format (EMF): write documents, and check them.

An EMF document is a JSON log line with an ``_aws`` member saying which of its top-level
values are metrics. When the line reaches a CloudWatch log group (the ECS ``awslogs``
driver, Lambda, the CloudWatch agent), CloudWatch turns those values into metrics: no SDK,
no network call and no credentials in the app. :class:`EMFWriter` only writes lines to a
stream or a logger; :func:`emf_problems` checks a document against the specification.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO, get_args

from sitechat.errors import InvalidInputError
from sitechat.observability.logging import EMF_RECORD_ATTRIBUTE, json_line

__all__ = ["EMF_UNITS", "EMFWriter", "Metric", "Unit", "emf_problems", "validate_emf"]

Unit = Literal[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
]
"""The units CloudWatch accepts in a metric definition."""

EMF_UNITS: frozenset[str] = frozenset(get_args(Unit))


# limits from the EMF specification
_MAX_DIMENSIONS = 30
_MAX_METRICS = 100
_MAX_NAME = 255
_MAX_NAMESPACE = 255
_MAX_DIMENSION_VALUE = 1024
_MAX_VALUES = 100


@dataclass(frozen=True, slots=True)
class Metric:
    """One value to publish: a name, a number and its CloudWatch unit."""

    name: str
    value: float
    unit: Unit = "None"


class EMFWriter:
    """Writes EMF documents, one JSON line each, to a text stream or a logger.

    Every document carries the same ``dimensions`` (``{"Service": "sitechat"}`` by default)
    as a single dimension set, so an alarm can select the metric by that set alone.
    Thread-safe: concurrent writers never interleave lines.
    """

    def __init__(
        self,
        namespace: str = "Sitechat",
        dimensions: Mapping[str, str] | None = None,
        *,
        stream: TextIO | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions if dimensions is not None else {"Service": "sitechat"})
        problems = _namespace_and_dimension_problems(namespace, self.dimensions)
        if problems:
            raise InvalidInputError("Invalid EMF writer: " + "; ".join(problems) + ".")
        self._stream = stream
        self._logger = logger
        self._clock = clock
        self._lock = threading.Lock()

    def document(
        self, metrics: Sequence[Metric], properties: Mapping[str, object] | None = None
    ) -> dict[str, Any]:
        """The EMF document for ``metrics``; non-finite values are left out.

        ``properties`` become extra top-level members (searchable in Logs Insights, not
        metrics); they may not reuse a dimension or metric name.
        """
        kept = [m for m in metrics if math.isfinite(m.value)]
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(self.dimensions)],
                        "Metrics": [{"Name": m.name, "Unit": m.unit} for m in kept],
                    }
                ],
            },
            **self.dimensions,
        }
        for key, value in (properties or {}).items():
            if key in doc:
                raise InvalidInputError(f"EMF property {key!r} clashes with a dimension.")
            doc[key] = value
        for m in kept:
            if m.name in doc:
                raise InvalidInputError(
                    f"EMF metric {m.name!r} is defined twice or clashes with a property."
                )
            doc[m.name] = _number(m.value)
        return doc

    def write(
        self, metrics: Sequence[Metric], properties: Mapping[str, object] | None = None
    ) -> dict[str, Any] | None:
        """Write one line for ``metrics`` and return its document (None if nothing to write)."""
        doc = self.document(metrics, properties)
        if not doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            return None
        if self._logger is not None:
            # the JSON log formatter writes this dict at the top level of the line
            self._logger.info("metrics", extra={EMF_RECORD_ATTRIBUTE: doc})
            return doc
        line = json_line(doc)
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
        return doc


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _namespace_and_dimension_problems(namespace: object, dimensions: object) -> list[str]:
    problems = []
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= _MAX_NAMESPACE:
        problems.append(f"Namespace must be a string of 1 to {_MAX_NAMESPACE} characters")
    elif ":" in namespace:
        problems.append("Namespace must not contain ':'")
    if isinstance(dimensions, Mapping):
        if len(dimensions) > _MAX_DIMENSIONS:
            problems.append(f"at most {_MAX_DIMENSIONS} dimensions are allowed")
        for key, value in dimensions.items():
            if not isinstance(value, str) or not 1 <= len(value) <= _MAX_DIMENSION_VALUE:
                problems.append(f"dimension {key!r} must be a non-empty string")
    return problems


def emf_problems(document: object) -> list[str]:
    """Everything that keeps ``document`` from being a valid EMF document (empty if valid).

    Checks the ``_aws`` metadata (an integer millisecond ``Timestamp`` and a list of
    ``CloudWatchMetrics`` directives), each directive's ``Namespace``, ``Dimensions`` and
    ``Metrics`` (names, units, limits), and that every dimension and metric it names is a
    top-level member of the right type.
    """
    if not isinstance(document, Mapping):
        return ["the document must be a JSON object"]
    meta = document.get("_aws")
    if not isinstance(meta, Mapping):
        return ["the root must have an '_aws' object"]
    problems: list[str] = []
    stamp = meta.get("Timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
        problems.append("_aws.Timestamp must be a non-negative integer of milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return [*problems, "_aws.CloudWatchMetrics must be an array"]
    for i, directive in enumerate(directives):
        problems += [f"directive {i}: {p}" for p in _directive_problems(directive, document)]
    return problems


def _directive_problems(directive: object, root: Mapping[str, object]) -> list[str]:
    if not isinstance(directive, Mapping):
        return ["must be an object"]
    problems = _namespace_and_dimension_problems(directive.get("Namespace"), None)
    dimension_sets = directive.get("Dimensions")
    if not isinstance(dimension_sets, list):
        problems.append("Dimensions must be an array of dimension sets")
        dimension_sets = []
    for dims in dimension_sets:
        if not isinstance(dims, list) or len(dims) > _MAX_DIMENSIONS:
            problems.append(f"a dimension set must be an array of at most {_MAX_DIMENSIONS} keys")
            continue
        for key in dims:
            value = root.get(key) if isinstance(key, str) else None
            if not isinstance(value, str) or not 1 <= len(value) <= _MAX_DIMENSION_VALUE:
                problems.append(f"dimension {key!r} must be a top-level non-empty string")
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or len(metrics) > _MAX_METRICS:
        return [*problems, f"Metrics must be an array of at most {_MAX_METRICS} definitions"]
    for definition in metrics:
        problems += _metric_problems(definition, root)
    return problems


def _metric_problems(definition: object, root: Mapping[str, object]) -> list[str]:
    if not isinstance(definition, Mapping):
        return ["a metric definition must be an object"]
    name = definition.get("Name")
    if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME:
        return [f"metric Name must be a string of 1 to {_MAX_NAME} characters"]
    problems = []
    unit = definition.get("Unit", "None")
    if unit not in EMF_UNITS:
        problems.append(f"metric {name!r} has unknown Unit {unit!r}")
    resolution = definition.get("StorageResolution", 60)
    if resolution not in (1, 60):
        problems.append(f"metric {name!r} StorageResolution must be 1 or 60")
    value = root.get(name)
    values = value if isinstance(value, list) else [value]
    if not 1 <= len(values) <= _MAX_VALUES or not all(_is_finite_number(v) for v in values):
        problems.append(f"metric {name!r} must be a top-level number (or array of numbers)")
    return problems


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_emf(document: object) -> None:
    """Raise :class:`~sitechat.errors.InvalidInputError` listing what makes ``document`` invalid."""
    problems = emf_problems(document)
    if problems:
        raise InvalidInputError("Not a valid EMF document: " + "; ".join(problems) + ".")
