"""Checks of torc's own error contract, loaded by .ci/schemathesis.sh (SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.check
def error_body_is_code_and_message(ctx, response, case):
    """Every error answer is JSON with a string `code` and a string `message`."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{response.status_code} answered with {content_type!r}, not JSON")
    body = response.json()
    if not isinstance(body, dict):
        raise AssertionError(f"error body is not an object: {body!r}")
    for field in ("code", "message"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise AssertionError(f"error body lacks a string {field!r}: {body!r}")
