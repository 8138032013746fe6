"""SQLAlchemy 2 (ORM, over psycopg 3) against a running Borealis cluster.

Goal: an application that models its data with SQLAlchemy's declarative ORM
and lets it create and introspect its schema runs unmodified.
Method: a users/addresses model with a relationship; metadata.create_all
(which first asks pg_catalog whether each table exists), the inspector's
reflection of tables, columns, keys and indexes (compared with what
PostgreSQL answers), then sessions that add, query,
filter, join, update, delete and roll back. Connection parameters come from
the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
Every check runs; the script exits 1 if any failed.

The addresses reference their user with a ForeignKey, so create_all emits
REFERENCES and the ORM deletes children before their parent; the inspector
reflects foreign keys and CHECK constraints as PostgreSQL reports them.
"""

import datetime
import decimal
import os
import sys
from typing import List, Optional

from sqlalchemy import (BigInteger, Date, DateTime, ForeignKey, MetaData, Numeric, String, Table, Text,
                        create_engine, delete, func, inspect, select, text, update)
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from checks import check, run


def database_url():
    env = os.environ
    return (f"postgresql+psycopg://{env['PGUSER']}:{env['PGPASSWORD']}@{env['PGHOST']}:{env['PGPORT']}/"
            f"{env.get('PGDATABASE', 'postgres')}?connect_timeout=10")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "sa_users"
    # Borealis has no sequences yet, so no SERIAL: keys are given by the application.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    fullname: Mapped[Optional[str]] = mapped_column(Text)
    balance: Mapped[decimal.Decimal] = mapped_column(Numeric(12, 2), default=decimal.Decimal("0"))
    visits: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(default=True)
    born: Mapped[Optional[datetime.date]] = mapped_column(Date)
    joined: Mapped[Optional[datetime.datetime]] = mapped_column(DateTime)
    addresses: Mapped[List["Address"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Address(Base):
    __tablename__ = "sa_addresses"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("sa_users.id"))
    user: Mapped[User] = relationship(back_populates="addresses")


ENGINE = create_engine(database_url())


@check
def create_all_creates_the_tables_once():
    Base.metadata.create_all(ENGINE)
    # The second call finds the tables through pg_catalog and creates nothing.
    Base.metadata.create_all(ENGINE)
    assert {"sa_users", "sa_addresses"} <= set(inspect(ENGINE).get_table_names())


@check
def inspector_finds_tables():
    inspector = inspect(ENGINE)
    assert inspector.has_table("sa_users") and not inspector.has_table("sa_missing")


@check
def inspector_reflects_columns_keys_and_indexes():
    with ENGINE.begin() as conn:
        conn.execute(text("CREATE TABLE sa_reflect (id int4, part int8, name varchar(20) NOT NULL UNIQUE, "
                          "note text, amount numeric(10, 2), PRIMARY KEY (id, part))"))
        conn.execute(text("CREATE INDEX sa_reflect_note ON sa_reflect (note, id)"))
    try:
        inspector = inspect(ENGINE)
        columns = [(c["name"], repr(c["type"]), c["nullable"], c["default"], c["autoincrement"], c["comment"])
                   for c in inspector.get_columns("sa_reflect")]
        assert columns == [
            ("id", "INTEGER()", False, None, False, None),
            ("part", "BIGINT()", False, None, False, None),
            ("name", "VARCHAR(length=20)", False, None, False, None),
            ("note", "TEXT()", True, None, False, None),
            ("amount", "NUMERIC(precision=10, scale=2)", True, None, False, None),
        ], columns
        key = inspector.get_pk_constraint("sa_reflect")
        assert key["constrained_columns"] == ["id", "part"] and key["name"] == "sa_reflect_pkey", key
        unique = inspector.get_unique_constraints("sa_reflect")
        assert [(u["name"], u["column_names"]) for u in unique] == [("sa_reflect_name_key", ["name"])], unique
        indexes = [(i["name"], i["unique"], i["column_names"], i.get("duplicates_constraint"))
                   for i in inspector.get_indexes("sa_reflect")]
        assert indexes == [("sa_reflect_name_key", True, ["name"], "sa_reflect_name_key"),
                           ("sa_reflect_note", False, ["note", "id"], None)], indexes
        assert inspector.get_foreign_keys("sa_reflect") == []
        conn_ddl = ("CREATE TABLE sa_reflect_child (id int PRIMARY KEY CHECK (id > 0), ref_id int4, ref_part int8, "
                    "FOREIGN KEY (ref_id, ref_part) REFERENCES sa_reflect ON DELETE CASCADE)")
        with ENGINE.begin() as conn:
            conn.execute(text(conn_ddl))
        inspector = inspect(ENGINE)
        keys = inspector.get_foreign_keys("sa_reflect_child")
        assert keys == [{
            "name": "sa_reflect_child_ref_id_ref_part_fkey", "constrained_columns": ["ref_id", "ref_part"],
            "referred_schema": None, "referred_table": "sa_reflect", "referred_columns": ["id", "part"],
            "options": {"ondelete": "CASCADE"}, "comment": None}], keys
        checks = inspector.get_check_constraints("sa_reflect_child")
        assert checks == [{"name": "sa_reflect_child_id_check", "sqltext": "id > 0", "comment": None}], checks
        # Reflection as applications use it: a Table loaded from the database.
        table = Table("sa_reflect", MetaData(), autoload_with=ENGINE)
        assert [c.name for c in table.primary_key.columns] == ["id", "part"]
        assert isinstance(table.c.amount.type, Numeric) and table.c.name.type.length == 20
    finally:
        with ENGINE.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sa_reflect_child"))
            conn.execute(text("DROP TABLE sa_reflect"))


@check
def session_adds_queries_and_follows_relationships():
    with Session(ENGINE) as session:
        ada = User(id=1, name="ada", fullname="Ada Lovelace", balance=decimal.Decimal("10.50"),
                   born=datetime.date(1815, 12, 10), joined=datetime.datetime(2024, 1, 2, 3, 4, 5))
        ada.addresses = [Address(id=1, email="ada@example.org"), Address(id=2, email="ada@example.com")]
        grace = User(id=2, name="grace", fullname="Grace Hopper", visits=2**40)
        grace.addresses = [Address(id=3, email="grace@example.org")]
        session.add_all([ada, grace, User(id=3, name="alan")])
        session.commit()

    with Session(ENGINE) as session:
        ada = session.scalars(select(User).where(User.name == "ada")).one()
        assert ada.fullname == "Ada Lovelace" and ada.balance == decimal.Decimal("10.50") and ada.active
        assert ada.born == datetime.date(1815, 12, 10) and ada.joined == datetime.datetime(2024, 1, 2, 3, 4, 5)
        assert sorted(a.email for a in ada.addresses) == ["ada@example.com", "ada@example.org"]
        grace = session.get(User, 2)
        assert grace.visits == 2**40 and grace.addresses[0].user is grace
        names = session.scalars(select(User.name).where(User.name.like("a%")).order_by(User.name)).all()
        assert names == ["ada", "alan"], names
        counts = session.execute(
            select(User.name, func.count(Address.id)).join(User.addresses, isouter=True).group_by(User.name)
            .order_by(User.name)).all()
        assert counts == [("ada", 2), ("alan", 0), ("grace", 1)], counts
        emails = session.scalars(select(Address.email).join(Address.user).where(User.name == "grace")).all()
        assert emails == ["grace@example.org"], emails
        users = session.scalars(select(User).options(selectinload(User.addresses)).order_by(User.id)).all()
        assert [len(u.addresses) for u in users] == [2, 1, 0]
        assert session.scalar(select(func.count()).select_from(User).where(User.id.in_([1, 3]))) == 2


@check
def session_updates_and_deletes():
    with Session(ENGINE) as session:
        alan = session.scalars(select(User).filter_by(name="alan")).one()
        alan.fullname = "Alan Turing"
        alan.visits += 1
        session.commit()
        session.execute(update(User).where(User.name == "grace").values(balance=User.balance + 5))
        session.commit()
    with Session(ENGINE) as session:
        assert session.get(User, 3).fullname == "Alan Turing"
        assert session.get(User, 2).balance == decimal.Decimal("5.00")
        # The ORM deletes a removed child (delete-orphan) and then the user.
        ada = session.get(User, 1)
        ada.addresses.pop(0)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Address).where(Address.user_id == 1)) == 1
        session.delete(session.get(User, 1))
        session.commit()
        assert session.get(User, 1) is None
        assert session.scalar(select(func.count()).select_from(Address)) == 1
        session.execute(delete(Address).where(Address.user_id == 2))
        session.commit()
        assert session.scalar(select(func.count()).select_from(Address)) == 0


@check
def session_rolls_back():
    with Session(ENGINE) as session:
        session.add(User(id=10, name="temp"))
        session.flush()
        assert session.scalar(select(func.count()).select_from(User).where(User.id == 10)) == 1
        session.rollback()
        assert session.get(User, 10) is None
    # A constraint violation at flush raises IntegrityError with the SQLSTATE,
    # and the session rolls back to a usable state.
    with Session(ENGINE) as session:
        session.add(User(id=11, name="grace"))
        try:
            session.commit()
            raise AssertionError("duplicate name committed")
        except IntegrityError as error:
            assert error.orig.sqlstate == "23505", error.orig.sqlstate
        session.rollback()
        assert session.scalar(select(func.count()).select_from(User)) == 2
    with ENGINE.connect() as conn:
        try:
            conn.execute(text("SELECT * FROM sa_missing"))
            raise AssertionError("missing table answered")
        except ProgrammingError as error:
            assert error.orig.sqlstate == "42P01", error.orig.sqlstate


@check
def drop_all_drops_the_tables():
    Base.metadata.drop_all(ENGINE)
    assert not {"sa_users", "sa_addresses"} & set(inspect(ENGINE).get_table_names())


if __name__ == "__main__":
    sys.exit(run(ENGINE.dispose))
