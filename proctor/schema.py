"""The MySQL/MariaDB DDL of the tables, generated from the models (examproctordb.sql)."""
from __future__ import annotations

from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateIndex, CreateTable

HEADER = """-- Exam proctoring platform: MySQL/MariaDB schema for a new install.
-- Generated from proctor/models.py by `flask --app app dump-schema`; do not edit by hand
-- (a test regenerates it and compares). Import with: mysql -u root < examproctordb.sql
-- Later schema changes arrive as Alembic migrations (migrations/), which the app applies at start.
"""


def mysql_ddl(metadata, database: str = "examproctordb") -> str:
    dialect = mysql.dialect()
    out = [HEADER, f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;", f"USE `{database}`;", ""]
    for table in metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect)).strip()
        out.append(ddl + " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;\n")
        for index in sorted(table.indexes, key=lambda i: i.name):
            out.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
