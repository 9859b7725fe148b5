"""URL parsing and redaction: the first line of defence for bad input and leaked secrets."""

import pytest

from loaders.dsn import parse_url
from loaders.errors import MigrationError
from loaders.redaction import mask_url, scrub


def test_transaction_pooler_is_refused_with_the_fix() -> None:
    with pytest.raises(MigrationError) as info:
        parse_url("postgresql://postgres.abc:s3cretpw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", "source")
    line = info.value.one_line()
    assert "transaction pooler" in line and "session pooler" in line
    assert "s3cretpw" not in line


def test_session_pooler_is_accepted() -> None:
    url = parse_url("postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", "source")
    assert (url.user, url.port, url.database) == ("postgres.abc", 5432, "postgres")


@pytest.mark.parametrize(
    "bad, why",
    [("mysql://u:p@h/db", "scheme"), ("postgresql://u:p@/db", "no host"), ("postgresql://h:99999/db", "")],
)
def test_bad_urls_name_the_cause(bad: str, why: str) -> None:
    with pytest.raises(MigrationError, match="not a valid PostgreSQL URL") as info:
        parse_url(bad, "target")
    assert why in info.value.cause
    assert "postgresql://USER:PASSWORD@HOST" in info.value.fix


def test_missing_url_points_to_flag_and_env() -> None:
    with pytest.raises(MigrationError) as info:
        parse_url(None, "target")
    assert "--target" in info.value.one_line() and "TARGET_DATABASE_URL" in info.value.one_line()


def test_special_characters_survive_a_round_trip() -> None:
    url = parse_url("postgresql://app:p%40ss%2Fw%3Ard@db.example.com/app?sslmode=require", "target")
    assert url.password == "p@ss/w:rd"
    again = parse_url(url.dsn(), "target")
    assert again == url
    assert "p%40ss" not in url.dsn(with_password=False)


def test_passwords_never_survive_scrubbing() -> None:
    parse_url("postgresql://app:hunter2-xyz@db.example.com/app", "target")
    assert "hunter2-xyz" not in scrub("server said: password hunter2-xyz is wrong")
    assert mask_url("postgresql://a:b-secret@h:5/d") == "postgresql://a:***@h:5/d"
    assert "other-secret" not in scrub("connecting to postgres://x:other-secret@host/db now")
