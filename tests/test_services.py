"""The private service fixtures themselves: a Redis and a PostgreSQL of the test's own
start, answer, stop (and then refuse) and start again on the same port."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from .services import PrivatePostgres, PrivateRedis, redis_ping


def test_private_redis_answers_ping_stops_and_restarts(private_redis: PrivateRedis) -> None:
    assert private_redis.port != 6379
    assert private_redis.ping()
    private_redis.stop()
    assert not private_redis.running
    assert not redis_ping(private_redis.port)  # nothing listens any more
    private_redis.start()
    assert private_redis.ping()


def test_private_postgres_keeps_its_data_across_a_restart(
    private_postgres: PrivatePostgres,
) -> None:
    assert private_postgres.port != 5432
    engine = create_engine(private_postgres.url, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (n integer)"))
            conn.execute(text("INSERT INTO kept VALUES (1), (2)"))
        private_postgres.stop()
        engine.dispose()
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError:
            refused = True
        else:
            refused = False
        assert refused
        private_postgres.start()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM kept")).scalar_one() == 2
    finally:
        engine.dispose()
