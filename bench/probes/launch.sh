#!/bin/bash
# In front of the layer's launcher (moved to ../bench-launch/): writes the time the extension's
# process started, then becomes the real launcher. bash for $EPOCHREALTIME, which needs no fork.
printf 'BENCH launch %s\n' "$EPOCHREALTIME" >&2
exec "${0%/*}/../bench-launch/${0##*/}"
