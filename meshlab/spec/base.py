"""Shared building blocks of the spec: a strict base model and the scalar types users write.

Every section model derives from :class:`StrictModel`: camelCase keys as users write them in YAML,
unknown keys rejected with a "did you mean" hint, values frozen once parsed. The scalar types parse
what people actually type: ``"10%"``, ``0.1``, ``"90s"``, ``"2m"``; ``LocalUrl`` is an ``http://``
URL with an explicit port (a model server meshlab reaches directly).
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DURATION = re.compile(r"^(?P<num>\d+(\.\d+)?)(?P<unit>ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class StrictModel(BaseModel):
    """Base of every spec section: camelCase aliases, frozen, unknown keys rejected with a hint."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        str_strip_whitespace=True,
        allow_inf_nan=False,  # no spec number is infinite: `.inf` gets a field error, not a plan of 0 s
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = {f.alias or name for name, f in cls.model_fields.items()}
        known |= set(cls.model_fields)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                hint = (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else (
                        f"; allowed fields: {', '.join(sorted(f.alias or n for n, f in cls.model_fields.items()))}"
                    )
                )
                raise PydanticCustomError(
                    "unknown_field", "unknown field{hint}", {"subpath": f".{key}", "hint": hint}
                )
        return data


def _dns1123_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise PydanticCustomError(
            "dns1123",
            "'{value}' is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending alphanumeric, at most 63 characters)",
            {"value": value},
        )
    return value


def _dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise PydanticCustomError(
            "dns1123",
            "'{value}' is not a valid host (a Service name or FQDN: lowercase DNS-1123 labels "
            "separated by '.')",
            {"value": value},
        )
    return value


def _http_url_with_port(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise PydanticCustomError(
            "url",
            "'{v}' must be an http URL with a port, e.g. http://127.0.0.1:9000",
            {"v": value},
        )
    return value


def parse_fraction(value: Any) -> float:
    """``"10%"`` -> 0.1, ``"0.5%"`` -> 0.005, ``0.1`` -> 0.1 (a bare number is a fraction)."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "fraction", "expected a percentage like '10%' or a fraction like 0.1", {}
        )
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise PydanticCustomError(
                "fraction",
                "'{value}' is not a percentage like '10%' or a fraction like 0.1",
                {"value": value},
            ) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise PydanticCustomError(
            "fraction", "expected a percentage like '10%' or a fraction like 0.1", {}
        )
    if not math.isfinite(number) or number <= 0:
        raise PydanticCustomError("fraction", "must be above 0 (e.g. '10%' or 0.1)", {})
    return number


def parse_duration(value: Any) -> float:
    """``"90s"``, ``"2m"``, ``"500ms"``, ``"1h"`` or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration like '30s', '2m' or '500ms'", {})
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        seconds = float(match["num"]) * _UNIT_SECONDS[match["unit"]]
    else:
        raise PydanticCustomError(
            "duration", "'{value}' is not a duration like '30s', '2m' or '500ms'", {"value": value}
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise PydanticCustomError("duration", "must be above 0 (e.g. '30s')", {})
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds -> Istio/protobuf duration string (``"1.5s"``)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


DnsLabel = Annotated[str, AfterValidator(_dns1123_label)]
Host = Annotated[str, AfterValidator(_dns1123_subdomain)]
LocalUrl = Annotated[str, AfterValidator(_http_url_with_port)]  # a server meshlab reaches directly
Fraction = Annotated[float, BeforeValidator(parse_fraction)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
