/* Moving a lane between workers (runtime/worker.c: claim, unclaim, move_lane,
 * add_client_lanes, RT_MSG_ADOPT), checked with spin.
 *
 * token: the lane's owner (bit 0) and generation (2 * gen), BUSY added while the owner
 * dequeues. A worker holds grants: token values it was given, by ADD_CLIENT (generation 0,
 * taken only if the lane still carries it: it may have moved before the message arrived) or
 * by ADOPT (the generation of that move). It dequeues only after a CAS from its grant to
 * grant|BUSY, and forgets a grant whose claim fails. The control thread moves the lane up
 * to STEALS times, either way (A -> B -> A ...), with a CAS that fails while BUSY, bumping
 * the generation, and sends the new owner an ADOPT. The consumer head lives with the lane
 * (runtime memory), touched only under the claim.
 *
 * Claims: no entry is taken twice, every entry is taken, and a worker never holds two
 * grants of the lane at once. */

#define N 3		/* entries the producer publishes */
#define STEALS 3	/* moves the control thread may make */
#define BUSY 128

/* As implemented: claim the exact grant; dequeue from the lane's own head. */
#define CLAIMABLE(g)	(token == g)
#define HEAD(i)		head
#define SET_HEAD(i, v)	head = v

byte token = 0;		/* owner 0, generation 0 */
byte head = 0;		/* the lane's consumer head (runtime side) */
byte myhead[4];		/* per-grant copies: used only by the old design (mutant) */
byte tail = 0;
byte taken[N];
chan inbox[2] = [4] of { byte, bool };	/* grant, is it ADD_CLIENT */

active proctype producer()
{
	do
	:: tail < N -> tail++
	:: else -> break
	od
}

/* Take a grant from ADD_CLIENT (only if the lane still carries it) or ADOPT. */
inline grant(m, add)
{
	if
	:: add && (token & ~BUSY) != m -> skip	/* moved before the message got here */
	:: else ->
		assert(g[0] != m + 1 && g[1] != m + 1);	/* a grant arrives once */
		if
		:: g[0] == 0 -> g[0] = m + 1; i = 0
		:: else -> assert(g[1] == 0); g[1] = m + 1; i = 1	/* at most two */
		fi;
		myhead[me * 2 + i] = head	/* the old design read the head at grant time */
	fi
}

/* Poll the lane under grant i: claim, take one entry, unclaim; or forget a lost grant. */
inline poll(i)
{
	if
	:: atomic { CLAIMABLE(g[i] - 1) -> token = token | BUSY }	/* claim */
		h = HEAD(me * 2 + i);
		if
		:: h < tail ->
			taken[h]++;
			assert(taken[h] == 1);
			SET_HEAD(me * 2 + i, h + 1)
		:: else -> skip
		fi;
		token = token & ~BUSY					/* unclaim */
	:: else -> g[i] = 0						/* forget it */
	fi
}

proctype worker(byte me)
{
	byte g[2];		/* grants held (token + 1; 0: none) */
	byte m, i, h;
	bool add;
end:	do
	:: inbox[me]?m, add -> grant(m, add)
	:: g[0] != 0 -> poll(0)
	:: g[1] != 0 -> poll(1)
	od
}

active proctype control()
{
	byte n = 0, t, next;
	do
	:: n < STEALS ->
		atomic {
			!(token & BUSY) ->
			t = token;
			next = (t & ~1) + 2 + (1 - (t & 1));	/* other owner, next generation */
			token = next
		};
		inbox[next & 1]!next, false;			/* ADOPT */
		n++
	:: break
	od
}

init
{
	inbox[0]!0, true;	/* ADD_CLIENT: the lane starts on worker 0 */
	run worker(0);
	run worker(1)
}

ltl all_taken { <> (taken[0] == 1 && taken[1] == 1 && taken[2] == 1) }
