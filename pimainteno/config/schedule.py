"""Cron and systemd OnCalendar schedules: `[scheduler] schedule` normalised to OnCalendar."""

from __future__ import annotations

import re

_CRON_FIELD = re.compile(r"[\d*,/\-]+")
_SHORTHANDS = {
    "minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
    "quarterly", "semiannually",
}  # fmt: skip
_DOW = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_ON_CALENDAR = re.compile(r"[A-Za-z0-9*,./:~\- +]+")


def normalise_schedule(value: str) -> str:
    """A cron expression (`0 3 * * *`) or an OnCalendar expression, as OnCalendar."""
    text = " ".join(value.split())
    fields = text.split(" ")
    if len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields):
        return _cron_to_oncalendar(fields)
    if text.startswith("@") and text[1:] in _SHORTHANDS:
        return text[1:]
    if text in _SHORTHANDS or (_ON_CALENDAR.fullmatch(text) and any(c.isdigit() or c == "*" for c in text)):
        return text
    raise ValueError("a cron expression such as '0 3 * * *' or a systemd OnCalendar expression")


def _cron_part(part: str, lo: int, hi: int, width: int = 2) -> str:
    out = []
    for item in part.split(","):
        step = ""
        if "/" in item:
            item, step = item.split("/", 1)
            if not step.isdigit() or int(step) == 0:
                raise ValueError("a valid cron step")
        if item == "*":
            out.append(f"{lo:0{width}d}/{step}" if step else "*")
            continue
        bounds = item.split("-")
        if len(bounds) > 2 or not all(b.isdigit() and lo <= int(b) <= hi for b in bounds):
            raise ValueError(f"cron values between {lo} and {hi}")
        text = "..".join(f"{int(b):0{width}d}" for b in bounds)
        out.append(f"{text}/{step}" if step else text)
    return ",".join(out)


def _cron_to_oncalendar(fields: list[str]) -> str:
    minute, hour, dom, month, dow = fields
    date = f"*-{_cron_part(month, 1, 12)}-{_cron_part(dom, 1, 31)}"
    time = f"{_cron_part(hour, 0, 23)}:{_cron_part(minute, 0, 59)}:00"
    if dow == "*":
        return f"{date} {time}"
    days = []
    for item in dow.split(","):
        bounds = item.split("-")
        if "/" in item or len(bounds) > 2 or not all(b.isdigit() and 0 <= int(b) <= 7 for b in bounds):
            raise ValueError("cron weekdays between 0 and 7")
        days.append("..".join(_DOW[int(b)] for b in bounds))
    return f"{','.join(days)} {date} {time}"
