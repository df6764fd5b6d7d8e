#!/bin/sh
# mandoc's lint of the built man pages, at warning level: any warning or
# error fails, except the one scdoc (1.11) always causes, an empty or
# redundant .PP after a heading or between paragraphs, which renders
# identically (mandoc skips it).  Each page must also render as text.
set -u
status=0
[ $# -gt 0 ] || { echo "man-lint: no pages given" >&2; exit 2; }
for page in "$@"; do
  if [ ! -s "$page" ]; then
    echo "man-lint: $page is missing or empty (is the 'man' target built?)" >&2
    status=1
    continue
  fi
  findings=$(mandoc -T lint -W warning "$page" 2>&1 |
             grep -v 'WARNING: skipping paragraph macro: PP \(empty\|after SH\)')
  if [ -n "$findings" ]; then
    printf '%s\n' "$findings" >&2
    status=1
  fi
  # and at error level with nothing filtered
  mandoc -T lint -W error "$page" >&2 || status=1
  lines=$(mandoc -T utf8 "$page" | wc -l)
  if [ "$lines" -lt 20 ]; then
    echo "man-lint: $page renders as only $lines lines" >&2
    status=1
  fi
  echo "$page: $(basename "$page") linted, $lines lines rendered"
done
exit $status
