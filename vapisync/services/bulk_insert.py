"""Inserting many rows in few statements, without Django's per-value compile step.

`bulk_create` sends every value through its field's whole save path and compiles the SQL again for
each batch; for a large import (tens of thousands of local rows, sync records and history rows)
that machinery cost several times the insert itself (README, "Performance"). Here each field's
conversion to the database's form is looked up once, values are converted with it, and the rows go
as one COPY on PostgreSQL (ids taken from the sequence first where they are needed), or on SQLite as
one `executemany` or, where the ids are needed, multi-row `INSERT … RETURNING id` statements.

Like `bulk_create`, this sends no signals and calls no `save()`: callers insert rows whose
bookkeeping they fill in themselves, inside their own transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence

import orjson
from django.db import connection
from django.db.models import Value
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

# SQLite's limit on the parameters of one query (older builds): `pk__in` lists are read in slices of it.
QUERY_PARAMS = 900


def param_chunks(values: Sequence) -> Iterable[Sequence]:
    """`values` in slices small enough for one query's parameters."""
    for start in range(0, len(values), QUERY_PARAMS):
        yield values[start:start + QUERY_PARAMS]


# Field kinds whose Python values the database drivers take as they are.
_PLAIN = {"CharField", "TextField", "SlugField", "EmailField", "URLField", "BooleanField", "IntegerField",
          "BigIntegerField", "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
          "PositiveSmallIntegerField", "ForeignKey", "OneToOneField", "FloatField"}


def _converter(field):
    kind = field.get_internal_type()
    ops = connection.ops
    if kind in _PLAIN:
        return None
    if kind == "JSONField":
        if field.encoder is not None:
            return lambda value: None if value is None else ops.adapt_json_value(value, field.encoder)
        if connection.vendor == "postgresql":
            from psycopg.types.json import Jsonb

            return lambda value: None if value is None else Jsonb(value, dumps=_json_text)
        return lambda value: None if value is None else _json_text(value)
    if kind == "DateTimeField":
        # Most rows of a batch share a few timestamps (the run's clock): convert each once.
        converted = {}

        def datetime_value(value):
            if value not in converted:
                converted[value] = ops.adapt_datetimefield_value(value)
            return converted[value]
        return datetime_value
    if kind == "UUIDField":  # one per new agent: its hex on SQLite, the UUID itself where the column is native
        native = connection.features.has_native_uuid_field
        return lambda value: (value if native else value.hex) if isinstance(value, uuid.UUID) else \
            field.get_db_prep_save(value, connection)
    return lambda value: field.get_db_prep_save(value, connection)


def _json_text(value) -> str:
    """JSON text, by orjson (several times faster than json.dumps; the same JSON, written without
    spaces and with UTF-8 unescaped). What orjson declines (integers beyond 64 bits, keys that are
    not strings) goes to json.dumps."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _prepared(fields, rows: Iterable[Sequence]) -> list[tuple]:
    converters = [(i, convert) for i, convert in enumerate(_converter(f) for f in fields) if convert]
    if not converters:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        row = list(row)
        for i, convert in converters:
            row[i] = convert(row[i])
        out.append(tuple(row))
    return out


def _stamped(field) -> bool:
    """An auto_now or auto_now_add field: a new row takes the clock whatever it was given, as save() does."""
    return getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)


def _columns(model, names: Sequence[str]):
    fields = [model._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    return fields, model._meta.db_table, ", ".join(quote(f.column) for f in fields)


def _send(table: str, columns: str, values: list[tuple]) -> None:
    """One COPY on PostgreSQL (its fastest way in, several times faster than executemany there);
    one executemany elsewhere (SQLite runs it in a single prepared statement)."""
    table = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The driver's own cursor: its errors are turned into Django's (IntegrityError, …) here, so a
            # refused row fails its batch as any other statement would, not the whole run.
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(values[0]))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", values)


def insert_rows(model, names: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Insert `rows` (tuples of Python values in the order of the field `names`) in one statement.
    Returns how many rows were sent."""
    fields, table, columns = _columns(model, names)
    values = _prepared(fields, rows)
    if values:
        _send(table, columns, values)
    return len(values)


def insert_instances(objs: Sequence, *, batch_size: int = 500) -> list:
    """Insert unsaved model instances of one model and set their primary keys, as `bulk_create`
    does (auto_now fields filled, database defaults that are constants resolved)."""
    if not objs:
        return list(objs)
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {f.attname: f.db_default.value for f in fields if isinstance(f.db_default, Value)}
    stamped = {f.attname for f in fields if _stamped(f)}
    now = timezone.now()  # one clock reading for the batch's auto_now fields
    rows = []
    for obj in objs:
        row = []
        for f in fields:
            if f.attname in stamped:
                setattr(obj, f.attname, now)
            value = getattr(obj, f.attname)
            if isinstance(value, DatabaseDefault):
                value = defaults[f.attname]
                setattr(obj, f.attname, value)
            row.append(value)
        rows.append(row)
    ids = _insert_returning_ids(model, fields, _prepared(fields, rows), batch_size)
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, connection.alias
    return list(objs)


def insert_new(model, rows: Sequence[dict], *, batch_size: int = 500) -> list:
    """Insert new rows of `model`, each given as attname -> value, and return them as model instances,
    as if read back. No instance is built before the insert (its constructor is most of the cost of
    a large import): a field a row does not give takes its default as a new instance's would (a
    callable one called per row), auto_now fields one clock reading for the batch. Keys that are not
    columns (flags a mapper sets on instances) are ignored."""
    if not rows:
        return []
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    fills = []  # per field: (callable default or None, constant value)
    for f in fields:
        if f.has_default() and callable(f.default):
            fills.append((f.default, None))
        elif not f.has_default() and isinstance(f.db_default, Value):
            fills.append((None, f.db_default.value))
        else:
            fills.append((None, f.get_default()))
    stamped = [i for i, f in enumerate(fields) if _stamped(f)]
    names = [f.attname for f in fields]
    raw = []
    for row in rows:
        values = [row[name] if name in row else (make() if make else value)
                  for name, (make, value) in zip(names, fills, strict=True)]
        for i in stamped:
            values[i] = now
        raw.append(values)
    ids = _insert_returning_ids(model, fields, _prepared(fields, raw), batch_size)
    attnames = [model._meta.pk.attname, *names]
    return [model.from_db(connection.alias, attnames, (pk, *values)) for pk, values in zip(ids, raw, strict=True)]


def _insert_returning_ids(model, fields, values: list[tuple], batch_size: int) -> list[int]:
    """Insert prepared rows; their primary keys, in order."""
    opts = model._meta
    _, table, columns = _columns(model, [f.name for f in fields])
    pk_column = connection.ops.quote_name(opts.pk.column)
    if connection.vendor == "postgresql":
        # Take the ids from the table's sequence first, then COPY the rows with them.
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [connection.ops.quote_name(table), opts.pk.column, len(values)])
            ids = [pk for (pk,) in cursor.fetchall()]
        _send(table, f"{pk_column}, {columns}", [(pk, *row) for pk, row in zip(ids, values, strict=True)])
        return ids
    size = max(1, min(batch_size, connection.features.max_query_params // len(fields)))
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    ids = []
    with connection.cursor() as cursor:
        for start in range(0, len(values), size):
            chunk = values[start:start + size]
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(table)} ({columns}) VALUES {', '.join([one] * len(chunk))} "
                f"RETURNING {pk_column}",
                [value for row in chunk for value in row],
            )
            # Rows come back in the order of the VALUES list (SQLite, as bulk_create relies on too).
            ids += [pk for (pk,) in cursor.fetchall()]
    return ids
