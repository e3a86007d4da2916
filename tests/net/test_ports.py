import socket

from sipline.net.ports import free_port


def test_a_free_port_can_be_bound_for_udp_and_tcp():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", port))
        tcp.bind(("127.0.0.1", port))


def test_a_span_of_ports_is_free_above_the_one_returned():
    port = free_port(span=2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", port + 1))
        tcp.bind(("127.0.0.1", port + 1))
