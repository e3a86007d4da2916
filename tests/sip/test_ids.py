"""Branches, tags and Call-IDs: unique and unguessable (RFC 3261 §8.1.1.7, §19.3)."""

from __future__ import annotations

import os

from sipline.sip.ids import MAGIC_COOKIE, new_branch, new_call_id, new_tag


def test_a_branch_starts_with_the_magic_cookie_and_carries_80_random_bits():
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE)
    rest = branch[len(MAGIC_COOKIE) :]
    assert len(rest) == 20 and int(rest, 16) >= 0


def test_tags_and_call_ids_are_hex_of_64_and_128_bits():
    assert len(new_tag()) == 16
    call_id = new_call_id("192.0.2.1")
    value, _, host = call_id.partition("@")
    assert len(value) == 32 and host == "192.0.2.1"
    assert "@" not in new_call_id()


def test_ids_never_repeat_and_do_not_follow_a_counter():
    tags = [new_tag() for _ in range(20000)]  # crosses several blocks of the pool
    assert len(set(tags)) == len(tags)
    numbers = [int(tag, 16) for tag in tags[:100]]
    steps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
    assert len(steps) > 90  # a counter would give one step


def test_ids_share_no_prefix_a_stranger_could_learn():
    branches = [new_branch()[len(MAGIC_COOKIE) :] for _ in range(64)]
    assert len({b[:4] for b in branches}) > 32


def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_tag()  # the parent has a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_tag().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_tag()  # with the parent's pool both would take the same slice
