"""A Prometheus HTTP API client with a timeout on every call and only chaosaa errors.

``prometheus_api_client.PrometheusConnect`` does the querying; this wrapper adds what a
GameDay needs around it: explicit timeouts (the library has none by default, see
prometheus-api-client issue #277), sub-second query ranges, the 11,000-points limit,
readable one-line errors, and a clean split between a bad expression (``PromQLError``,
the user's input) and everything else (``PrometheusError``, the environment).

The calls are synchronous; async code uses the ``a_*`` wrappers, which run them in a
worker thread.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

import requests
import yaml
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from chaosaa.durations import parse_duration
from chaosaa.errors import PrometheusError, PromQLError
from chaosaa.model import Series

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Prometheus refuses range queries with more points per series than this.
MAX_POINTS = 11_000

#: Instants the API accepts: unix seconds or timezone-aware datetimes.
Instant = float | datetime

_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\Z", re.DOTALL)
_MAX_REASON = 300


class PrometheusQueryError(PrometheusError):
    """Prometheus answered a request with an error; ``error_type`` is its ``errorType``
    (``execution``, ``timeout``, ``canceled``, ...) or None for a bare HTTP error."""

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


def effective_step(start: Instant, end: Instant, step: float) -> float:
    """Return the step ``range()`` really uses: ``step`` (rounded to milliseconds), raised
    just enough that the query stays within Prometheus' 11,000 points per series."""
    return _step_ms(_to_ms(start), _to_ms(end), step) / 1000


class PrometheusClient:
    """Queries one Prometheus (or a Prometheus-compatible API) at ``url``.

    ``timeout`` bounds connecting and reading, separately, for every call; a failed
    connection is retried once, so one call takes at most about three times ``timeout``.
    Answers are never retried here: the engine decides what a failed query means.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._session = requests.Session()
        self._session.verify = verify_tls
        retry = Retry(
            total=1,
            connect=1,
            read=False,  # re-raise read errors as they are: a timeout stays a timeout
            status=0,
            other=0,
            backoff_factor=0.1,
            raise_on_status=False,
        )
        self._connect = PrometheusConnect(
            url=self.url,
            headers=self._headers or None,
            disable_ssl=not verify_tls,
            retry=retry,
            session=self._session,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusClient({self.url!r}, timeout={self.timeout:g})"

    # ------------------------------------------------------------------ checks

    def ping(self) -> None:
        """Raise ``PrometheusError`` with a one-line reason unless the query API answers."""
        self._query("1", {}, reach_only=True)

    def check_expression(self, expr: str) -> None:
        """Raise ``PromQLError`` if Prometheus cannot parse ``expr``.

        Prometheus 2.42 has no parse-only endpoint, so the expression is evaluated once as
        an instant query: a ``bad_data`` answer is a parse error; an evaluation error
        (``execution``, e.g. many-to-many matching) depends on the data at hand and does
        not make the expression invalid, so it passes here and surfaces when queried.
        Every other failure is a ``PrometheusError``.
        """
        try:
            self._query(expr, {})
        except PrometheusQueryError as exc:
            if exc.error_type == "execution":
                log.info("PromQL %r parses but failed to evaluate: %s", expr, exc)
                return
            raise

    # ------------------------------------------------------------------ queries

    def instant(self, expr: str, at: Instant | None = None) -> list[Series]:
        """Evaluate ``expr`` at ``at`` (default: now). A scalar result is one series
        without labels; a range-vector result keeps all its raw points."""
        params = {} if at is None else {"time": _fmt_ms(_to_ms(at))}
        return _series(self._query(expr, params))

    def scalar(self, expr: str, at: Instant | None = None) -> float | None:
        """Return the single number ``expr`` evaluates to, ``None`` when it returns nothing.

        NaN is returned as NaN: callers treat it as no data. An expression returning more
        than one series is the user's mistake (``PromQLError``): steady-state and abort
        expressions must aggregate, e.g. with ``sum()`` or ``max()``.
        """
        series = self.instant(expr, at)
        if not series:
            return None
        if len(series) > 1:
            raise PromQLError(
                f"PromQL {_quote(expr)} returned {len(series)} series; it must return one "
                "number (aggregate it, e.g. with sum(), max() or min())"
            )
        points = series[0].points
        return points[-1][1] if points else None

    def range(self, expr: str, start: Instant, end: Instant, step: float) -> list[Series]:
        """Evaluate ``expr`` from ``start`` to ``end`` every ``step`` seconds.

        Instants keep millisecond precision (the library alone would round them to whole
        seconds). ``step`` is raised if needed to stay within Prometheus' 11,000 points;
        ``effective_step()`` tells the step used, for error bounds.
        """
        start_ms, end_ms = _to_ms(start), _to_ms(end)
        if end_ms < start_ms:
            raise ValueError("range query: end is before start")
        step_ms = _step_ms(start_ms, end_ms, step)
        # The library wants datetimes and rounds them to whole seconds; the explicit
        # params below override its start/end with the exact instants.
        params = {"start": _fmt_ms(start_ms), "end": _fmt_ms(end_ms)}
        step_text = _fmt_ms(step_ms)
        log.debug(
            "range query",
            extra={"expr": expr, "start": start_ms, "end": end_ms, "step": step_text},
        )
        result = self._call(
            expr,
            lambda: self._connect.custom_query_range(
                expr,
                start_time=_utc(start_ms),
                end_time=_utc(end_ms),
                step=step_text,
                params={**params, "timeout": self._server_timeout()},
                timeout=self.timeout,
            ),
        )
        return _series(result)

    def scrape_interval(self, job: str | None = None) -> float:
        """Return the scrape interval in seconds from ``/api/v1/status/config``: the
        global one, or ``job``'s own if it sets one."""
        what = f"{self.url}/api/v1/status/config"
        response = self._call(
            None,
            lambda: self._session.get(what, headers=self._headers, timeout=self.timeout),
        )
        if response.status_code != 200:
            self._raise_status(None, response.status_code, response.content)
        try:
            config = yaml.safe_load(response.json()["data"]["yaml"]) or {}
            interval = (config.get("global") or {}).get("scrape_interval", "1m")
            if job is not None:
                jobs = {c.get("job_name"): c for c in config.get("scrape_configs") or []}
                if job not in jobs:
                    raise PrometheusError(
                        f"Prometheus at {self.url} has no scrape job {job!r} "
                        f"(jobs: {', '.join(sorted(map(str, jobs))) or 'none'})"
                    )
                interval = jobs[job].get("scrape_interval", interval)
            return parse_duration(str(interval))
        except PrometheusError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise PrometheusError(
                f"Prometheus at {self.url} sent a configuration chaosaa cannot read "
                f"the scrape interval from: {_one_line(str(exc))}"
            ) from None

    # ------------------------------------------------------------------ async

    async def a_ping(self) -> None:
        await asyncio.to_thread(self.ping)

    async def a_check_expression(self, expr: str) -> None:
        await asyncio.to_thread(self.check_expression, expr)

    async def a_instant(self, expr: str, at: Instant | None = None) -> list[Series]:
        return await asyncio.to_thread(self.instant, expr, at)

    async def a_scalar(self, expr: str, at: Instant | None = None) -> float | None:
        return await asyncio.to_thread(self.scalar, expr, at)

    async def a_range(self, expr: str, start: Instant, end: Instant, step: float) -> list[Series]:
        return await asyncio.to_thread(self.range, expr, start, end, step)

    async def a_scrape_interval(self, job: str | None = None) -> float:
        return await asyncio.to_thread(self.scrape_interval, job)

    # ------------------------------------------------------------------ internals

    def _server_timeout(self) -> str:
        # Let Prometheus give up on the evaluation before the client gives up reading.
        # Prometheus durations take no fractions: milliseconds.
        return f"{max(round(self.timeout * 900), 1)}ms"

    def _query(self, expr: str, params: dict[str, str], *, reach_only: bool = False) -> Any:
        log.debug("instant query", extra={"expr": expr, **params})
        return self._call(
            expr,
            lambda: self._connect.custom_query(
                expr,
                params={**params, "timeout": self._server_timeout()},
                timeout=self.timeout,
            ),
            reach_only=reach_only,
        )

    def _call(self, expr: str | None, fn: Callable[[], T], *, reach_only: bool = False) -> T:
        """Run one HTTP call and map every failure to a chaosaa error."""
        try:
            return fn()
        except PrometheusApiClientException as exc:
            code, body = _parse_status(str(exc))
            if reach_only and code in (404, 405):
                raise PrometheusError(
                    f"Prometheus at {self.url} answered HTTP {code} to a query: "
                    "is this the Prometheus base URL?"
                ) from None
            self._raise_status(expr, code, body)
        except requests.JSONDecodeError:
            raise PrometheusError(
                f"Prometheus at {self.url} sent an answer that is not JSON: "
                "is this the Prometheus base URL?"
            ) from None
        except requests.RequestException as exc:
            raise PrometheusError(self._transport_reason(exc)) from None
        except (ValueError, KeyError, TypeError) as exc:
            # a JSON 200 that is not the Prometheus API (no "data", odd "result")
            raise PrometheusError(
                f"Prometheus at {self.url} sent an answer that is not the Prometheus HTTP "
                f"API ({type(exc).__name__}: {_one_line(str(exc))})"
            ) from None

    def _raise_status(self, expr: str | None, code: int | None, body: bytes | str) -> NoReturn:
        error_type, error = _api_error(body)
        subject = f" for {_quote(expr)}" if expr is not None else ""
        if error_type == "bad_data" and expr is not None and _about_query(error):
            raise PromQLError(f"invalid PromQL {_quote(expr)}: {_strip_param(error)}")
        if error_type == "execution" and expr is not None:
            message = f"Prometheus could not evaluate {_quote(expr)}: {error}"
        elif error_type in ("timeout", "canceled"):
            message = (
                f"Prometheus at {self.url} gave up evaluating{subject} ({error_type}): {error}"
            )
        else:
            status = f"HTTP {code}" if code is not None else "an error"
            message = f"Prometheus at {self.url} answered {status}{subject}: {error}"
        raise PrometheusQueryError(message, error_type) from None

    def _transport_reason(self, exc: requests.RequestException) -> str:
        where = f"Prometheus at {self.url}"
        text = str(exc)
        lowered = text.lower()
        if isinstance(exc, requests.ConnectTimeout) or "connecttimeouterror" in lowered:
            return f"{where} is unreachable: no connection within {self.timeout:g}s"
        if isinstance(exc, requests.ReadTimeout) or "read timed out" in lowered:
            return f"{where} did not answer within {self.timeout:g}s"
        if isinstance(exc, requests.exceptions.SSLError):
            return f"{where} is unreachable: TLS error ({_one_line(text, 160)})"
        if isinstance(exc, requests.ConnectionError):
            if "refused" in lowered:
                reason = "connection refused"
            elif any(
                s in lowered
                for s in ("name or service not known", "nodename nor servname", "name resolution")
            ):
                reason = "cannot resolve the host name"
            elif "reset" in lowered:
                reason = "connection reset"
            elif "remotedisconnected" in lowered or "aborted" in lowered:
                reason = "connection closed without an answer"
            elif "unreachable" in lowered:
                reason = "network unreachable"
            else:
                reason = _one_line(_innermost(text), 160)
            return f"{where} is unreachable: {reason}"
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return f"{where}: invalid URL ({_one_line(text, 160)})"
        return f"{where}: request failed ({type(exc).__name__}: {_one_line(text, 160)})"


# ---------------------------------------------------------------------- helpers


def _to_ms(at: Instant) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at.isoformat()}: pass a timezone-aware datetime")
        return round(at.timestamp() * 1000)
    if not math.isfinite(at):
        raise ValueError(f"instant {at!r} is not a finite number of unix seconds")
    return round(at * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _fmt_ms(ms: int) -> str:
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}"


def _step_ms(start_ms: int, end_ms: int, step: float) -> int:
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a positive number of seconds, not {step!r}")
    # Prometheus rejects (end - start) / step > 11000; keep one point of headroom.
    needed = math.ceil(max(end_ms - start_ms, 0) / (MAX_POINTS - 1))
    return max(round(step * 1000), needed, 1)


def _parse_status(message: str) -> tuple[int | None, bytes | str]:
    """Split the library's ``HTTP Status Code 400 (b'...')`` message."""
    m = _STATUS.match(message)
    if not m:
        return None, message
    body: bytes | str = m.group(2)
    try:
        literal = ast.literal_eval(m.group(2))
        if isinstance(literal, bytes | str):
            body = literal
    except (ValueError, SyntaxError):
        pass
    return int(m.group(1)), body


def _api_error(body: bytes | str) -> tuple[str | None, str]:
    """Return (errorType, error) from a Prometheus error body, or (None, a snippet)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        return None, _one_line(text, 160) or "empty answer"
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        error_type = doc.get("errorType")
        return (error_type if isinstance(error_type, str) else None), _one_line(doc["error"])
    return None, _one_line(text, 160)


_QUERY_PARAM = 'invalid parameter "query": '


def _about_query(error: str) -> bool:
    """True when a ``bad_data`` answer is about the expression, not another parameter."""
    return error.startswith(_QUERY_PARAM) or "parse error" in error


def _strip_param(error: str) -> str:
    return error.removeprefix(_QUERY_PARAM)


def _series(result: Any) -> list[Series]:
    """Turn the API's ``data.result`` (vector, matrix, scalar or string) into Series."""
    if not isinstance(result, list):
        raise TypeError(f"result is a {type(result).__name__}, not a list")
    if len(result) == 2 and not isinstance(result[0], dict):
        # scalar or string: [time, "value"]
        return [Series({}, [(float(result[0]), _number(result[1]))])]
    out: list[Series] = []
    for item in result:
        labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
        raw = [item["value"]] if "value" in item else item.get("values", [])
        # native histograms ("histogram"/"histograms") carry no single number: skipped
        out.append(Series(labels, [(float(t), _number(v)) for t, v in raw]))
    return out


def _number(text: Any) -> float:
    try:
        return float(text)  # handles "NaN", "+Inf", "-Inf"
    except (TypeError, ValueError):
        return math.nan


def _quote(expr: str) -> str:
    return repr(_one_line(expr, 200))


def _one_line(text: str, limit: int = _MAX_REASON) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _innermost(text: str) -> str:
    """The most specific part of a urllib3 error chain: the text after the last ': '."""
    cleaned = text.rstrip("')\"")
    return cleaned.rsplit(": ", 1)[-1] if ": " in cleaned else cleaned
