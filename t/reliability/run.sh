#!/usr/bin/env bash
# run.sh [SECONDS]: the long reliability run (make reliability), from the
# build directory. Runs every part at a larger scale within about SECONDS
# (default 600): faults and bad input (as in make check, more connections
# and random rounds), 50 SIGHUPs under load, the soak with the time left,
# then prints one table of figures summed over the run. Fails if any part
# fails; the parts after a failure still run.
set -u
budget=${1:-600}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
figs=$(mktemp /tmp/imgate-rel-figures.XXXXXX)
export REL_FIGURES=$figs
start=$(date +%s)
status=0
run() {
	echo "== $*"
	if ! "$@"; then
		echo "FAIL: $*"
		status=1
	fi
}
REL_SCALE=${REL_SCALE:-4} run "$py" "$here/test_rel_faults.py"
REL_BAD_ROUNDS=${REL_BAD_ROUNDS:-6} REL_CORPUS_MAX=${REL_CORPUS_MAX:-0} run "$py" "$here/test_rel_badinput.py"
run "$py" "$here/test_rel_security.py"
REL_CONNS=${REL_CONNS:-4000} run "$py" "$here/rel_reload.py"
left=$((budget - ($(date +%s) - start) - 60))
[ "$left" -lt 60 ] && left=60
REL_SOAK_SECONDS=${REL_SOAK_SECONDS:-$left} run "$py" "$here/rel_soak.py"
"$py" "$here/rel_table.py" "$figs"
rm -f "$figs"
echo "reliability: $(( $(date +%s) - start ))s, $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
