"""client ids: answers.ClientSeq and violations.ClientID

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 09:00:00

The exam page's outbox retries answers after a database blink; ClientSeq (the page's increasing
number for each save) lets the server refuse an older save that arrives after a newer one. The
live runtime retries violations it could not store; ClientID (a UUID made when the warning was
issued, unique) makes that retry store the violation once.
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ClientSeq', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ClientID', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_violations_ClientID'), ['ClientID'], unique=True)


def downgrade():
    with op.batch_alter_table('violations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_violations_ClientID'))
        batch_op.drop_column('ClientID')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_column('ClientSeq')
