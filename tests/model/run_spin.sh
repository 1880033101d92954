#!/usr/bin/env bash
# Verify tests/model/lane_wakeup.pml with spin: safety (no invalid end state: nobody blocked
# forever, i.e. no lost wake-up) and the liveness claim that everything completes.
# Exits 77 (skipped) when spin or a C compiler is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "SKIP: spin is not installed (apt-get install spin)"; exit 77; }
command -v cc >/dev/null || { echo "SKIP: no C compiler for spin's verifier"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cp "$here"/*.pml .
# verify MODEL: prints spin's summary, returns 0 when both checks find no error.
verify() {
	rm -f pan pan.* pan_*
	spin -a "$1" >/dev/null
	cc -O2 -DSAFETY -DNOCLAIM -o pan_safety pan.c    # invalid end states = blocked forever
	local s l
	s=$(./pan_safety -n)
	cc -O2 -o pan_live pan.c
	l=$(./pan_live -a -f -n)                          # weak fairness, acceptance cycles
	grep -E "errors:" <<<"$s" | sed 's/^/  safety:   /'
	grep -E "errors:" <<<"$l" | sed 's/^/  liveness: /'
	# Here-strings, not `echo | grep -q`: under pipefail, grep -q quitting early kills echo
	# with SIGPIPE and a passing check reads as a failure.
	grep -q "errors: 0" <<<"$s" && grep -q "errors: 0" <<<"$l"
}
echo "model as implemented:"
verify lane_wakeup.pml || { echo "FAIL: the hand-off can lose a wake-up or deadlock"; exit 1; }
# The check must be able to fail: drop the worker's re-check after announcing sleep (the
# classic lost wake-up) and expect spin to find it.
sed 's/:: head != tail -> sleeping = 0 .*$/:: false -> skip/' lane_wakeup.pml > broken.pml
grep -q "false -> skip" broken.pml || { echo "FAIL: mutation did not apply"; exit 1; }
echo "model without the re-check (must fail):"
if verify broken.pml; then echo "FAIL: spin did not catch the lost wake-up"; exit 1; fi
echo "PASS: no lost wake-up, no deadlock, everything completes; the broken variant is caught"

echo "lane stealing as implemented:"
verify lane_steal.pml || { echo "FAIL: a moved lane can lose or repeat an entry"; exit 1; }
# Mutant: the design before generations and the runtime-side head (a claim by owner only,
# each grant with the head it read when granted): a lane moved A -> B -> A is polled again by
# A's stale grant from its stale head, and entries run twice.
sed -e 's/^#define CLAIMABLE(g)\t(token == g)/#define CLAIMABLE(g)\t(!(token \& BUSY) \&\& (token \& 1) == ((g) \& 1))/' \
    -e 's/^#define HEAD(i)\t\thead/#define HEAD(i)\t\tmyhead[i]/' \
    -e 's/^#define SET_HEAD(i, v)\thead = v/#define SET_HEAD(i, v)\tmyhead[i] = v; head = v/' \
    lane_steal.pml > steal_broken.pml
[ "$(grep -c 'myhead\[i\]\|(token & 1) ==' steal_broken.pml)" -eq 3 ] \
	|| { echo "FAIL: mutation did not apply"; exit 1; }
echo "lane stealing with owner-only claims and heads read at grant time (must fail):"
if verify steal_broken.pml; then echo "FAIL: spin did not catch the double take"; exit 1; fi
echo "PASS: a lane moved back and forth loses and repeats nothing; the old design is caught"

echo "subtask completion as implemented:"
verify subtask_await.pml || { echo "FAIL: a completion can land in a reused record"; exit 1; }
# Mutant: the awaiter decides "done" from the state word, written before the awaiter swap
# (the code before this model): the completer's late swap then marks the next subtask done.
sed 's/^#define DONE_FAST (awaiter == 1)/#define DONE_FAST outputs/' subtask_await.pml \
	> subtask_broken.pml
grep -q "^#define DONE_FAST outputs" subtask_broken.pml || { echo "FAIL: mutation did not apply"; exit 1; }
echo "subtask completion decided by the state word (must fail):"
if verify subtask_broken.pml; then echo "FAIL: spin did not catch the reuse"; exit 1; fi
echo "PASS: a subtask's completion never lands in the next task of its record"
