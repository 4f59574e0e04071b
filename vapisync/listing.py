"""Listing Vapi's assistants and phone numbers completely, page by page.

Vapi's v1 lists return at most `limit` (<= 1000) items, newest first, with createdAt/updatedAt
range filters and no cursor. We page with `limit=1000` and `createdAtLe=<oldest createdAt of
the previous page>` (inclusive, so items sharing that timestamp across a page boundary are not
lost) and drop ids already yielded. A full page that brings no new id means more than
`page_size` items share one createdAt: the v1 filters cannot step past them without losing
some, so we raise `VapiProtocolError` rather than loop or return a silently incomplete listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from vapisync.exceptions import VapiProtocolError
from vapisync.vapi_http import MAX_PAGE_SIZE, format_vapi_datetime, parse_vapi_datetime


def iter_list(
    request: Callable[..., Any],
    redact: Callable[[Any], Any],
    path: str,
    *,
    updated_since: datetime | None = None,
    created_since: datetime | None = None,
    page_size: int = MAX_PAGE_SIZE,
) -> Iterator[dict]:
    """Every item of the list at `path`, each once, newest first.

    `request` is the client's `_request` (one GET with retries, pacing and typed errors);
    `redact` its `_redact`, so an odd item quoted in an error never carries the API key.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    base_params: dict[str, Any] = {"limit": page_size}
    if updated_since is not None:
        base_params["updatedAtGt"] = format_vapi_datetime(updated_since)
    if created_since is not None:
        base_params["createdAtGe"] = format_vapi_datetime(created_since)
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        params = dict(base_params)
        if cursor is not None:
            params["createdAtLe"] = cursor
        page = _page_items(request("GET", path, params=params), "GET", path)
        fresh = 0
        for item in page:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise VapiProtocolError(
                    f"Vapi listed an item without an id in GET {path}: {redact(str(item))[:200]}",
                    method="GET",
                    path=path,
                )
            if item["id"] in seen:
                continue
            seen.add(item["id"])
            fresh += 1
            yield item
        if len(page) < page_size:
            return
        if not fresh:
            raise VapiProtocolError(
                f"Cannot list all of GET {path}: at least {page_size} items share createdAt {cursor}, and "
                f"Vapi's v1 list (newest first, createdAt filters, no cursor) cannot page past them "
                f"without skipping some. Stopped after {len(seen)} items; the listing is incomplete, "
                "so nothing missing from it may be treated as deleted.",
                method="GET",
                path=path,
                details={"createdAt": cursor, "listed": len(seen), "page_size": page_size},
            )
        cursor = _oldest_created_at(page, path)


def _page_items(body: Any, method: str, path: str) -> list:
    """A list page as a list: Vapi answers a plain array or {"results": [...], "metadata": {...}}."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        return body["results"]
    raise VapiProtocolError(
        f"Vapi answered {method} {path} with {type(body).__name__} JSON, expected a list or "
        '{"results": [...]}' + (f" (keys: {sorted(body)[:10]})" if isinstance(body, dict) else ""),
        method=method,
        path=path,
    )


def _oldest_created_at(page: list[dict], path: str) -> str:
    """The createdAt string (as Vapi wrote it, full precision) of the oldest item on a page."""
    oldest: tuple[datetime, str] | None = None
    for item in page:
        raw = item.get("createdAt")
        try:
            when = parse_vapi_datetime(raw)
        except (TypeError, ValueError):
            raise VapiProtocolError(
                f"Vapi listed {path} item {item.get('id')} with createdAt {raw!r}, which is not an ISO date; "
                "cannot page past it.",
                method="GET",
                path=path,
            ) from None
        if oldest is None or when < oldest[0]:
            oldest = (when, raw)
    return oldest[1]
