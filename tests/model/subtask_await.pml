/* A subtask's completion and its awaiter (runtime/subtask.c: rt_subtask_completed, chi_await,
 * chi_subtask_free), with the record reused for the next subtask, checked with spin.
 *
 * awaiter: 0 nobody yet, 1 DONE, 2 a suspended coroutine. The completer writes rc, outputs and
 * the state word, then swaps the awaiter word to DONE: that swap is its last touch of the
 * record. The handler awaits (fast path: the awaiter word says DONE), frees the record and
 * takes it again for the next subtask. Claims: the completer's swap always lands on its own
 * task (never on the next one in the same record), the awaiter returns only once the outputs
 * are written, and nobody stays suspended. */

#define ROUNDS 3
#define DONE_FAST (awaiter == 1)	/* the decision "done" the fast path takes */

byte gen = 0;		/* which subtask the record holds now */
bool outputs = false;	/* rc and outputs written for the current one */
byte awaiter = 0;
bool woken = false;

proctype completer(byte g)
{
	outputs = true;
	atomic {
		assert(gen == g);	/* the record still holds our subtask */
		if
		:: awaiter == 2 -> woken = true
		:: else -> skip
		fi;
		awaiter = 1
	}
}

active proctype handler()
{
	byte round = 0;
	byte prev;
	do
	:: round < ROUNDS ->
		atomic { gen++; outputs = false; awaiter = 0 };	/* alloc + submit */
		run completer(gen);
		if
		:: DONE_FAST -> skip
		:: else ->
			atomic { prev = awaiter; awaiter = 2 };	/* exchange */
			if
			:: prev == 1 -> awaiter = 1
			:: else -> woken; woken = false		/* suspended until woken */
			fi
		fi;
		assert(outputs);				/* chi_await returns the rc */
		round++						/* chi_subtask_free */
	:: else -> break
	od
}
