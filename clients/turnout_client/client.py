"""`Client`: Turnout's management API (`/api/`) and inference API (`/v2/`) from Python.

    from turnout_client import Client

    client = Client()  # TURNOUT_URL and TURNOUT_API_KEY, or a profile (turnout_client.config)
    version = client.upload_version("fraud", "model.onnx", description="nightly")
    version = client.wait_for_version("fraud", version["number"], timeout=600)
    rollout = client.start_rollout({"kind": "canary", "model": "fraud", "version": version["number"]})
    final = client.watch_rollout(rollout["id"], timeout=3600)   # raises RolloutNotPromoted

Every method returns the API's JSON as plain dicts and lists, and raises a
`turnout_client.errors.TurnoutError` for an error answer, naming what was wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from turnout_client import config
from turnout_client.errors import (
    ApiError,
    JobFailed,
    RolloutNotPromoted,
    ServerError,
    TurnoutError,
    Unreachable,
    WaitTimeout,
    error_for,
)

__all__ = ["Client"]

USER_AGENT = "turnout-client/0.1.0"
ENDED = {"promoted", "rolled_back", "aborted", "stopped"}
VERSION_SETTLED = {"ready", "failed", "archived"}


def transient(error: TurnoutError) -> bool:
    """Worth another try while polling: no answer, a 5xx (a web process restarting), a 429."""
    return isinstance(error, Unreachable | ServerError) or (isinstance(error, ApiError) and error.status == 429)


def _segment(value: Any) -> str:
    return quote(str(value), safe="")


class _CountingReader:
    """A file that reports how many bytes have been read from it (the upload's progress)."""

    def __init__(self, file: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._file = file
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        if chunk:
            self._on_read(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


class Client:
    """One server, one key; reuses its connections. Use it as a context manager or call `close()`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = config.resolve(url=url, api_key=api_key, profile=profile, timeout=timeout)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        self._http = httpx.Client(
            base_url=self.settings.url, headers=headers, timeout=self.settings.timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- HTTP -----------------------------------------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error status raises the matching TurnoutError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unreachable(f"{method} {path}: no answer from {self.settings.url} in time ({exc})") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"{method} {path}: cannot reach {self.settings.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            error = error_for(response.status_code, body)
            error.message = f"{error.message} (HTTP {response.status_code} from {method} {path})"
            raise error
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def pages(self, path: str, **params: Any) -> Iterator[Any]:
        """Every item of a list, page after page when it is paginated."""
        offset, limit = 0, 500
        while True:
            page = self.get(path, limit=limit, offset=offset, **params)
            if isinstance(page, list):  # an endpoint that answers the whole list (a version's jobs)
                yield from page
                return
            yield from page["results"]
            offset += len(page["results"])
            if not page.get("next") or not page["results"]:
                return

    def _poll(self, read: Callable[[], Any], deadline: float, interval: float) -> Any:
        """`read()`, tried again after `interval` on a transient error until `deadline`: a wait or a
        watch outlives a deploy of the web processes."""
        while True:
            try:
                return read()
            except TurnoutError as exc:
                if not transient(exc) or time.monotonic() + interval >= deadline:
                    raise
            time.sleep(interval)

    # --- Models, versions, aliases ----------------------------------------------------------------------------------

    def models(self, **filters: Any) -> list[Any]:
        return list(self.pages("/api/models/", **filters))

    def model(self, name: str) -> Any:
        return self.get(f"/api/models/{_segment(name)}/")

    def create_model(
        self, name: str, *, kind: str = "model", description: str = "", tags: list[str] | None = None
    ) -> Any:
        body = {"name": name, "kind": kind, "description": description, "tags": tags or []}
        return self.post("/api/models/", body)

    def update_model(self, name: str, **fields: Any) -> Any:
        """Change `description`, `tags` or `fallback` (None removes the fallback chain)."""
        return self.patch(f"/api/models/{_segment(name)}/", fields)

    def _version_path(self, model: str, number: int, tail: str = "") -> str:
        return f"/api/models/{_segment(model)}/versions/{int(number)}/{tail}"

    def versions(self, model: str) -> list[Any]:
        return list(self.pages(f"/api/models/{_segment(model)}/versions/"))

    def version(self, model: str, number: int) -> Any:
        return self.get(self._version_path(model, number))

    def upload_version(
        self,
        model: str,
        path: str | Path,
        *,
        progress: Callable[[int], None] | None = None,
        **fields: Any,
    ) -> Any:
        """Upload an ONNX file as a new version (multipart, streamed). `fields`: description, tags,
        metadata, parent, serving settings...; lists and dicts are sent as JSON text, as the API
        expects. `progress(n)` is called with the bytes sent since the last call."""
        import json

        data = {k: json.dumps(v) if isinstance(v, list | dict | bool) else str(v) for k, v in fields.items()}
        path = Path(path)
        with path.open("rb") as raw:
            file: Any = _CountingReader(raw, progress) if progress else raw
            return self.request(
                "POST",
                f"/api/models/{_segment(model)}/versions/",
                data=data,
                files={"file": (path.name, file, "application/octet-stream")},
                # An upload may take long on a slow link; the answer comes once it is stored.
                timeout=httpx.Timeout(self.settings.timeout, write=None, read=max(self.settings.timeout, 300)),
            )

    def create_pipeline_version(self, model: str, body: dict[str, Any]) -> Any:
        """A pipeline version from `stages` (and `outputs`, serving settings)."""
        return self.post(f"/api/models/{_segment(model)}/versions/", body)

    def update_version(self, model: str, number: int, **settings: Any) -> Any:
        """Serving settings and metadata (max_batch_size, cache_ttl_seconds, ...)."""
        return self.patch(self._version_path(model, number), settings)

    def version_action(self, model: str, number: int, verb: str, body: Any = None) -> Any:
        """archive, restore, load, unload, quantize, compare, capacity."""
        return self.post(self._version_path(model, number, f"{verb}/"), body)

    def version_jobs(self, model: str, number: int, kind: str) -> list[Any]:
        """quantizations, comparisons or capacity-reports of a version, newest first."""
        return list(self.pages(self._version_path(model, number, f"{kind}/")))

    def apply_capacity(self, model: str, number: int, report: int) -> Any:
        return self.post(self._version_path(model, number, f"capacity-reports/{int(report)}/apply/"))

    def wait_for_version(
        self,
        model: str,
        number: int,
        *,
        timeout: float = 600,
        interval: float = 1.0,
        on_change: Callable[[Any], None] | None = None,
    ) -> Any:
        """Until the version is `ready`; raises JobFailed (with `status_reason`) when it fails,
        WaitTimeout past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            version = self._poll(lambda: self.version(model, number), deadline, interval)
            if on_change is not None and version["status"] != last:
                on_change(version)
            last = version["status"]
            if version["status"] == "ready":
                return version
            if version["status"] in VERSION_SETTLED:
                reason = version.get("status_reason") or "no reason given"
                raise JobFailed(f"{model} v{number} is {version['status']}: {reason}", version)
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{model} v{number} is still {version['status']} after {timeout:g} s")
            time.sleep(interval)

    def wait_for_job(self, model: str, number: int, kind: str, job_id: Any, *, timeout: float = 600) -> Any:
        """Until a quantization, comparison or capacity report has ended; JobFailed if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self._poll(lambda: self.version_jobs(model, number, kind), deadline, 1.0)
            job = next((j for j in jobs if j.get("id") == job_id), None)
            if job is None:
                raise JobFailed(f"{kind} {job_id} of {model} v{number} is gone")
            if job["status"] == "succeeded":
                return job
            if job["status"] == "failed":
                raise JobFailed(f"{kind} {job_id} failed: {job.get('reason') or 'no reason given'}", job)
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{kind} {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(1.0)

    def aliases(self, model: str) -> list[Any]:
        return list(self.pages(f"/api/models/{_segment(model)}/aliases/"))

    def set_alias(self, model: str, alias: str, version: int) -> Any:
        path = f"/api/models/{_segment(model)}/aliases/{_segment(alias)}/"
        return self.request("PUT", path, json={"version": int(version)})

    def delete_alias(self, model: str, alias: str) -> None:
        self.request("DELETE", f"/api/models/{_segment(model)}/aliases/{_segment(alias)}/")

    # --- Rollouts ---------------------------------------------------------------------------------------------------

    def rollouts(self, **filters: Any) -> list[Any]:
        return list(self.pages("/api/rollouts/", **filters))

    def rollout(self, rollout_id: int) -> Any:
        return self.get(f"/api/rollouts/{int(rollout_id)}/")

    def start_rollout(self, body: dict[str, Any]) -> Any:
        """`{"kind": "canary" | "experiment" | "shadow", "model": ..., ...}` as docs/api.md describes."""
        return self.post("/api/rollouts/", body)

    def rollout_action(self, rollout_id: int, verb: str, body: Any = None) -> Any:
        """pause, resume, promote, abort, stop."""
        return self.post(f"/api/rollouts/{int(rollout_id)}/{verb}/", body)

    def rollout_analysis(self, rollout_id: int) -> Any:
        return self.get(f"/api/rollouts/{int(rollout_id)}/analysis/")

    def watch_rollout(
        self,
        rollout_id: int,
        *,
        timeout: float = 3600,
        interval: float = 2.0,
        on_update: Callable[[Any], None] | None = None,
    ) -> Any:
        """Until the rollout ends: returns it when promoted, raises RolloutNotPromoted when it was
        rolled back, aborted or stopped, WaitTimeout past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            rollout = self._poll(lambda: self.rollout(rollout_id), deadline, interval)
            if on_update is not None:
                on_update(rollout)
            if rollout["status"] == "promoted":
                return rollout
            if rollout["status"] in ENDED:
                reason = (rollout.get("outcome") or {}).get("reason") or "no reason given"
                raise RolloutNotPromoted(f"rollout {rollout_id} was {rollout['status']}: {reason}", rollout)
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"rollout {rollout_id} is still {rollout['status']} after {timeout:g} s")
            time.sleep(interval)

    # --- Keys and plans ---------------------------------------------------------------------------------------------

    def keys(self, **filters: Any) -> list[Any]:
        return list(self.pages("/api/keys/", **filters))

    def key(self, key_id: str) -> Any:
        return self.get(f"/api/keys/{_segment(key_id)}/")

    def create_key(self, name: str, **fields: Any) -> Any:
        """model_patterns, actions, expires_at (ISO 8601), future_models. The answer's `secret` is shown once."""
        return self.post("/api/keys/", {"name": name, **fields})

    def rotate_key(self, key_id: str, grace_seconds: int | None = None) -> Any:
        body = {} if grace_seconds is None else {"grace_seconds": int(grace_seconds)}
        return self.post(f"/api/keys/{_segment(key_id)}/rotate/", body)

    def revoke_key(self, key_id: str) -> Any:
        return self.post(f"/api/keys/{_segment(key_id)}/revoke/")

    def set_key_limits(self, key_id: str, **limits: Any) -> Any:
        """Admins: `plan` (a name) and requests_per_window, window_seconds, burst, daily_quota (None clears)."""
        return self.patch(f"/api/keys/{_segment(key_id)}/", limits)

    def plans(self) -> list[Any]:
        return list(self.pages("/api/plans/"))

    def save_plan(self, name: str, *, create: bool, **fields: Any) -> Any:
        if create:
            return self.post("/api/plans/", {"name": name, **fields})
        return self.patch(f"/api/plans/{_segment(name)}/", fields)

    def delete_plan(self, name: str) -> None:
        self.request("DELETE", f"/api/plans/{_segment(name)}/")

    # --- Inference --------------------------------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        version: int | None = None,
        outputs: list[str] | None = None,
        binary: bool = False,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        """V2 inference. `inputs`: name -> numpy array, or name -> {"datatype", "shape", "data"}.
        `binary`: tensors travel as raw bytes (the binary data extension), both ways. Returns the
        V2 answer with each output's `data` (a numpy array for binary outputs), plus `headers`."""
        from turnout_client import tensors

        path = f"/v2/models/{_segment(model)}"
        path += f"/versions/{int(version)}/infer" if version is not None else "/infer"
        body, content_headers = tensors.encode_request(
            inputs, outputs=outputs, binary=binary, request_id=request_id, parameters=parameters
        )
        response = self.send("POST", path, content=body, headers={**content_headers, **(headers or {})})
        answer = tensors.decode_response(response.content, response.headers)
        answer["headers"] = {k: v for k, v in response.headers.items() if k.lower().startswith("x-turnout")}
        return answer
