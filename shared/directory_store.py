"""The directory versions' table (``directory_versions`` in a service's schema): the commission
service's counter per directory key, attribution's version held per key
(:mod:`shared.directory`)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table


def directory_versions_table(metadata: MetaData) -> Table:
    return Table(
        "directory_versions",
        metadata,
        #: ``store:<id>``, ``affiliate:<id>`` or ``coupon:<store>:<CODE>``
        Column("key", String(300), primary_key=True),
        Column("version", BigInteger, nullable=False),
    )
