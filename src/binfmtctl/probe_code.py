"""The probes' machine code: one instruction table per family.

Each encoding sits beside its assembly, so a reader can check it against the
ISA manual; each table states its Linux syscall convention once (number
register; argument registers; trap instruction; write/exit numbers).  Every
table writes ``binfmtctl-probe <arch>\\n`` (the ``length`` word and ``msg``
that :func:`binfmtctl.probes.build` appends) and exits 0.  ``1:``/``1b``/``1f``
are local labels.  How the encodings were made and checked is told in
:mod:`binfmtctl.probes`.
"""

from __future__ import annotations

#: One instruction: its encoding and its assembly.  The encoding is groups of
#: hex digits separated by spaces; each group is one instruction unit written
#: as the ISA manual writes it (most significant digit first) and stored in
#: the probe's code byte order.  x86 units are single bytes.
Insn = tuple[str, str]


# x86-64: rax; rdi rsi rdx; syscall; write 1, exit 60.
X86_64: tuple[Insn, ...] = (
    ("bf 01 00 00 00", "mov edi, 1"),  # fd = stdout
    ("48 8d 35 1c 00 00 00", "lea rsi, [rip + msg]"),  # buf
    ("8b 15 12 00 00 00", "mov edx, [rip + length]"),  # count
    ("b8 01 00 00 00", "mov eax, 1"),  # write
    ("0f 05", "syscall"),
    ("31 ff", "xor edi, edi"),  # status = 0
    ("b8 3c 00 00 00", "mov eax, 60"),  # exit
    ("0f 05", "syscall"),
    ("90", "nop"),  # pad: the length word is 4-aligned
    ("90", "nop"),
)

# i386: eax; ebx ecx edx; int 0x80; write 4, exit 1.  No PC-relative data
# addressing, so call/pop fetches the current address.
I386: tuple[Insn, ...] = (
    ("e8 00 00 00 00", "call 1f"),  # pushes the address of 1:
    ("59", "1: pop ecx"),
    ("81 c1 23 00 00 00", "add ecx, msg - 1b"),  # buf
    ("8b 51 fc", "mov edx, [ecx - 4]"),  # count = length
    ("bb 01 00 00 00", "mov ebx, 1"),  # fd = stdout
    ("b8 04 00 00 00", "mov eax, 4"),  # write
    ("cd 80", "int 0x80"),
    ("31 db", "xor ebx, ebx"),  # status = 0
    ("b8 01 00 00 00", "mov eax, 1"),  # exit
    ("cd 80", "int 0x80"),
)

# AArch64: x8; x0 x1 x2; svc #0; write 64, exit 93 (the generic table).
AARCH64: tuple[Insn, ...] = (
    ("d2800020", "mov x0, #1"),  # fd = stdout
    ("10000101", "adr x1, msg"),  # buf
    ("180000c2", "ldr w2, length"),  # count (PC-relative literal load)
    ("d2800808", "mov x8, #64"),  # write
    ("d4000001", "svc #0"),
    ("d2800000", "mov x0, #0"),  # status = 0
    ("d2800ba8", "mov x8, #93"),  # exit
    ("d4000001", "svc #0"),
)

# ARM (A32, EABI): r7; r0 r1 r2; svc #0; write 4, exit 1.  pc reads 8 ahead.
ARM: tuple[Insn, ...] = (
    ("e3a00001", "mov r0, #1"),  # fd = stdout
    ("e28f1018", "add r1, pc, #24"),  # buf = msg
    ("e59f2010", "ldr r2, [pc, #16]"),  # count = length
    ("e3a07004", "mov r7, #4"),  # write
    ("ef000000", "svc #0"),
    ("e3a00000", "mov r0, #0"),  # status = 0
    ("e3a07001", "mov r7, #1"),  # exit
    ("ef000000", "svc #0"),
)

# RISC-V (RV32I only, so one table serves riscv32 and riscv64): a7; a0 a1 a2;
# ecall; write 64, exit 93.
RISCV: tuple[Insn, ...] = (
    ("00100513", "li a0, 1"),  # fd = stdout
    ("00000597", "1: auipc a1, 0"),  # a1 = 1:
    ("02458593", "addi a1, a1, msg - 1b"),  # buf
    ("ffc5a603", "lw a2, -4(a1)"),  # count = length
    ("04000893", "li a7, 64"),  # write
    ("00000073", "ecall"),
    ("00000513", "li a0, 0"),  # status = 0
    ("05d00893", "li a7, 93"),  # exit
    ("00000073", "ecall"),
)

# LoongArch: a7; a0 a1 a2; syscall 0; write 64, exit 93.  No binutils for it in
# Debian 12: encoded from the LoongArch reference manual (register $zero=0,
# $a0..$a2=4..6, $a7=11) and proven by QEMU.
LOONGARCH64: tuple[Insn, ...] = (
    ("03800404", "ori $a0, $zero, 1"),  # fd = stdout
    ("18000105", "pcaddi $a1, 8"),  # buf = pc + 8*4 = msg
    ("28bff0a6", "ld.w $a2, $a1, -4"),  # count = length
    ("0381000b", "ori $a7, $zero, 64"),  # write
    ("002b0000", "syscall 0"),
    ("03800004", "ori $a0, $zero, 0"),  # status = 0
    ("0381740b", "ori $a7, $zero, 93"),  # exit
    ("002b0000", "syscall 0"),
)

# PowerPC (32 and 64-bit, either byte order): r0; r3 r4 r5; sc; write 4, exit 1.
PPC: tuple[Insn, ...] = (
    ("48000005", "bl 1f"),  # lr = 1:
    ("7c8802a6", "1: mflr r4"),
    ("38840028", "addi r4, r4, msg - 1b"),  # buf
    ("80a4fffc", "lwz r5, -4(r4)"),  # count = length
    ("38600001", "li r3, 1"),  # fd = stdout
    ("38000004", "li r0, 4"),  # write
    ("44000002", "sc"),
    ("38600000", "li r3, 0"),  # status = 0
    ("38000001", "li r0, 1"),  # exit
    ("44000002", "sc"),
)

# s390x: svc's immediate is the number; r2 r3 r4; write 4, exit 1.
S390X: tuple[Insn, ...] = (
    ("a729 0001", "lghi %r2, 1"),  # fd = stdout
    ("c030 0000 000c", "larl %r3, msg"),  # buf
    ("e340 3ffc ff14", "lgf %r4, -4(%r3)"),  # count = length
    ("0a04", "svc 4"),  # write
    ("a729 0000", "lghi %r2, 0"),  # status = 0
    ("0a01", "svc 1"),  # exit
)


def mips(write: int, exit_: int, add: Insn) -> tuple[Insn, ...]:
    """MIPS: v0; a0 a1 a2; syscall.  The ABIs differ in syscall numbers and,
    for n64's 64-bit pointers, in the add."""
    return (
        ("04110001", "bal 1f"),  # ra = 1: (after the delay slot)
        ("24040001", "li $a0, 1"),  # (delay slot) fd = stdout
        add,  # buf
        ("8ca6fffc", "lw $a2, -4($a1)"),  # count = length
        (f"2402{write:04x}", f"li $v0, {write}"),  # write
        ("0000000c", "syscall"),
        ("24040000", "li $a0, 0"),  # status = 0
        (f"2402{exit_:04x}", f"li $v0, {exit_}"),  # exit
        ("0000000c", "syscall"),
    )


MIPS_O32 = mips(4004, 4001, ("27e50020", "1: addiu $a1, $ra, msg - 1b"))
MIPS_N32 = mips(6001, 6058, ("27e50020", "1: addiu $a1, $ra, msg - 1b"))
MIPS_N64 = mips(5001, 5058, ("67e50020", "1: daddiu $a1, $ra, msg - 1b"))


def sparc(trap: int) -> tuple[Insn, ...]:
    """SPARC: g1; o0 o1 o2; ta 0x10 (32-bit ABI) or ta 0x6d (64-bit); write 4, exit 1."""
    return (
        ("40000002", "call 1f"),  # o7 = the address of this call
        ("90102001", "mov 1, %o0"),  # (delay slot) fd = stdout
        ("9203e028", "1: add %o7, msg - 0b, %o1"),  # buf (0b = the call)
        ("d4027ffc", "ld [%o1 - 4], %o2"),  # count = length
        ("82102004", "mov 4, %g1"),  # write
        (f"91d020{trap:02x}", f"ta {trap:#x}"),
        ("90102000", "mov 0, %o0"),  # status = 0
        ("82102001", "mov 1, %g1"),  # exit
        (f"91d020{trap:02x}", f"ta {trap:#x}"),
    )


# m68k: d0; d1 d2 d3; trap #0; write 4, exit 1.
M68K: tuple[Insn, ...] = (
    ("7201", "moveq #1, %d1"),  # fd = stdout
    ("41fa 0018", "lea (msg, %pc), %a0"),
    ("2408", "move.l %a0, %d2"),  # buf
    ("263a 000e", "move.l (length, %pc), %d3"),  # count
    ("7004", "moveq #4, %d0"),  # write
    ("4e40", "trap #0"),
    ("7200", "moveq #0, %d1"),  # status = 0
    ("7001", "moveq #1, %d0"),  # exit
    ("4e40", "trap #0"),
    ("4e71", "nop"),  # pad: the length word is 4-aligned
)

# SuperH: r3; r4 r5 r6; trapa #0x10 + argument count; write 4, exit 1.
SH4: tuple[Insn, ...] = (
    ("e401", "mov #1, r4"),  # fd = stdout
    ("c705", "mova msg, r0"),
    ("6503", "mov r0, r5"),  # buf
    ("d603", "mov.l length, r6"),  # count
    ("e304", "mov #4, r3"),  # write
    ("c313", "trapa #0x13"),
    ("e400", "mov #0, r4"),  # status = 0
    ("e301", "mov #1, r3"),  # exit
    ("c311", "trapa #0x11"),
    ("0009", "nop"),  # pad: the length word is 4-aligned
)

# Alpha: v0 ($0); a0-a2 ($16-$18); callsys; write 4, exit 1.
ALPHA: tuple[Insn, ...] = (
    ("c0200000", "br $1, 1f"),  # $1 = 1:
    ("22210024", "1: lda $17, msg - 1b($1)"),  # buf
    ("a251fffc", "ldl $18, -4($17)"),  # count = length
    ("221f0001", "lda $16, 1($31)"),  # fd = stdout
    ("201f0004", "lda $0, 4($31)"),  # write
    ("00000083", "call_pal 0x83"),  # callsys
    ("221f0000", "lda $16, 0($31)"),  # status = 0
    ("201f0001", "lda $0, 1($31)"),  # exit
    ("00000083", "call_pal 0x83"),  # callsys
)

# PA-RISC: r20; r26 r25 r24; branch to the gateway page, 0x100(%sr2, %r0);
# write 4, exit 1.  A link register holds the privilege level in its low bits.
HPPA: tuple[Insn, ...] = (
    ("e8200000", "bl 1f, %r1"),  # r1 = 1: | privilege level
    ("341a0002", "ldi 1, %r26"),  # (delay slot) fd = stdout
    ("d4201c1e", "1: depi 0, 31, 2, %r1"),  # clear the privilege bits
    ("34390048", "ldo msg - 1b(%r1), %r25"),  # buf
    ("0f391098", "ldw -4(%r25), %r24"),  # count = length
    ("e4008200", "ble 0x100(%sr2, %r0)"),
    ("34140008", "ldi 4, %r20"),  # (delay slot) write
    ("341a0000", "ldi 0, %r26"),  # status = 0
    ("e4008200", "ble 0x100(%sr2, %r0)"),
    ("34140002", "ldi 1, %r20"),  # (delay slot) exit
)

# OpenRISC: r11; r3 r4 r5; l.sys 1; write 64, exit 93.
OR1K: tuple[Insn, ...] = (
    ("04000002", "l.jal 1f"),  # r9 = 1: (after the delay slot)
    ("a8600001", "l.ori r3, r0, 1"),  # (delay slot) fd = stdout
    ("9c890020", "1: l.addi r4, r9, msg - 1b"),  # buf
    ("84a4fffc", "l.lwz r5, -4(r4)"),  # count = length
    ("a9600040", "l.ori r11, r0, 64"),  # write
    ("20000001", "l.sys 1"),
    ("a8600000", "l.ori r3, r0, 0"),  # status = 0
    ("a960005d", "l.ori r11, r0, 93"),  # exit
    ("20000001", "l.sys 1"),
)

# Xtensa: a2; a6 a3 a4; syscall; write 13, exit 118.  call0 has no delay slot
# and targets a 4-aligned address.  Units are whole 24-bit instructions.
XTENSA: tuple[Insn, ...] = (
    ("000005", "call0 1f"),  # a0 = the address after the call (code + 3)
    ("00", ".byte 0"),  # never run: call0 skips to the 4-aligned 1:
    ("1dc032", "1: addi a3, a0, 29"),  # a3 = length (code + 32)
    ("002342", "l32i a4, a3, 0"),  # count
    ("04c332", "addi a3, a3, 4"),  # buf = msg
    ("01a062", "movi a6, 1"),  # fd = stdout
    ("0da022", "movi a2, 13"),  # write
    ("005000", "syscall"),
    ("00a062", "movi a6, 0"),  # status = 0
    ("76a022", "movi a2, 118"),  # exit
    ("005000", "syscall"),
    ("00", ".byte 0"),  # pad: the length word is 4-aligned
)
# Big-endian Xtensa is not a byte swap: an instruction's 4-bit fields sit in
# mirror order (op0 first), wider fields keep their bit order.  Derived by hand
# from the little-endian table above.
XTENSAEB: tuple[Insn, ...] = (
    ("500000", "call0 1f"),
    ("00", ".byte 0"),
    ("230c1d", "1: addi a3, a0, 29"),
    ("243200", "l32i a4, a3, 0"),
    ("233c04", "addi a3, a3, 4"),
    ("260a01", "movi a6, 1"),
    ("220a0d", "movi a2, 13"),
    ("000500", "syscall"),
    ("260a00", "movi a6, 0"),
    ("220a76", "movi a2, 118"),
    ("000500", "syscall"),
    ("00", ".byte 0"),
)

# MicroBlaze: r12; r5 r6 r7; brki r14, 0x8; write 4, exit 1.  Encoded by hand
# (no Debian binutils) from the MicroBlaze reference guide.
MICROBLAZE: tuple[Insn, ...] = (
    ("94c08000", "mfs r6, rpc"),  # r6 = the address of this instruction
    ("30c60028", "addik r6, r6, 40"),  # buf = msg
    ("e8e6fffc", "lwi r7, r6, -4"),  # count = length
    ("30a00001", "addik r5, r0, 1"),  # fd = stdout
    ("31800004", "addik r12, r0, 4"),  # write
    ("b9cc0008", "brki r14, 0x8"),
    ("30a00000", "addik r5, r0, 0"),  # status = 0
    ("31800001", "addik r12, r0, 1"),  # exit
    ("b9cc0008", "brki r14, 0x8"),
)

# Nios II: r2; r4 r5 r6; trap; write 64, exit 93.  Encoded by hand from the
# Nios II processor reference (no Debian binutils).
NIOS2: tuple[Insn, ...] = (
    ("000ae03a", "nextpc r5"),  # r5 = the next instruction's address
    ("29400904", "addi r5, r5, 36"),  # buf = msg
    ("29bfff17", "ldw r6, -4(r5)"),  # count = length
    ("01000044", "movi r4, 1"),  # fd = stdout
    ("00801004", "movi r2, 64"),  # write
    ("003b683a", "trap"),
    ("01000004", "movi r4, 0"),  # status = 0
    ("00801744", "movi r2, 93"),  # exit
    ("003b683a", "trap"),
)

# Hexagon: r6; r0 r1 r2; trap0(#1); write 64, exit 93.  One instruction per
# packet; pc is the packet's address.
HEXAGON: tuple[Insn, ...] = (
    ("7800c020", "{ r0 = #1 }"),  # fd = stdout
    ("6a49d001", "{ r1 = add(pc, #32) }"),  # buf = msg
    ("9781ffe2", "{ r2 = memw(r1 + #-4) }"),  # count = length
    ("7800c806", "{ r6 = #64 }"),  # write
    ("5400c004", "{ trap0(#1) }"),
    ("7800c000", "{ r0 = #0 }"),  # status = 0
    ("7800cba6", "{ r6 = #93 }"),  # exit
    ("5400c004", "{ trap0(#1) }"),
)

# CRIS (v32, QEMU's model): r9; r10 r11 r12; break 13; write 4, exit 1.
# Encoded by hand (no Debian binutils); a 16-bit unit is Rd<<12 | opcode<<4 | Rs.
CRIS: tuple[Insn, ...] = (
    ("a241", "moveq 1, r10"),  # fd = stdout
    ("bd7f 00000012", "lapc length, r11"),  # r11 = this pc + 18 (32-bit immediate)
    ("ce6b", "move.d [r11+], r12"),  # count = length; r11 advances to msg
    ("9244", "moveq 4, r9"),  # write
    ("e93d", "break 13"),
    ("a240", "moveq 0, r10"),  # status = 0
    ("9241", "moveq 1, r9"),  # exit
    ("e93d", "break 13"),
)


# The argv[0] probes.  Each one exits with the first byte of its argv[0] and
# writes nothing: started as ``-binfmtctl`` through an entry with the P flag,
# it exits 45 ('-') where the emulator kept argv[0] and 47 ('/', the start of
# the program's path) where it did not.  At entry every Linux ABI has argc at
# the stack pointer and the argv pointers after it (one word each; SPARC
# leaves a register save area first), so each table is two loads and exit.
ARGV0_X86_64: tuple[Insn, ...] = (
    ("48 8b 44 24 08", "mov rax, [rsp + 8]"),  # argv[0]
    ("0f b6 38", "movzx edi, byte [rax]"),  # status = its first byte
    ("b8 3c 00 00 00", "mov eax, 60"),  # exit
    ("0f 05", "syscall"),
    ("90", "nop"),  # pad to a multiple of 4
)
ARGV0_I386: tuple[Insn, ...] = (
    ("8b 44 24 04", "mov eax, [esp + 4]"),  # argv[0]
    ("0f b6 18", "movzx ebx, byte [eax]"),  # status = its first byte
    ("b8 01 00 00 00", "mov eax, 1"),  # exit
    ("cd 80", "int 0x80"),
    ("90", "nop"),  # pad to a multiple of 4
    ("90", "nop"),
)
ARGV0_AARCH64: tuple[Insn, ...] = (
    ("f94007e1", "ldr x1, [sp, #8]"),  # argv[0]
    ("39400020", "ldrb w0, [x1]"),  # status = its first byte
    ("d2800ba8", "mov x8, #93"),  # exit
    ("d4000001", "svc #0"),
)
ARGV0_ARM: tuple[Insn, ...] = (
    ("e59d1004", "ldr r1, [sp, #4]"),  # argv[0]
    ("e5d10000", "ldrb r0, [r1]"),  # status = its first byte
    ("e3a07001", "mov r7, #1"),  # exit
    ("ef000000", "svc #0"),
)
ARGV0_RISCV32: tuple[Insn, ...] = (
    ("00412583", "lw a1, 4(sp)"),  # argv[0]
    ("0005c503", "lbu a0, 0(a1)"),  # status = its first byte
    ("05d00893", "li a7, 93"),  # exit
    ("00000073", "ecall"),
)
ARGV0_RISCV64: tuple[Insn, ...] = (
    ("00813583", "ld a1, 8(sp)"),  # argv[0]
    *ARGV0_RISCV32[1:],
)
ARGV0_PPC: tuple[Insn, ...] = (
    ("80810004", "lwz r4, 4(r1)"),  # argv[0]
    ("88640000", "lbz r3, 0(r4)"),  # status = its first byte
    ("38000001", "li r0, 1"),  # exit
    ("44000002", "sc"),
)
ARGV0_PPC64: tuple[Insn, ...] = (
    ("e8810008", "ld r4, 8(r1)"),  # argv[0]
    *ARGV0_PPC[1:],
)
ARGV0_S390X: tuple[Insn, ...] = (
    ("e310 f008 0004", "lg %r1, 8(%r15)"),  # argv[0]
    ("e320 1000 0090", "llgc %r2, 0(%r1)"),  # status = its first byte
    ("0a01", "svc 1"),  # exit
    ("0700", "nopr"),  # pad to a multiple of 4
)
ARGV0_MIPS_O32: tuple[Insn, ...] = (
    ("8fa50004", "lw $a1, 4($sp)"),  # argv[0]
    ("90a40000", "lbu $a0, 0($a1)"),  # status = its first byte
    ("24020fa1", "li $v0, 4001"),  # exit
    ("0000000c", "syscall"),
)
ARGV0_MIPS_N32: tuple[Insn, ...] = (
    ("8fa50004", "lw $a1, 4($sp)"),  # argv[0] (n32 pointers are 32-bit)
    ("90a40000", "lbu $a0, 0($a1)"),
    ("240217aa", "li $v0, 6058"),  # exit
    ("0000000c", "syscall"),
)
ARGV0_MIPS_N64: tuple[Insn, ...] = (
    ("dfa50008", "ld $a1, 8($sp)"),  # argv[0]
    ("90a40000", "lbu $a0, 0($a1)"),
    ("240213c2", "li $v0, 5058"),  # exit
    ("0000000c", "syscall"),
)
# SPARC: 16 register-window words sit below argc (V9 adds the 2047 stack bias).
ARGV0_SPARC: tuple[Insn, ...] = (
    ("d203a044", "ld [%sp + 68], %o1"),  # argv[0]
    ("d00a4000", "ldub [%o1], %o0"),  # status = its first byte
    ("82102001", "mov 1, %g1"),  # exit
    ("91d02010", "ta 0x10"),
)
ARGV0_SPARC64: tuple[Insn, ...] = (
    ("d25ba887", "ldx [%sp + 2047 + 136], %o1"),  # argv[0]
    ("d00a4000", "ldub [%o1], %o0"),
    ("82102001", "mov 1, %g1"),  # exit
    ("91d0206d", "ta 0x6d"),
)
ARGV0_M68K: tuple[Insn, ...] = (
    ("206f 0004", "move.l (4, %sp), %a0"),  # argv[0]
    ("7200", "moveq #0, %d1"),
    ("1210", "move.b (%a0), %d1"),  # status = its first byte
    ("7001", "moveq #1, %d0"),  # exit
    ("4e40", "trap #0"),
)
ARGV0_SH4: tuple[Insn, ...] = (
    ("51f1", "mov.l @(4, r15), r1"),  # argv[0]
    ("6410", "mov.b @r1, r4"),  # status = its first byte (the kernel keeps 8 bits)
    ("e301", "mov #1, r3"),  # exit
    ("c311", "trapa #0x11"),
)
ARGV0_ALPHA: tuple[Insn, ...] = (
    ("a63e0008", "ldq $17, 8($30)"),  # argv[0]
    ("2a110000", "ldbu $16, 0($17)"),  # status = its first byte
    ("201f0001", "lda $0, 1($31)"),  # exit
    ("00000083", "call_pal 0x83"),  # callsys
)
ARGV0_LOONGARCH64: tuple[Insn, ...] = (
    ("28c02065", "ld.d $a1, $sp, 8"),  # argv[0]
    ("2a0000a4", "ld.bu $a0, $a1, 0"),  # status = its first byte
    ("0381740b", "ori $a7, $zero, 93"),  # exit
    ("002b0000", "syscall 0"),
)
ARGV0_OR1K: tuple[Insn, ...] = (
    ("84810004", "l.lwz r4, 4(r1)"),  # argv[0]
    ("8c640000", "l.lbz r3, 0(r4)"),  # status = its first byte
    ("a960005d", "l.ori r11, r0, 93"),  # exit
    ("20000001", "l.sys 1"),
)
ARGV0_MICROBLAZE: tuple[Insn, ...] = (
    ("e8c10004", "lwi r6, r1, 4"),  # argv[0]
    ("e0a60000", "lbui r5, r6, 0"),  # status = its first byte
    ("31800001", "addik r12, r0, 1"),  # exit
    ("b9cc0008", "brki r14, 0x8"),
)
ARGV0_NIOS2: tuple[Insn, ...] = (
    ("d9400117", "ldw r5, 4(sp)"),  # argv[0]
    ("29000003", "ldbu r4, 0(r5)"),  # status = its first byte
    ("00801744", "movi r2, 93"),  # exit
    ("003b683a", "trap"),
)
ARGV0_HEXAGON: tuple[Insn, ...] = (
    ("919dc021", "{ r1 = memw(r29 + #4) }"),  # argv[0]
    ("9121c000", "{ r0 = memub(r1 + #0) }"),  # status = its first byte
    ("7800cba6", "{ r6 = #93 }"),  # exit
    ("5400c004", "{ trap0(#1) }"),
)
# PA-RISC: the stack grows upwards; the loader passes argv in r24 instead.
ARGV0_HPPA: tuple[Insn, ...] = (
    ("4b190000", "ldw 0(%r24), %r25"),  # argv[0]
    ("433a0000", "ldb 0(%r25), %r26"),  # status = its first byte
    ("e4008200", "ble 0x100(%sr2, %r0)"),
    ("34140002", "ldi 1, %r20"),  # (delay slot) exit
)
# CRIS: pop argc, pop argv[0]; move.b sets the low byte of r10, all that an
# exit status keeps.
ARGV0_CRIS: tuple[Insn, ...] = (
    ("ae6e", "move.d [sp+], r10"),  # argc
    ("be6e", "move.d [sp+], r11"),  # argv[0]
    ("aa4b", "move.b [r11], r10"),  # status = its first byte
    ("9241", "moveq 1, r9"),  # exit
    ("e93d", "break 13"),
    ("050f", "nop"),  # pad to a multiple of 4
)
ARGV0_XTENSA: tuple[Insn, ...] = (
    ("012132", "l32i a3, a1, 4"),  # argv[0]
    ("000362", "l8ui a6, a3, 0"),  # status = its first byte
    ("76a022", "movi a2, 118"),  # exit
    ("005000", "syscall"),
)
ARGV0_XTENSAEB: tuple[Insn, ...] = (
    ("231201", "l32i a3, a1, 4"),
    ("263000", "l8ui a6, a3, 0"),
    ("220a76", "movi a2, 118"),
    ("000500", "syscall"),
)
