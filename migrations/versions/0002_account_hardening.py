"""accounts: session version and folded email

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00

SessionVersion is part of every login id: raising it ends the account's sessions and remember-me
cookies. EmailFolded is the address without accents (indexed), for lookups and for refusing a
second account that differs only by accents; existing rows are filled here, and the addresses
brought to their normal form (NFKC, no invisible characters, lower case) on the way.
"""
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _normalise(email):
    # The same rule as proctor.models.normalise_email / fold_email, frozen here as of this revision.
    text = unicodedata.normalize("NFKC", email or "")
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip().lower()


def _fold(email):
    text = unicodedata.normalize("NFKD", _normalise(email))
    return unicodedata.normalize("NFC", "".join(c for c in text if not unicodedata.combining(c)))


def upgrade():
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.add_column(sa.Column('EmailFolded', sa.String(length=254), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('SessionVersion', sa.Integer(), nullable=False, server_default='0'))

    students = sa.table('students', sa.column('ID', sa.Integer), sa.column('Email', sa.String),
                        sa.column('EmailFolded', sa.String))
    conn = op.get_bind()
    for row in conn.execute(sa.select(students.c.ID, students.c.Email)).fetchall():
        values = {'EmailFolded': _fold(row.Email)}
        if _normalise(row.Email) != row.Email:
            values['Email'] = _normalise(row.Email)
        conn.execute(students.update().where(students.c.ID == row.ID).values(**values))

    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.alter_column('EmailFolded', existing_type=sa.String(length=254), existing_nullable=False,
                              server_default=None)
        batch_op.create_index(batch_op.f('ix_students_EmailFolded'), ['EmailFolded'], unique=False)


def downgrade():
    with op.batch_alter_table('students', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_students_EmailFolded'))
        batch_op.drop_column('SessionVersion')
        batch_op.drop_column('EmailFolded')
