"""A socket filter (classic BPF, SO_ATTACH_FILTER) that drops datagrams of given
IPv4 sources in the kernel, before they take room in the socket's buffer.

A flood from one banned source at the rate a machine can send fills the UDP
buffer faster than any Python reader empties it, and the kernel then drops
datagrams of every source alike: the node's phones with the flood. So the
sources the guard has seen sending while banned (an address and a port, and
never a trusted peer: those pass the guard) are dropped here instead, at a
cost of a few instructions per datagram in the kernel.

The program loads the IPv4 source address (and on an IPv6 socket first checks
that the datagram is IPv4), compares it with each address in turn and, on a
match, compares the UDP source port with that address's ports. Classic BPF
jumps forward at most 255 instructions, so an address's ports go in groups.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections import defaultdict
from collections.abc import Iterable, Sequence

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS
PORTS_PER_GROUP = 120  # 2 instructions a port: the jump over a group stays under 256
_NET = -0x100000  # SKF_NET_OFF: offsets from the network (IP) header
_LD_W, _LD_H, _LD_B = 0x20, 0x28, 0x30  # BPF_LD | BPF_W/H/B | BPF_ABS
_AND, _JEQ, _RET = 0x54, 0x15, 0x06  # BPF_ALU|BPF_AND|BPF_K, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
_ACCEPT, _DROP = 0xFFFFFFFF, 0

Instruction = tuple[int, int, int, int]  # code, jump if true, jump if false, k


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def program(sources: Iterable[tuple[str, int]], ipv6_socket: bool = False) -> list[Instruction]:
    """Instructions that drop datagrams from ``sources`` (IPv4 address, UDP port);
    those beyond the kernel's limit on a program's length are left out."""
    ports: dict[int, list[int]] = defaultdict(list)
    for host, port in sources:
        ports[struct.unpack("!I", socket.inet_aton(host))[0]].append(port)
    load_source = (_LD_W, 0, 0, (_NET + 12) & 0xFFFFFFFF)
    code: list[Instruction] = []
    if ipv6_socket:  # an IPv6 datagram is not ours to judge: accept it
        code += [(_LD_B, 0, 0, _NET & 0xFFFFFFFF), (_AND, 0, 0, 0xF0), (_JEQ, 1, 0, 0x40)]
        code.append((_RET, 0, 0, _ACCEPT))
    code.append(load_source)
    for address, group_ports in ports.items():
        for at in range(0, len(group_ports), PORTS_PER_GROUP):
            group = group_ports[at : at + PORTS_PER_GROUP]
            if len(code) + 2 * len(group) + 4 > MAX_INSTRUCTIONS:
                break
            code.append((_JEQ, 0, 2 * len(group) + 2, address))  # else past the group
            code.append((_LD_H, 0, 0, 0))  # the UDP header's source port
            for port in group:
                code += [(_JEQ, 0, 1, port), (_RET, 0, 0, _DROP)]
            code.append(load_source)
    code.append((_RET, 0, 0, _ACCEPT))
    return code


def attach(sock: socket.socket, code: list[Instruction]) -> None:
    """Replace ``sock``'s filter with ``code`` (the kernel copies it)."""
    instructions = (_Insn * len(code))(*(_Insn(*insn) for insn in code))
    prog = _Program(len(code), instructions)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


def drop(sock: socket.socket, sources: Sequence[tuple[str, int]], ipv6_socket: bool) -> int:
    """Have ``sock`` drop as many of ``sources`` as the kernel takes (its memory for a
    socket's options, net.core.optmem_max, bounds a program before its length does);
    how many it drops. OSError if it takes none."""
    count = len(sources)
    while True:
        try:
            attach(sock, program(sources[:count], ipv6_socket))
            return count
        except OSError as exc:
            if exc.errno != errno.ENOMEM or count <= 1:
                raise
            count //= 2


def detach(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError:  # none attached
        pass
