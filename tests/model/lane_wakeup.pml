/* The two sleep/wake hand-offs of the local path, checked with spin.
 *
 * 1. Lane -> worker (transport/shm_ring.h, runtime/worker.c): a producer stores tail, full
 *    fence, reads consumer_sleeping and, if it swaps it from 1 to 0, writes the eventfd.
 *    The worker stores consumer_sleeping = 1, full fence, re-reads tail, and only then
 *    blocks on the eventfd (a counter: a write before the block is not lost).
 * 2. Task -> client (runtime/worker.c rt_task_complete, client/client.c chi_wait_timeout):
 *    the worker swaps state to DONE and wakes only if the WAITER bit was set; the client
 *    sets WAITER with a compare-and-swap from SUBMITTED and sleeps on the futex only while
 *    state still equals SUBMITTED|WAITER.
 *
 * Both fences are sequentially consistent, so the model runs the statements in an
 * interleaving order (spin's semantics). Claims: every submitted entry is consumed, the
 * client returns, and no process stays blocked (no invalid end state, no deadlock). */

#define ENTRIES 3

byte tail = 0;          /* published entries */
byte head = 0;          /* consumed entries */
bit sleeping = 0;       /* consumer_sleeping */
byte doorbell = 0;      /* eventfd counter */

/* task state: 0 submitted, 1 submitted|waiter, 2 done */
byte state = 0;
byte futex_wakes = 0;

active proctype producer()
{
	byte i = 0;
	do
	:: i < ENTRIES ->
		tail++;                                   /* store tail; F1 */
		if
		:: atomic { sleeping == 1 -> sleeping = 0 } ->   /* exchange won */
			doorbell++
		:: else -> skip
		fi;
		i++
	:: else -> break
	od
}

active proctype worker()
{
	byte old;
	do
	:: head < tail -> head++                          /* consume */
	:: head == tail && head < ENTRIES ->              /* idle: go to sleep */
		sleeping = 1;                             /* store flag; F2 */
		if
		:: head != tail -> sleeping = 0            /* work arrived: cancel */
		:: else ->
			atomic { doorbell > 0 -> doorbell = 0 };  /* ppoll + read */
			sleeping = 0
		fi
	:: head == ENTRIES -> break
	od;
	/* complete the task: exchange state with DONE, wake if a waiter was seen */
	atomic { old = state; state = 2 };
	if
	:: old == 1 -> futex_wakes++
	:: else -> skip
	fi
}

active proctype client()
{
	do
	:: state == 2 -> break                             /* done */
	:: state == 0 -> atomic { if :: state == 0 -> state = 1 :: else -> skip fi }
	:: state == 1 ->
		/* FUTEX_WAIT(state, 1): blocks only while state == 1; returns on a wake */
		atomic {
			if
			:: state != 1 -> skip
			:: else -> futex_wakes > 0 -> futex_wakes--
			fi
		}
	od
}

ltl all_consumed { <> (head == ENTRIES && state == 2) }
