#!/usr/bin/env python3
"""Every event the daemon logs has one MESSAGE_ID in src/common/log.c, each
id is a distinct 128-bit value, and docs/operations.md documents exactly
that table (the systemd suite checks that the journal carries them)."""
import os
import re
import sys

src = os.environ.get("LMPOOL_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
log_c = open(os.path.join(src, "src", "common", "log.c")).read()
table = dict(re.findall(r'\{\s*"([a-z_]+)",\s*"([^"]*)"\s*\}', log_c[log_c.index("message_ids[]"):]))
docs = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", open(os.path.join(src, "docs", "operations.md")).read(), re.M))

events = set()
for root, _, files in os.walk(os.path.join(src, "src")):
    for f in files:
        if f.endswith(".c"):
            text = open(os.path.join(root, f)).read()
            events |= set(re.findall(r"\blmp_log(?:_event)?\(\s*[^,;]+?,\s*\"([a-z_]+)\"", text))

errors = []
for ev in sorted(events - set(table)):
    errors.append("event %s is logged but has no MESSAGE_ID in src/common/log.c" % ev)
for ev in sorted(set(table) - events):
    errors.append("src/common/log.c has a MESSAGE_ID for %s, which nothing logs" % ev)
for ev, mid in table.items():
    if not re.fullmatch(r"[0-9a-f]{32}", mid):
        errors.append("%s: MESSAGE_ID %r is not 32 lower-case hex digits" % (ev, mid))
dups = {m for m in table.values() if list(table.values()).count(m) > 1}
for m in dups:
    errors.append("MESSAGE_ID %s is used twice" % m)
if docs != table:
    for ev in sorted(set(docs) | set(table)):
        if docs.get(ev) != table.get(ev):
            errors.append("%s: docs/operations.md says %s, src/common/log.c %s" % (ev, docs.get(ev), table.get(ev)))
for e in errors:
    print(e)
print("%d events, %d ids: %s" % (len(events), len(table), "FAIL" if errors else "ok"))
sys.exit(1 if errors else 0)
