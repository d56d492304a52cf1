#!/bin/sh
# Example vmc event handler: appends every event to a log file as one JSON line.
#
#   vmc cache sync --event-handler 'sh /path/to/contrib/handlers/log-jsonl.sh'
#
# vmc runs the handler through `/bin/sh -c CMD` once per event, in order, with the event as one
# JSON object on stdin and as VMCATCHER_EVENT_* variables in the environment (the variables of
# the old vmcatcher, so its handlers keep working). A handler that exits non-zero is reported as
# `handler_failed` in `vmc cache events`; it never stops the sync.
#
# Environment:
#   VMC_EVENT_LOG  the log file to append to (default /tmp/vmc-events.jsonl)
set -eu

log="${VMC_EVENT_LOG:-/tmp/vmc-events.jsonl}"

# $(cat) drops trailing newlines; printf puts exactly one back, so every event is one line.
event="$(cat)"
printf '%s\n' "$event" >>"$log"

printf 'log-jsonl: %s %s\n' "${VMCATCHER_EVENT_TYPE:-?}" "${VMCATCHER_EVENT_DC_IDENTIFIER:--}" >&2
