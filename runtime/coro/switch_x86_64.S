/* ctx_switch(void **save_sp, void *load_sp), System V x86-64.
 * Saves the callee-saved registers, MXCSR and the x87 control word on the current stack,
 * stores the stack pointer in *save_sp, switches to load_sp and restores the same set from
 * there. A new context is prepared by coro.c so that the final `ret` lands in
 * ctx_trampoline with fn in r12 and arg in r13. */
	.text
	.globl	ctx_switch
	.hidden	ctx_switch
	.type	ctx_switch, @function
ctx_switch:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	ctx_switch, .-ctx_switch

	.globl	ctx_trampoline
	.hidden	ctx_trampoline
	.type	ctx_trampoline, @function
ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r13, %rdi
	callq	*%r12
	ud2			/* the entry function never returns */
	.cfi_endproc
	.size	ctx_trampoline, .-ctx_trampoline

	.section .note.GNU-stack,"",@progbits
