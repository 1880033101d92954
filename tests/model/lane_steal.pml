/* Moving a lane from a stuck worker to another (runtime/worker.c: claim, unclaim,
 * rt_steal_from_stalled), checked with spin.
 *
 * token: the consuming worker's index, BUSY (2) added while it dequeues. A worker dequeues
 * only after a CAS from "mine" to "mine|BUSY"; the control thread moves the lane with a CAS
 * from A to B, which fails while A is BUSY, and then tells B (adopt), which starts from the
 * shared head. Claims: no entry is taken twice, and every entry is taken once. */

#define N 4
#define BUSY 2

byte token = 0;		/* worker 0 owns the lane at first */
byte head = 0;		/* shared consumer index */
byte tail = 0;		/* producer index */
byte taken[N];		/* how often each entry was consumed */
bool adopted = false;	/* worker 1 has been told to take the lane over */

active proctype producer()
{
	do
	:: tail < N -> tail++
	:: else -> break
	od
}

/* One consumer; me = 0 (the original owner) or 1 (the one that may adopt). */
proctype worker(byte me)
{
	byte h;
	do
	:: (me == 0 || adopted) && head < N ->
		if
		:: atomic { token == me -> token = me + BUSY }	/* claim */
			h = head;
			if
			:: h < tail ->
				taken[h]++;
				assert(taken[h] == 1);
				head = h + 1
			:: else -> skip
			fi;
			token = me				/* unclaim */
		:: atomic { token != me && token != me + BUSY -> skip } /* lost it */
			if
			:: me == 0 -> break
			:: else -> skip
			fi
		fi
	:: head == N -> break
	od
}

active proctype control()
{
	/* Steal at most once, whenever it likes; the CAS fails while worker 0 dequeues. */
	if
	:: atomic { token == 0 -> token = 1 }; adopted = true
	:: skip
	fi
}

init
{
	run worker(0);
	run worker(1)
}

ltl all_taken { <> (taken[0] == 1 && taken[1] == 1 && taken[2] == 1 && taken[3] == 1) }
