"""Online migration: copy inside a logical slot's snapshot, then native logical replication
until a fenced, verified cutover.

Modules in pipeline order: `state.py` (what exists, recorded on the target so any step can run
from a new process) → `preflight.py` → `source.py` (the only code that writes to the source:
publication, slot, fence) → `target.py` (subscription, sequences) → `start.py` → `status.py` →
`cutover.py` → `teardown.py` (abort).
"""
