#!/bin/sh
# Manual page lint: every page in the source tree must pass
# `mandoc -T lint -W warning` (style notes are advice, not failures),
# render with man(1) without a groff warning, carry its own name and
# section in .Dt/.TH, and refer only to imgate pages that exist.
# Run by `make check` (srcdir set by automake) or by hand.
set -u

srcdir=${srcdir:-$(dirname "$0")/..}

if ! command -v mandoc >/dev/null 2>&1 || ! command -v man >/dev/null 2>&1; then
	echo "SKIP: mandoc or man not installed (Debian packages mandoc, man-db)"
	exit 77
fi

out=$(mktemp /tmp/imgate-test-man.XXXXXX)

fails=0
fail() {
	echo "FAIL: $*"
	fails=$((fails + 1))
}

# Pages are the files named NAME.N in the source tree whose text starts
# like a manual page, and NAME.N.in templates, substituted here with the
# paths of a system install (/etc, /run, /var) as a package would build
# them. Build trees inside the source tree (build*/, distcheck's _build/)
# hold generated copies and are skipped.
tmpl=$(mktemp -d /tmp/imgate-test-man-pages.XXXXXX)
trap 'rm -f "$out"; rm -rf "$tmpl"' EXIT INT TERM
for d in "$srcdir"/*/; do
	case $(basename "$d") in
	_* | build* | autom4te.cache | m4 | imgate-*) continue ;;
	esac
	find "$d" -name node_modules -prune -o \
		-type f \( -name '*.[1-9]' -o -name '*.[1-9].in' \) -print
done | sort >"$out.list"
pages=
while read -r f; do
	case $f in
	*.in)
		p=$tmpl/$(basename "$f" .in)
		sed -e 's|@sysconfdir@|/etc|g' -e 's|@runstatedir@|/run|g' \
			-e 's|@localstatedir@|/var|g' "$f" >"$p"
		;;
	*)
		# Generated next to its template by a build in the source tree.
		[ -f "$f.in" ] && continue
		p=$f
		;;
	esac
	pages="$pages $p"
done <"$out.list"
rm -f "$out.list"
n=0
for p in $pages; do
	head -n 5 "$p" | grep -q '^\.\(Dd\|TH\|Dt\)' || continue
	n=$((n + 1))
	base=$(basename "$p")
	name=${base%.*}
	sect=${base##*.}

	if ! mandoc -T lint -W warning "$p" >"$out" 2>&1; then
		fail "$base: mandoc lint"
		cat "$out"
	elif [ -s "$out" ]; then
		fail "$base: mandoc lint"
		cat "$out"
	fi

	# man-db passes groff's warnings to stderr; the page goes nowhere.
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$p" 2>"$out" >/dev/null
	if [ -s "$out" ]; then
		fail "$base: man -l warns"
		cat "$out"
	fi

	# Title: .Dt NAME N (mdoc) or .TH NAME N (man), case-insensitive.
	title=$(sed -n 's/^\.\(Dt\|TH\)[[:space:]]\{1,\}\([^[:space:]]*\)[[:space:]]\{1,\}\([^[:space:]]*\).*/\2 \3/p' "$p" | head -n 1)
	want=$(echo "$name $sect" | tr '[:lower:]' '[:upper:]')
	got=$(echo "$title" | tr -d '"' | tr '[:lower:]' '[:upper:]')
	[ "$got" = "$want" ] || fail "$base: title \"$title\", expected \"$name $sect\""

	# Cross references to our own pages must resolve.
	for ref in $(sed -n 's/^\.Xr \(imgate[^[:space:]]*\) \([1-9]\).*/\1.\2/p' "$p" | sort -u); do
		echo "$pages" | tr ' ' '\n' | grep -q "/$ref\$" || fail "$base: .Xr to missing page $ref"
	done
done

# imgate.conf(5) documents every setting of the sample configs (which
# list every setting the daemons know), in the right section.
keys_of_conf() {
	awk '/^\[[a-z_]+\]/ { gsub(/[][]/, ""); s = $1; next }
	     match($0, /^[;#]?[a-z_]+[ \t]*=/) {
		k = substr($0, 1, RLENGTH); gsub(/[;# \t=]/, "", k); print s "." k }' "$1" | sort -u
}
keys_of_man() {
	awk -v part="$2" '/^\.Sh IMGATE-COMET.CONF/ { in_part = (part == "comet"); next }
	     /^\.Sh IMGATE-LOGIC.CONF/ { in_part = (part == "logic"); next }
	     /^\.Sh / { in_part = 0 }
	     in_part && /^\.Ss \[/ { s = $2; gsub(/[][]/, "", s); next }
	     in_part && /^\.It Ic .* Li =/ {
		line = $0; sub(/^\.It Ic /, "", line); sub(/ Li =.*/, "", line)
		n = split(line, ks, / , /)
		for (i = 1; i <= n; i++) print s "." ks[i] }' "$1" | sort -u
}
confman=$srcdir/man/imgate.conf.5.in
for d in comet logic; do
	sample=$srcdir/etc/imgate-$d.conf
	[ -f "$sample" ] && [ -f "$confman" ] || { fail "$sample or $confman missing"; continue; }
	keys_of_conf "$sample" >"$out.conf"
	keys_of_man "$confman" $d >"$out.man"
	[ -s "$out.conf" ] || fail "no settings found in $sample"
	for k in $(comm -23 "$out.conf" "$out.man"); do
		fail "imgate.conf(5) does not document [${k%%.*}] ${k#*.} of imgate-$d.conf"
	done
	for k in $(comm -13 "$out.conf" "$out.man"); do
		fail "imgate.conf(5) documents [${k%%.*}] ${k#*.}, unknown to imgate-$d.conf"
	done
	rm -f "$out.conf" "$out.man"
done

if [ $n -lt 6 ]; then
	fail "found $n manual pages under $srcdir, expected at least 6"
fi
echo "$n pages checked, $fails failure(s)"
[ $fails -eq 0 ]
