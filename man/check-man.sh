#!/bin/sh
# check-man.sh -- the man pages render cleanly and agree with the code.
#
# Every page is clean under `mandoc -T lint -W warning` (alias pages but for
# the warning every .so line gets), every alias points at a page that exists,
# every page is listed in man/local.mk, every key of g_conf_defs in
# lib/conf.c is documented in tiered.7 as "name (type, default)", every
# function of include/tiered.h has a page, and every man/examples/*.c
# compiles and is the program its page shows.
# Exits 77 (skipped) when everything but the lint passed and mandoc is missing.

srcdir=${srcdir:-.}
man=$srcdir/man
fail=0

err() {
	echo "check-man: $*" >&2
	fail=1
}

pages=$(ls "$man"/*.[1-8])

# Aliases: one line, ".so man3/NAME.3", and man/NAME.3 exists.
for p in $pages; do
	if head -n 1 "$p" | grep -q '^\.so '; then
		[ "$(wc -l <"$p")" -eq 1 ] || err "$p: an alias page must hold only its .so line"
		target=$(sed -n 's/^\.so man[1-8]\///p' "$p")
		if [ -z "$target" ] || [ ! -f "$man/$target" ]; then
			err "$p: .so target '$(cat "$p")' is not a page in man/"
		fi
	fi
	grep -qF "man/$(basename "$p")" "$man/local.mk" ||
		err "$p: not listed in man/local.mk"
done

# Every configuration key appears in tiered.7 as "name (".
keys=$(sed -n 's/^[[:space:]]*{"\([a-z0-9_]*\)".*/\1/p' "$srcdir/lib/conf.c")
[ -n "$keys" ] || err "no keys found in lib/conf.c (has the table's layout changed?)"
for k in $keys; do
	grep -qF "$k (" "$man/tiered.7" || err "tiered.7: key '$k' is not documented as '$k (type, default)'"
done

# Every public function has a page or an alias.
funcs=$(sed -n 's/^TIERED_EXPORT.*[ *]\(tiered_[a-z0-9_]*\)(.*/\1/p' "$srcdir/include/tiered.h")
[ -n "$funcs" ] || err "no functions found in include/tiered.h"
for f in $funcs; do
	[ -f "$man/$f.3" ] || err "$f: no page man/$f.3"
done

# Examples compile, and each is the program its page shows.
tmp=${TMPDIR:-/tmp}/check-man.$$
trap 'rm -rf "$tmp".*' EXIT
for c in "$man"/examples/*.c; do
	name=$(basename "$c" .c)
	${CC:-cc} -fsyntax-only -Wall -Wextra -Werror -I"$srcdir/include" "$c" ||
		err "$c: does not compile"
	page=$man/$name.3
	[ -f "$page" ] || page=$man/$name.7
	if [ ! -f "$page" ]; then
		err "$c: no page $name.3 or $name.7 shows it"
		continue
	fi
	# The .EX block that includes <tiered.h>, with roff escapes undone.
	awk '/^\.EE/ { if (keep) { printf "%s", block; exit } ex = 0 }
	     ex { block = block $0 "\n"; if ($0 ~ /^#include <tiered.h>/) keep = 1 }
	     /^\.EX/ { ex = 1; block = ""; keep = 0 }' "$page" |
		sed -e 's/^\\&//' -e 's/\\(aq/'"'"'/g' -e 's/\\-/-/g' -e 's/\\e/\\/g' >"$tmp.page"
	sed -e ':a' -e 's/^\(\(    \)*\)	/\1    /' -e 'ta' "$c" >"$tmp.c"
	cmp -s "$tmp.c" "$tmp.page" || {
		err "$page: its example differs from $c"
		diff "$tmp.c" "$tmp.page" >&2
	}
done

if ! command -v mandoc >/dev/null 2>&1; then
	[ $fail -eq 0 ] || exit 1
	echo "check-man: mandoc is not installed: lint skipped" >&2
	exit 77
fi
# Lint in the installed layout (man1/, man3/, man7/), where the aliases'
# .so lines resolve.  The one warning an alias page always gets, ".so is
# fragile", is the price of aliases and is not reported.
mkdir "$tmp.lay" || exit 1
for p in $pages; do
	sec=${p##*.}
	mkdir -p "$tmp.lay/man$sec" && cp "$p" "$tmp.lay/man$sec/" || exit 1
done
out=$(cd "$tmp.lay" && mandoc -T lint -W warning man*/* 2>&1 | grep -v 'WARNING: \.so is fragile')
[ -z "$out" ] || err "mandoc lint:
$out"
exit $fail
