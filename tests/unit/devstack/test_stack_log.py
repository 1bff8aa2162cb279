"""What `loyalnest up --detach` prints when the stack it started stops before it is ready."""

from __future__ import annotations

from loyalnest.devstack.stack import why_it_stopped

_STARTED = [f"  {name:<16} ready" for name in ("postgres", "redis", "kafka", "points-0", "auth-0")]
_STOPPED = [f"  {f'{s}-{i}':<16} stopped" for s in ("points", "users", "auth") for i in (0, 1)]


def test_the_error_and_the_components_own_lines_not_the_stop_reports() -> None:
    log = "\n".join(
        [
            "Starting LoyalNest (state and logs in /tmp/s)",
            *_STARTED,
            "  edge-0           starting",
            "",
            "error: edge-0 could not start: exited with code 1 during start-up; log e.log:",
            '        File "socketserver.py", line 472, in server_bind',
            "      OSError: [Errno 98] Address already in use",
            *_STOPPED * 5,
        ]
    )

    assert why_it_stopped(log) == (
        "error: edge-0 could not start: exited with code 1 during start-up; log e.log:\n"
        '        File "socketserver.py", line 472, in server_bind\n'
        "      OSError: [Errno 98] Address already in use"
    )


def test_a_log_without_an_error_line_shows_its_tail() -> None:
    log = "\n".join([*_STARTED, "Traceback (most recent call last):", "KeyError: 'x'"])

    assert why_it_stopped(log, tail=2) == "Traceback (most recent call last):\nKeyError: 'x'"
