#!/bin/bash
#
# scripts/module_order.sh — check that the glue's files call each other only
# in the order docs/architecture.md ("Modules of the glue") lists them.
#
#   make && bash scripts/module_order.sh
#
# Reads the list (one line of files per layer, top first) from the doc and
# the objects built from src/*.c: for every symbol a file uses (nm -u) that
# another glue file defines (nm --defined-only), the defining file must be
# on a lower line, or on the same line to the right; files on a line whose
# comment says "one module" may call each other.  Every src/*.c must be in
# the list.  Prints each violation; last line "module_order: 1 passed, 0
# failed" or "module_order: 0 passed, 1 failed" (and a non-zero exit).

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOC=$ROOT/docs/architecture.md
cd "$ROOT" || exit 2

fail() {
	echo "module_order: $*"
	echo "module_order: 0 passed, 1 failed"
	exit 1
}

# The code block after the section heading: "file.c ... (comment)" lines.
list=$(awk '/^## Modules of the glue/ { s = 1; next }
	s == 1 && /^```/ { s = 2; next }
	s == 2 && /^```/ { exit }
	s == 2 { print }' "$DOC")
[ -n "$list" ] || fail "no module list in $DOC"

declare -A line pos group
n=0
while IFS= read -r l; do
	n=$((n + 1))
	files=${l%%(*}
	one=0
	case $l in *"one module"*) one=1 ;; esac
	p=0
	for f in $files; do
		case $f in *.c) ;; *) continue ;; esac
		m=${f%.c}
		line[$m]=$n
		pos[$m]=$p
		[ $one = 1 ] && group[$m]=$n
		p=$((p + 1))
	done
done <<<"$list"

bad=0
for c in src/*.c; do
	m=$(basename "$c" .c)
	[ -n "${line[$m]:-}" ] || { echo "module_order: $m.c is not in the list of $DOC"; bad=1; }
	[ -f "src/$m.o" ] || fail "src/$m.o not built (run make first)"
done

declare -A def
for c in src/*.c; do
	m=$(basename "$c" .c)
	for s in $(nm --defined-only "src/$m.o" | awk '$2 ~ /^[TDBRCVWG]$/ { print $3 }'); do
		def[$s]=$m
	done
done

for c in src/*.c; do
	a=$(basename "$c" .c)
	[ -n "${line[$a]:-}" ] || continue
	for s in $(nm -u "src/$a.o" | awk '{ print $2 }'); do
		b=${def[$s]:-}
		[ -n "$b" ] && [ "$b" != "$a" ] && [ -n "${line[$b]:-}" ] || continue
		if [ "${line[$b]}" -gt "${line[$a]}" ]; then
			continue
		fi
		if [ "${line[$b]}" -eq "${line[$a]}" ]; then
			[ "${pos[$b]}" -gt "${pos[$a]}" ] && continue
			[ -n "${group[$a]:-}" ] && continue
		fi
		echo "module_order: $a.c calls up into $b.c ($s)"
		bad=1
	done
done

[ $bad = 0 ] || fail "the glue's calls do not follow $DOC"
echo "module_order: 1 passed, 0 failed"
