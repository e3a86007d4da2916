"""Digest authentication: RFC 3261 §22, RFC 7616, RFC 8760."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipline.sip.auth import (
    MD5,
    SHA256,
    SHA512_256,
    AuthResult,
    Credentials,
    DigestAuth,
    NonceCounts,
    NonceFactory,
    NonceState,
    compute_ha1,
    compute_response,
    is_digest,
    parse_auth_header,
)
from sipline.sip.errors import ParseError

SECRET = b"0123456789abcdef-test-secret"
REALM = "example.com"
NOW = 1_700_000_000.0
PASSWORD = "zanzibar"


def hashed(algorithm: str, text: str) -> str:
    """A client's hash, computed apart from the module under test."""
    name = {MD5: "md5", SHA256: "sha256", SHA512_256: "sha512_256"}[algorithm]
    return hashlib.new(name, text.encode()).hexdigest()


def client_answer(
    challenge: str,
    *,
    username: str = "bob",
    password: str = PASSWORD,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    qop: bool = True,
) -> str:
    """What a UAC sends back: Authorization value answering one challenge value."""
    scheme, params = parse_auth_header(challenge)
    assert scheme == "Digest"
    algorithm, realm, nonce = params["algorithm"], params["realm"], params["nonce"]
    ha1 = hashed(algorithm, f"{username}:{realm}:{password}")
    ha2 = hashed(algorithm, f"{method}:{uri}")
    head = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f"algorithm={algorithm}"
    )
    if not qop:
        return f'{head}, response="{hashed(algorithm, f"{ha1}:{nonce}:{ha2}")}"'
    cnonce, nc = "0a4f113b", "00000001"
    response = hashed(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return f'{head}, response="{response}", cnonce="{cnonce}", qop=auth, nc={nc}'


@pytest.fixture
def auth() -> DigestAuth:
    return DigestAuth(REALM, NonceFactory(SECRET, lifetime=300.0))


def stored_ha1(creds: Credentials) -> str | None:
    """The subscriber store: only bob is provisioned, under every algorithm."""
    if creds.username != "bob":
        return None
    return compute_ha1("bob", REALM, PASSWORD, creds.algorithm)


def answered(auth: DigestAuth, index: int = 0, **client: object) -> Credentials:
    challenge = auth.challenge(NOW)[index]
    return Credentials.from_header(client_answer(challenge, **client))  # type: ignore[arg-type]


# --- RFC 7616 §3.9.1 example -------------------------------------------------

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_RESPONSES = {
    MD5: "8ca523f5e9506fed4657c9700eebdbec",
    SHA256: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


@pytest.mark.parametrize("algorithm", [MD5, SHA256])
def test_response_matches_the_rfc_7616_example(algorithm: str) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = compute_response(
        ha1,
        RFC7616_NONCE,
        "GET",
        "/dir/index.html",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )
    assert response == RFC7616_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", [MD5, SHA256])
def test_rfc_7616_example_authorization_parses(algorithm: str) -> None:
    header = (
        'Digest username="Mufasa",\r\n realm="http-auth@example.org",\r\n'
        ' uri="/dir/index.html",\r\n'
        f" algorithm={algorithm},\r\n"
        f' nonce="{RFC7616_NONCE}",\r\n nc=00000001,\r\n cnonce="{RFC7616_CNONCE}",\r\n'
        f' qop=auth,\r\n response="{RFC7616_RESPONSES[algorithm]}",\r\n'
        f' opaque="{RFC7616_OPAQUE}"'
    )
    creds = Credentials.from_header(header)
    assert (creds.username, creds.realm, creds.uri) == (
        "Mufasa",
        "http-auth@example.org",
        "/dir/index.html",
    )
    assert (creds.algorithm, creds.qop, creds.nc, creds.cnonce, creds.opaque) == (
        algorithm,
        "auth",
        "00000001",
        RFC7616_CNONCE,
        RFC7616_OPAQUE,
    )
    assert creds.response == RFC7616_RESPONSES[algorithm]


def test_ha1_is_the_hex_hash_of_user_realm_password() -> None:
    assert compute_ha1("bob", REALM, PASSWORD) == hashed(MD5, f"bob:{REALM}:{PASSWORD}")
    assert compute_ha1("bob", REALM, PASSWORD, SHA256) == hashed(SHA256, f"bob:{REALM}:{PASSWORD}")
    assert compute_ha1("bob", REALM, PASSWORD, "sha-256") == compute_ha1(
        "bob", REALM, PASSWORD, SHA256
    )


def test_ha1_for_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_ha1("bob", REALM, PASSWORD, "SHA-1")


# --- challenge -----------------------------------------------------------------


def test_challenge_offers_one_value_per_algorithm_sha256_first(auth: DigestAuth) -> None:
    values = [parse_auth_header(v) for v in auth.challenge(NOW)]
    assert [scheme for scheme, _ in values] == ["Digest", "Digest"]
    assert [params["algorithm"] for _, params in values] == [SHA256, MD5]
    for _, params in values:
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert "stale" not in params
    assert values[0][1]["nonce"] == values[1][1]["nonce"]


def test_challenge_values_are_well_formed_sip() -> None:
    auth = DigestAuth(REALM, NonceFactory(SECRET), algorithms=(SHA256,))
    [value] = auth.challenge(NOW)
    nonce = parse_auth_header(value)[1]["nonce"]
    assert value == f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256, qop="auth"'


def test_challenge_after_a_stale_nonce_says_so(auth: DigestAuth) -> None:
    for value in auth.challenge(NOW, stale=True):
        assert parse_auth_header(value)[1]["stale"] == "true"


def test_challenge_quotes_a_realm_with_quotes() -> None:
    auth = DigestAuth('the "lab", 2', NonceFactory(SECRET))
    assert parse_auth_header(auth.challenge(NOW)[0])[1]["realm"] == 'the "lab", 2'


def test_digest_auth_refuses_an_unknown_or_empty_algorithm_list() -> None:
    with pytest.raises(ValueError):
        DigestAuth(REALM, NonceFactory(SECRET), algorithms=("SHA-1",))
    with pytest.raises(ValueError):
        DigestAuth(REALM, NonceFactory(SECRET), algorithms=())


# --- verify: a SIP REGISTER end to end -----------------------------------------


@pytest.mark.parametrize("index, algorithm", [(0, SHA256), (1, MD5)])
def test_register_answered_with_the_right_password_is_ok(
    auth: DigestAuth, index: int, algorithm: str
) -> None:
    creds = answered(auth, index)
    assert creds.algorithm == algorithm
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW + 10) is AuthResult.OK


def test_register_with_sha_512_256_is_ok() -> None:
    auth = DigestAuth(REALM, NonceFactory(SECRET), algorithms=(SHA512_256, SHA256))
    creds = answered(auth, 0)
    assert creds.algorithm == SHA512_256
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.OK


def test_answer_without_qop_is_accepted_for_rfc_2069_clients(auth: DigestAuth) -> None:
    creds = answered(auth, 1, qop=False)
    assert creds.qop is None
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.OK


def test_proxy_authorization_for_an_invite_is_ok(auth: DigestAuth) -> None:
    creds = answered(auth, 0, method="INVITE", uri="sip:alice@example.com")
    assert auth.verify(creds, "INVITE", stored_ha1(creds), NOW) is AuthResult.OK


def test_response_for_another_method_is_bad(auth: DigestAuth) -> None:
    creds = answered(auth, 0, method="INVITE")
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_RESPONSE


def test_upper_case_hex_response_is_accepted(auth: DigestAuth) -> None:
    creds = answered(auth, 0)
    creds.response = creds.response.upper()
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.OK


def test_wrong_password_is_a_bad_response(auth: DigestAuth) -> None:
    creds = answered(auth, 0, password="guess")
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_RESPONSE


def test_unknown_user(auth: DigestAuth) -> None:
    creds = answered(auth, 0, username="mallory")
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.UNKNOWN_USER


def test_credentials_for_another_realm_are_refused(auth: DigestAuth) -> None:
    other = DigestAuth("other.example.net", NonceFactory(SECRET))
    creds = answered(other, 0)
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.WRONG_REALM


def test_nonce_from_another_realm_is_refused(auth: DigestAuth) -> None:
    other = DigestAuth("other.example.net", auth.nonces)
    creds = answered(auth, 0)
    creds.nonce = parse_auth_header(other.challenge(NOW)[0])[1]["nonce"]
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_NONCE


def test_algorithm_not_offered_is_refused() -> None:
    sha_only = DigestAuth(REALM, NonceFactory(SECRET), algorithms=(SHA256,))
    both = DigestAuth(REALM, sha_only.nonces)
    creds = answered(both, 1)
    assert creds.algorithm == MD5
    assert sha_only.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_ALGORITHM
    creds.algorithm = "SHA-1"
    assert sha_only.verify(creds, "REGISTER", "00", NOW) is AuthResult.BAD_ALGORITHM


def test_nonce_past_its_lifetime_is_stale(auth: DigestAuth) -> None:
    creds = answered(auth, 0)
    ha1 = stored_ha1(creds)
    assert auth.verify(creds, "REGISTER", ha1, NOW + 300) is AuthResult.OK
    assert auth.verify(creds, "REGISTER", ha1, NOW + 301) is AuthResult.STALE


def test_stale_is_reported_even_with_a_wrong_password(auth: DigestAuth) -> None:
    # The client re-sends with the fresh nonce; the password is judged then.
    creds = answered(auth, 0, password="guess")
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW + 301) is AuthResult.STALE


def test_altered_nonce_is_bad(auth: DigestAuth) -> None:
    creds = answered(auth, 0)
    ha1 = stored_ha1(creds)
    for i in range(len(creds.nonce)):
        flipped = "A" if creds.nonce[i] != "A" else "B"
        creds_i = answered(auth, 0)
        creds_i.nonce = creds.nonce[:i] + flipped + creds.nonce[i + 1 :]
        assert auth.verify(creds_i, "REGISTER", ha1, NOW) is AuthResult.BAD_NONCE


def test_nonce_made_with_another_secret_is_bad(auth: DigestAuth) -> None:
    forger = DigestAuth(REALM, NonceFactory(b"another-secret-of-16+bytes"))
    creds = answered(forger, 0)
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_NONCE


@pytest.mark.parametrize("qop, cnonce, nc", [("auth-int", "x", "00000001"), ("auth", None, None)])
def test_unusable_qop_is_a_bad_request(
    auth: DigestAuth, qop: str, cnonce: str | None, nc: str | None
) -> None:
    creds = answered(auth, 0)
    creds.qop, creds.cnonce, creds.nc = qop, cnonce, nc
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.BAD_REQUEST


# --- nonces ----------------------------------------------------------------------


def test_nonce_is_valid_within_its_lifetime_then_stale() -> None:
    nonces = NonceFactory(SECRET, lifetime=60.0)
    nonce = nonces.make(NOW)
    assert nonces.check(nonce, NOW) is NonceState.VALID
    assert nonces.check(nonce, NOW + 60) is NonceState.VALID
    assert nonces.check(nonce, NOW + 61) is NonceState.STALE


def test_nonce_from_far_in_the_future_is_stale() -> None:
    nonces = NonceFactory(SECRET, lifetime=60.0)
    assert nonces.check(nonces.make(NOW + 61), NOW) is NonceState.STALE


def test_nonce_is_bound_to_its_realm() -> None:
    nonces = NonceFactory(SECRET)
    nonce = nonces.make(NOW, "a.example.com")
    assert nonces.check(nonce, NOW, "a.example.com") is NonceState.VALID
    assert nonces.check(nonce, NOW, "b.example.com") is NonceState.INVALID


def test_nonce_is_accepted_by_every_node_sharing_the_secret() -> None:
    nonce = NonceFactory(SECRET).make(NOW, REALM)
    assert NonceFactory(SECRET).check(nonce, NOW + 1, REALM) is NonceState.VALID


def test_nonce_is_url_safe_and_short() -> None:
    nonce = NonceFactory(SECRET).make(NOW, REALM)
    assert len(nonce) == 40
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("garbage", ["", "abc", "=" * 40, "A" * 40, "é" * 40, "+" * 40])
def test_garbage_nonce_is_invalid(garbage: str) -> None:
    assert NonceFactory(SECRET).check(garbage, NOW) is NonceState.INVALID


def test_nonce_spelled_with_standard_base64_is_invalid() -> None:
    nonces = NonceFactory(SECRET)
    nonce = next(n for t in range(1000) if set(n := nonces.make(NOW + t)) & set("-_"))
    respelled = nonce.replace("-", "+").replace("_", "/")
    assert nonces.check(respelled, NOW) is NonceState.INVALID


@given(st.text())
def test_check_judges_any_text_as_invalid(text: str) -> None:
    assert NonceFactory(SECRET).check(text, NOW) is NonceState.INVALID


def test_two_nonces_made_in_one_millisecond_differ() -> None:
    nonces = NonceFactory(SECRET)
    assert len({nonces.make(NOW, REALM) for _ in range(100)}) == 100


def test_a_nonce_bound_to_a_source_is_not_ours_from_another() -> None:
    nonces = NonceFactory(SECRET)
    nonce = nonces.make(NOW, REALM, "192.0.2.7")
    assert nonces.check(nonce, NOW, REALM, "192.0.2.7") is NonceState.VALID
    assert nonces.check(nonce, NOW, REALM, "192.0.2.8") is NonceState.INVALID
    assert nonces.check(nonce, NOW, REALM) is NonceState.INVALID
    assert nonces.check(nonces.make(NOW, REALM), NOW, REALM, "192.0.2.7") is NonceState.INVALID


def test_realm_and_source_cannot_be_shifted_into_each_other() -> None:
    nonces = NonceFactory(SECRET)
    nonce = nonces.make(NOW, "example.com1", "92.0.2.7")
    assert nonces.check(nonce, NOW, "example.com", "192.0.2.7") is NonceState.INVALID


def test_nonce_factory_wants_a_real_secret_and_lifetime() -> None:
    with pytest.raises(ValueError):
        NonceFactory(b"short")
    with pytest.raises(ValueError):
        NonceFactory(SECRET, lifetime=0)


# --- nonce counts (RFC 7616 §3.4, §5.5) ----------------------------------------


def counted(limit: int = 1000) -> DigestAuth:
    return DigestAuth(REALM, NonceFactory(SECRET, lifetime=300.0), counts=NonceCounts(300.0, limit))


def with_count(creds: Credentials, nc: int, cnonce: str = "0a4f113b") -> Credentials:
    """The same credentials as the client sends them for its request number ``nc``."""
    ha1 = compute_ha1("bob", REALM, PASSWORD, creds.algorithm)
    count = f"{nc:08x}"
    response = compute_response(ha1, creds.nonce, "REGISTER", creds.uri, algorithm=creds.algorithm,
                                qop="auth", nc=count, cnonce=cnonce)  # fmt: skip
    return Credentials(creds.username, creds.realm, creds.nonce, creds.uri, response,
                       creds.algorithm, cnonce, "auth", count)  # fmt: skip


def test_a_growing_nonce_count_is_accepted() -> None:
    auth = counted()
    creds = answered(auth)
    ha1 = stored_ha1(creds)
    for nc in (1, 2, 3, 7, 0x100):
        assert auth.verify(with_count(creds, nc), "REGISTER", ha1, NOW) is AuthResult.OK


def test_a_reused_or_lower_nonce_count_is_a_replay() -> None:
    auth = counted()
    creds = answered(auth)
    ha1 = stored_ha1(creds)
    assert auth.verify(creds, "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(creds, "REGISTER", ha1, NOW + 240) is AuthResult.REPLAYED
    assert auth.verify(with_count(creds, 5), "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(with_count(creds, 4), "REGISTER", ha1, NOW) is AuthResult.REPLAYED
    assert auth.verify(with_count(creds, 5, "other"), "REGISTER", ha1, NOW) is AuthResult.REPLAYED
    assert auth.verify(with_count(creds, 6), "REGISTER", ha1, NOW) is AuthResult.OK


def test_a_nonce_without_qop_serves_once() -> None:
    auth = counted()
    creds = answered(auth, qop=False)
    ha1 = stored_ha1(creds)
    assert auth.verify(creds, "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(creds, "REGISTER", ha1, NOW + 1) is AuthResult.REPLAYED


def test_each_nonce_is_counted_apart() -> None:
    auth = counted()
    first, second = answered(auth), answered(auth)
    assert first.nonce != second.nonce
    assert auth.verify(first, "REGISTER", stored_ha1(first), NOW) is AuthResult.OK
    assert auth.verify(second, "REGISTER", stored_ha1(second), NOW) is AuthResult.OK


def test_a_wrong_response_is_not_counted() -> None:
    auth = counted(limit=1)
    creds = answered(auth)
    wrong = answered(auth, password="guess")
    assert auth.verify(wrong, "REGISTER", stored_ha1(wrong), NOW) is AuthResult.BAD_RESPONSE
    assert len(auth.counts or ()) == 0
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.OK


def test_a_replay_after_the_lifetime_is_stale_and_its_count_forgotten() -> None:
    counts = NonceCounts(300.0, 1000)
    auth = DigestAuth(REALM, NonceFactory(SECRET, lifetime=300.0), counts=counts)
    creds = answered(auth)
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW) is AuthResult.OK
    assert auth.verify(creds, "REGISTER", stored_ha1(creds), NOW + 301) is AuthResult.STALE
    assert len(counts) == 1
    counts.use("another", 1, NOW + 400, NOW + 400)  # any use sweeps what is past
    assert len(counts) == 1


def test_counts_live_as_long_as_their_nonce_and_no_longer() -> None:
    counts = NonceCounts(80.0, 1000)  # kept in buckets 10 s wide
    for t in range(0, 80, 10):
        assert counts.use(f"n{t}", 1, NOW + t, NOW + t) is AuthResult.OK
    assert len(counts) == 8
    # At +95 the nonce of +0 is past its lifetime, the one of +20 is not.
    assert counts.use("n20", 1, NOW + 20, NOW + 95) is AuthResult.REPLAYED
    assert len(counts) == 7
    counts.use("late", 1, NOW + 200, NOW + 200)
    assert len(counts) == 1


def test_a_full_table_refuses_new_nonces_but_counts_known_ones() -> None:
    auth = counted(limit=2)
    one, two, three = answered(auth), answered(auth), answered(auth)
    ha1 = stored_ha1(one)
    assert auth.verify(one, "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(two, "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(three, "REGISTER", ha1, NOW) is AuthResult.NONCES_FULL
    assert auth.verify(with_count(one, 2), "REGISTER", ha1, NOW) is AuthResult.OK
    assert auth.verify(one, "REGISTER", ha1, NOW) is AuthResult.REPLAYED
    # Once the first two are past their lifetime, there is room again.
    later = NOW + 400
    fresh = Credentials.from_header(client_answer(auth.challenge(later)[0]))
    assert auth.verify(fresh, "REGISTER", ha1, later) is AuthResult.OK


def test_nonce_counts_want_a_lifetime_and_a_limit() -> None:
    with pytest.raises(ValueError):
        NonceCounts(0, 10)
    with pytest.raises(ValueError):
        NonceCounts(300.0, 0)


# --- parse_auth_header ---------------------------------------------------------------


def test_parse_splits_scheme_and_params() -> None:
    value = (
        'Digest username="bob", realm="example.com", nonce="n1", uri="sip:example.com", '
        'response="abc", algorithm=SHA-256, cnonce="c1", qop=auth, nc=00000001'
    )
    assert parse_auth_header(value) == (
        "Digest",
        {
            "username": "bob",
            "realm": "example.com",
            "nonce": "n1",
            "uri": "sip:example.com",
            "response": "abc",
            "algorithm": "SHA-256",
            "cnonce": "c1",
            "qop": "auth",
            "nc": "00000001",
        },
    )


def test_parse_lowercases_names_but_keeps_values() -> None:
    assert parse_auth_header('Digest REALM="Example.COM", Stale=TRUE') == (
        "Digest",
        {"realm": "Example.COM", "stale": "TRUE"},
    )


def test_parse_keeps_commas_and_equals_inside_quotes() -> None:
    _, params = parse_auth_header('Digest realm="a, b=c", nonce="x,y"')
    assert params == {"realm": "a, b=c", "nonce": "x,y"}


def test_parse_unescapes_quoted_pairs() -> None:
    _, params = parse_auth_header(r'Digest username="say \"hi\"", realm="back\\slash\x"')
    assert params == {"username": 'say "hi"', "realm": "back\\slashx"}


def test_parse_tolerates_linear_white_space() -> None:
    value = '  Digest\t realm = "r" ,\r\n nonce="n"  ,uri=sip:bob@example.com  '
    assert parse_auth_header(value) == (
        "Digest",
        {"realm": "r", "nonce": "n", "uri": "sip:bob@example.com"},
    )


def test_parse_keeps_empty_quoted_values() -> None:
    assert parse_auth_header('Digest opaque=""') == ("Digest", {"opaque": ""})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        "Digest   ",
        'Digest realm="r",',
        'Digest ,realm="r"',
        'Digest realm="r",, nonce="n"',
        "Digest realm",
        "Digest realm=",
        'Digest realm="unterminated',
        'Digest realm="r" nonce="n"',
        'Digest realm="r"x',
        'Digest realm="a\\',
        'Digest realm="r", realm="s"',
        'Digest realm="r", REALM="s"',
        '"Digest" realm="r"',
        "Digest =r",
        'Digest re(alm="r"',
    ],
)
def test_parse_refuses_malformed_values(value: str) -> None:
    with pytest.raises(ParseError):
        parse_auth_header(value)


@given(st.text())
def test_parse_gives_a_result_or_parse_error(value: str) -> None:
    try:
        scheme, params = parse_auth_header(value)
    except ParseError as error:
        assert "\r" not in error.reason and "\n" not in error.reason
    else:
        assert scheme and all(name == name.lower() for name in params)


@given(st.text(alphabet=st.sampled_from('Digest rln=",\\ \t\r\nAa0-')))
def test_parse_of_near_miss_headers_gives_a_result_or_parse_error(value: str) -> None:
    try:
        parse_auth_header(value)
    except ParseError:
        pass


# --- Credentials ---------------------------------------------------------------------------

MINIMAL = 'Digest username="bob", realm="r", nonce="n", uri="sip:r", response="{}"'
SECRET_RESPONSE = "d41d8cd98f00b204e9800998ecf8427e"


def test_credentials_default_to_md5_without_qop() -> None:
    creds = Credentials.from_header(MINIMAL.format(SECRET_RESPONSE))
    assert creds == Credentials("bob", "r", "n", "sip:r", SECRET_RESPONSE)
    assert (creds.algorithm, creds.qop, creds.cnonce, creds.nc) == (MD5, None, None, None)


def test_credentials_algorithm_is_upper_cased() -> None:
    creds = Credentials.from_header(MINIMAL.format("x") + ", algorithm=sha-256")
    assert creds.algorithm == SHA256


def test_credentials_scheme_is_case_insensitive() -> None:
    assert Credentials.from_header("digest" + MINIMAL.format("x")[6:]).username == "bob"


@pytest.mark.parametrize(
    "value",
    [
        'Basic realm="r"',
        'Bearer token="abc"',
        'Digest realm="r", nonce="n", uri="sip:r", response="x"',
        'Digest username="bob", nonce="n", uri="sip:r", response="x"',
        'Digest username="bob", realm="r", uri="sip:r", response="x"',
        'Digest username="bob", realm="r", nonce="n", response="x"',
        'Digest username="bob", realm="r", nonce="n", uri="sip:r"',
        MINIMAL.format("x") + ", qop=auth, nc=00000001",
        MINIMAL.format("x") + ', qop=auth, cnonce="c"',
        MINIMAL.format("x") + ', qop=auth, cnonce="c", nc=1',
        MINIMAL.format("x") + ', qop=auth, cnonce="c", nc=0000000g',
    ],
)
def test_incomplete_credentials_are_refused(value: str) -> None:
    with pytest.raises(ParseError):
        Credentials.from_header(value)


def test_credentials_round_trip_through_their_header() -> None:
    creds = Credentials(
        'bo"b',
        "r",
        "n",
        "sip:r",
        "abc",
        SHA256,
        cnonce="c\\1",
        qop="auth",
        nc="0000000a",
        opaque="o, p",
    )
    assert Credentials.from_header(creds.to_header()) == creds


field_text = st.text(st.characters(exclude_characters="\r\n"))


@given(field_text, field_text, field_text, field_text, field_text, st.none() | field_text)
def test_any_credentials_round_trip(
    username: str, realm: str, nonce: str, uri: str, response: str, opaque: str | None
) -> None:
    creds = Credentials(username, realm, nonce, uri, response, MD5, opaque=opaque)
    assert Credentials.from_header(creds.to_header()) == creds


@given(
    st.text(),
    st.text(),
    st.text(),
    st.sampled_from([MD5, SHA256, "sha-256", "SHA-1", ""]),
    st.none() | st.text(),
    st.none() | st.text(),
    st.none() | st.text(),
    st.text(),
)
def test_verify_judges_any_credentials_without_raising(
    nonce: str,
    uri: str,
    response: str,
    algorithm: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
    method: str,
) -> None:
    auth = DigestAuth(REALM, NonceFactory(SECRET))
    valid_nonce = auth.nonces.make(NOW, REALM)
    for n in (nonce, valid_nonce):
        creds = Credentials("bob", REALM, n, uri, response, algorithm, cnonce, qop, nc)
        result = auth.verify(creds, method, compute_ha1("bob", REALM, PASSWORD), NOW)
        assert isinstance(result, AuthResult)


# --- secrets stay secret ---------------------------------------------------------------------


def test_repr_of_credentials_hides_the_response() -> None:
    creds = Credentials.from_header(MINIMAL.format(SECRET_RESPONSE))
    assert SECRET_RESPONSE not in repr(creds)
    assert SECRET_RESPONSE not in str(creds)


@pytest.mark.parametrize(
    "suffix",
    [", qop=auth", ", qop=auth, cnonce=c, nc=bad", ', realm="dup"', ", x=", ' "'],
)
def test_parse_errors_never_quote_the_response(suffix: str) -> None:
    with pytest.raises(ParseError) as caught:
        Credentials.from_header(MINIMAL.format(SECRET_RESPONSE) + suffix)
    assert SECRET_RESPONSE not in str(caught.value)
    assert SECRET_RESPONSE not in repr(caught.value)


def test_repr_of_auth_objects_hides_secret_and_ha1(auth: DigestAuth) -> None:
    ha1 = compute_ha1("bob", REALM, PASSWORD, SHA256)
    auth.verify(answered(auth, 0), "REGISTER", ha1, NOW)
    assert SECRET.decode() not in repr(auth.nonces)
    assert ha1 not in repr(auth) and SECRET.decode() not in repr(auth)


@pytest.mark.parametrize(
    ("value", "digest"),
    [
        ('Digest username="bob"', True),
        ('  digest\tusername="bob"', True),
        ("DIGEST", True),
        ("NoOneKnowsThisScheme opaque-data=here", False),  # RFC 4475 §3.3.7
        ("Digestive x=1", False),
        ("Basic Ym9iOnBhc3M=", False),
        ("", False),
    ],
)
def test_is_digest_reads_only_the_scheme(value: str, digest: bool) -> None:
    assert is_digest(value) is digest
